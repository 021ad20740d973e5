"""One billing system's mutable state, built from a scenario.

Records keep the scenario's neutral field names (parsed values); each emulator renders
them at request time, so a write (cancel, pause, coupon, extension, plan change) changes
one neutral record and every later read, in that API's spelling, shows it.
"""

from __future__ import annotations

import bisect
import copy
import heapq
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sandbox.billing import SUBSCRIPTION_TIME_FIELDS, current_period, derived_updated_at
from sandbox.clock import Clock
from sandbox.scenario import ID_FIELD, Scenario

KINDS = ("plans", "coupons", "customers", "subscriptions", "invoices")
# Times at which the clock alone changes a subscription (it starts, a trial ends, service
# ends, a pause starts or ends, a new period begins): real systems stamp updated_at then
# (Stripe sends an event). RENEWAL is the start of the next billing period.
TRANSITION_FIELDS = ("activated_at", "trial_end", "ended_at", "paused_at", "resumes_at")
RENEWAL = "renewal"
Listener = Callable[[dict, str, datetime], None]
_TIME_FIELDS = {  # a deletion touches the record too: incremental listings must see it
    "customers": ("created_at", "deleted_at"),
    "subscriptions": (*SUBSCRIPTION_TIME_FIELDS, "deleted_at"),
    "invoices": ("created_at", "paid_at"),
}


class SystemStore:
    """Neutral records of one billing system, indexed by id, with ordered views for paging.

    Every record carries `updated_at` (the latest of its own timestamps by `as_of`, then the
    clock time of the last write) and `version`. Ordered views are cached per
    (kind, field, direction) and rebuilt after a write to that kind.
    """

    def __init__(self, scenario: Scenario, system: str, clock: Clock):
        self.system = system
        self.clock = clock
        self.as_of = scenario.as_of
        self.lock = threading.RLock()
        self.records: dict[str, dict[str, dict]] = {}
        for kind in KINDS:
            rows = copy.deepcopy(scenario.for_system(kind, system))
            self.records[kind] = {row[ID_FIELD[kind]]: row for row in rows}
        self._stamp_loaded_records()
        self.by_customer: dict[str, dict[str, list[dict]]] = {
            kind: defaultdict(list) for kind in ("subscriptions", "invoices")
        }
        for kind, index in self.by_customer.items():
            for row in self.records[kind].values():
                index[row["customer_id"]].append(row)
        self._views: dict[tuple[str, str, bool], tuple[list, list]] = {}
        self.listeners: list[Listener] = []
        self._applied_until = self.as_of
        self._transitions: list[tuple[datetime, str, str]] = []
        for sub in self.records["subscriptions"].values():
            self._schedule(sub)

    def _stamp_loaded_records(self) -> None:
        earliest = min(
            (
                row["created_at"]
                for kind in ("customers", "subscriptions")
                for row in self.records[kind].values()
            ),
            default=self.as_of,
        )
        for kind, rows in self.records.items():
            for row in rows.values():
                fields = _TIME_FIELDS.get(kind)
                if fields is None:  # plans and coupons: no timestamps but their retirement
                    row["created_at"] = earliest
                    retired = derived_updated_at(row, self.as_of, ("archived_at", "deleted_at"))
                    row["updated_at"] = max(earliest, retired or earliest)
                else:
                    row["updated_at"] = derived_updated_at(row, self.as_of, fields)
                row["version"] = 1

    def get(self, kind: str, record_id: str) -> dict | None:
        return self.records[kind].get(record_id)

    def all(self, kind: str) -> list[dict]:
        return list(self.records[kind].values())

    def touch(self, kind: str, record: dict, at: datetime | None = None) -> None:
        """Mark a record as written now: later reads and updated_at filters see it."""
        record["updated_at"] = at or self.clock.now()
        record["version"] += 1
        self._invalidate(kind)
        if kind == "subscriptions":
            self._schedule(record)

    def _schedule(self, sub: dict) -> None:
        for field in TRANSITION_FIELDS:
            at = sub.get(field)
            if at is not None and at > self._applied_until:
                heapq.heappush(self._transitions, (at, sub["subscription_id"], field))
        renewal = self._next_renewal(sub, self._applied_until)
        if renewal is not None:
            heapq.heappush(self._transitions, (renewal, sub["subscription_id"], RENEWAL))

    def _next_renewal(self, sub: dict, after: datetime) -> datetime | None:
        """When the subscription's next billing period starts, if it is still in service
        then (a period end that is also its end of service is no renewal)."""
        plan = self.records["plans"].get(sub["plan_id"])
        if plan is None:
            return None
        end = current_period(sub, plan, after)[1]
        if end <= after or (sub["ended_at"] is not None and sub["ended_at"] <= end):
            return None
        return end

    def _is_due(self, sub: dict | None, field: str, at: datetime) -> bool:
        """Still true of the record (not rescheduled or undone by a write since) and not
        stamped yet."""
        if sub is None or (sub["updated_at"] is not None and sub["updated_at"] >= at):
            return False
        if field == RENEWAL:
            return self._next_renewal(sub, at - _TICK) == at
        return sub.get(field) == at

    def advance(self, now: datetime) -> None:
        """Apply what the clock has made true since the last call: each subscription whose
        scheduled time has passed is stamped updated_at = that time, and listeners (the
        Stripe emulator's events) are told. Cheap when nothing is due."""
        while self._transitions and self._transitions[0][0] <= now:
            at, ident, field = heapq.heappop(self._transitions)
            sub = self.records["subscriptions"].get(ident)
            if not self._is_due(sub, field, at):
                continue
            self._applied_until = at
            self.touch("subscriptions", sub, at)
            for listener in self.listeners:
                listener(sub, field, at)
        self._applied_until = max(self._applied_until, now)

    def add(self, kind: str, record: dict) -> None:
        """Insert a record created through the API."""
        record.setdefault("version", 0)
        self.records[kind][record[ID_FIELD[kind]]] = record
        if kind in self.by_customer:
            self.by_customer[kind][record["customer_id"]].append(record)
        self.touch(kind, record, record.get("created_at"))

    def _invalidate(self, kind: str) -> None:
        for key in [k for k in self._views if k[0] == kind]:
            del self._views[key]

    def ordered(self, kind: str, field: str, descending: bool = False) -> tuple[list, list]:
        """Records sorted by (field, id) and their sort keys, for bisecting cursors.

        Records whose field is null sort first ascending (last descending) with key None
        replaced by the smallest datetime, so they are skipped by any time filter.
        """
        key = (kind, field, descending)
        view = self._views.get(key)
        if view is None:
            id_field = ID_FIELD[kind]
            rows = sorted(self.records[kind].values(), key=lambda r: _sort_key(r, field, id_field))
            if descending:
                rows.reverse()
            view = (rows, [_sort_key(r, field, id_field) for r in rows])
            self._views[key] = view
        return view

    def page_after(
        self, kind: str, field: str, descending: bool, after: tuple | None
    ) -> tuple[list, int]:
        """(ordered records, index of the first record strictly after the cursor key)."""
        rows, keys = self.ordered(kind, field, descending)
        if after is None:
            return rows, 0
        if descending:
            # keys descend: find the first key strictly below `after`
            lo, hi = 0, len(keys)
            while lo < hi:
                mid = (lo + hi) // 2
                if keys[mid] < after:
                    hi = mid
                else:
                    lo = mid + 1
            return rows, lo
        return rows, bisect.bisect_right(keys, after)


_MIN = datetime.min.replace(tzinfo=UTC)
_TICK = timedelta(microseconds=1)


def _sort_key(record: dict, field: str, id_field: str) -> tuple:
    value = record.get(field)
    return (_MIN if value is None else value, record[id_field])
