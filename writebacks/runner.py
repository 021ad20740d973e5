"""Apply the pending write-backs, exactly once, and keep the ledger true.

A run: load and validate the catalog; derive the actions the exit sessions ask for and
add the new ones to the ledger (pending, or failed when unresolvable); skip pending ones
nobody asks for any more; reopen failed ones when asked to retry; then work through the
pending actions of each billing system (a thread each) in the order the visitors acted:

- dry run (the default mode): record the request that would be sent, send nothing;
- live: read the subscription; if the change already holds, record `skipped` with the
  reason (or `applied`, when an earlier attempt of ours may have made it); else count the
  attempt, send with the action's idempotency key and record `applied` with billing's
  request id. 429/5xx/dropped connections are retried with backoff (each try counted);
  a permanent error (404, invalid coupon, …) is recorded `failed` with the API's message.
  An action whose retries ran out stays pending for the next run.

Exactly once: the idempotency key is derived from the action and the exact request, so
a resend after a crash is replayed by billing, not applied again; and the read before
every send catches what the key cannot (an expired key, a change made by hand).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from billing_clients.retries import RetryPolicy, with_retries
from writebacks.catalog import Catalog
from writebacks.derive import derive_actions, sessions_in_marts
from writebacks.journal import Journal
from writebacks.ledger import Ledger, LedgerRow, Recorder
from writebacks.systems.base import Action, BillingWriter, WriteRequest

log = logging.getLogger("retention.writebacks")
# Finished fast-path journal rows are forgotten this long after the ledger took them.
JOURNAL_KEEP = timedelta(days=30)
WriterFactory = Callable[[str], BillingWriter]


class GaveUp(Exception):
    """Retries ran out on a transient error: the action stays pending."""


@dataclass
class RunSummary:
    """What one run did: counts per (billing_system, outcome) and the ledger after it."""

    outcomes: Counter = field(default_factory=Counter)
    ledger: dict[tuple[str, str], int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    imported: int = 0  # fast-path journal rows taken into the ledger

    def count(self, status: str) -> int:
        return sum(n for (_, s), n in self.outcomes.items() if s == status)


def idempotency_key(action_id: str, request: WriteRequest) -> str:
    """Same action and same request → same key; a request changed by a fixed catalog
    gets a new one (billing would refuse a reused key with other parameters)."""
    body = json.dumps(request.describe(), sort_keys=True, default=str).encode()
    return f"{action_id}-{hashlib.sha256(body).hexdigest()[:12]}"


def run_writebacks(
    db: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    writer_for: WriterFactory,
    *,
    retry_failed: bool | list[str] = False,
    policy: RetryPolicy | None = None,
    journal: Journal | None = None,
) -> RunSummary:
    """One write-back run over the warehouse on `db` (see the module docstring).

    `journal`: the fast path's (writebacks.fastpath), imported into the ledger first,
    so what the fast path did is never done again. Each billing system's actions are
    worked through in their own thread, in the order the visitors acted: one system's
    rate limits or outage never hold up the others."""
    ledger = Ledger(db)
    summary = RunSummary()
    ahead: set[str] = set()
    if journal is not None:
        changed = journal.changed()
        summary.imported = ledger.import_rows(changed)
        journal.mark_imported(changed)
        journal.prune(datetime.now(UTC) - JOURNAL_KEEP)
        ahead = journal.session_ids() - sessions_in_marts(db)
    _sync_ledger(ledger, derive_actions(db, catalog), ahead, catalog, retry_failed, summary)
    pending: dict[str, list[LedgerRow]] = {}
    for row in ledger.rows("status = 'pending'"):
        pending.setdefault(row.billing_system, []).append(row)
    progress = _Progress(sum(map(len, pending.values())))
    with ThreadPoolExecutor(max(len(pending), 1), thread_name_prefix="writeback") as pool:
        futures = [
            pool.submit(_work_through, ledger, rows, writer_for(system), policy, progress)
            for system, rows in pending.items()  # building a client sends nothing
        ]
        for future in futures:
            summary.outcomes.update(future.result())
    summary.ledger = ledger.counts()
    summary.failures = [
        {"action_id": r.action_id, "billing_system": r.billing_system, "error": r.error}
        for r in ledger.rows("status = 'failed'")
    ]
    return summary


def _work_through(
    ledger: Ledger,
    rows: list[LedgerRow],
    writer: BillingWriter,
    policy: RetryPolicy | None,
    progress: _Progress,
) -> Counter:
    """One system's pending actions, in order; the outcomes counted."""
    outcomes: Counter = Counter()
    for row in rows:
        if row.mode == "dry_run":
            outcome = dry_run_action(ledger, row, writer)
        else:
            outcome = apply_action(ledger, row, writer, policy)
        outcomes[(row.billing_system, outcome)] += 1
        progress.done(outcome)
    return outcomes


class _Progress:
    """A log line every 5 seconds and at the end: done, rate, outcomes so far."""

    def __init__(self, total: int):
        self.total, self.count, self.outcomes = total, 0, Counter()
        self._started = self._logged = time.monotonic()
        self._lock = threading.Lock()
        log.info("write-backs: %d pending action(s)", total)

    def done(self, outcome: str) -> None:
        with self._lock:
            self.count += 1
            self.outcomes[outcome] += 1
            now = time.monotonic()
            if now - self._logged >= 5 or self.count == self.total:
                self._logged = now
                log.info(
                    "write-backs: %d/%d done (%.0f/s) %s",
                    self.count,
                    self.total,
                    self.count / max(now - self._started, 1e-9),
                    dict(self.outcomes),
                )


def _sync_ledger(
    ledger: Ledger,
    derived: list[LedgerRow],
    ahead: set[str],
    catalog: Catalog,
    retry_failed: bool | list[str],
    summary: RunSummary,
) -> None:
    known = ledger.statuses()
    fresh = [row for row in derived if row.action_id not in known]
    ledger.insert(fresh)
    summary.outcomes.update((r.billing_system, f"new_{r.status}") for r in fresh)
    asked = {row.action_id: row for row in derived}
    for row in ledger.rows("status in ('pending', 'failed')"):
        if row.action_id not in asked and _ahead_of_the_marts(row, ahead, catalog):
            _follow_mode(ledger, row, catalog.systems[row.billing_system].mode)
        elif row.action_id not in asked:
            ledger.finish(row.action_id, "skipped", reason=_no_longer_asked(row))
            summary.outcomes[(row.billing_system, "superseded")] += 1
        elif row.status == "pending":
            _follow_mode(ledger, row, asked[row.action_id].mode)
        elif row.status == "failed" and _retry(row.action_id, retry_failed):
            again = asked[row.action_id]
            if again.status == "pending":  # resolvable now: the fix is in
                ledger.reopen(again)
                summary.outcomes[(row.billing_system, "reopened")] += 1


def _ahead_of_the_marts(row: LedgerRow, ahead: set[str], catalog: Catalog) -> bool:
    """An action of a session the fast path acted on and the marts do not have yet,
    still enabled: it stays as the fast path left it (a pending one is sent) until a
    sync shows what the session asks."""
    settings = catalog.systems.get(row.billing_system)
    return row.session_id in ahead and settings is not None and settings.enabled_for(row.action_at)


def _follow_mode(ledger: Ledger, row: LedgerRow, mode: str) -> None:
    """The catalog's mode now, not the one it was derived in: switching a system to
    dry_run stops its writes at once."""
    if row.status == "pending" and row.mode != mode:
        ledger.set_mode(row.action_id, mode)


def _retry(action_id: str, retry_failed: bool | list[str]) -> bool:
    return retry_failed is True or (isinstance(retry_failed, list) and action_id in retry_failed)


def _no_longer_asked(row: LedgerRow) -> str:
    return (
        "no longer asked for: the session now says otherwise, the subscription it matched "
        "changed, or the catalog turned the system off"
    )


def _action(row: LedgerRow) -> Action:
    return Action(
        action_id=row.action_id,
        billing_system=row.billing_system,
        subscription_id=row.subscription_id or "",
        customer_id=row.customer_id,
        action_type=row.action_type,
        parameters=row.parameters,
    )


def dry_run_action(ledger: Recorder, row: LedgerRow, writer: BillingWriter) -> str:
    """What would be sent, from the stored parameters alone: no request of any kind."""
    request = writer.request(_action(row), None)
    earlier = (
        f" (an earlier live attempt may have reached billing: {row.attempts} attempt(s))"
        if row.attempts
        else ""
    )
    ledger.finish(
        row.action_id,
        "dry_run",
        reason=f"dry run: would send {request.method} {request.path}{earlier}",
        request=request.describe(),
    )
    return "dry_run"


def apply_action(
    ledger: Recorder, row: LedgerRow, writer: BillingWriter, policy: RetryPolicy | None
) -> str:
    """Read, check, send, record (see the module docstring); the outcome. The fast path
    applies its actions with this too, recording to its journal."""
    action = _action(row)
    what = f"{row.billing_system} {row.action_type} {row.subscription_id} ({row.action_id})"
    attempts = row.attempts
    try:
        current = _call(lambda: writer.read(action.subscription_id), writer, f"read {what}", policy)
        reason = writer.already_done(action, current)
        if reason is not None:
            return _already(ledger, row.action_id, attempts, reason)
        if (moot := writer.moot(action, current)) is not None:
            ledger.finish(row.action_id, "skipped", reason=moot)
            return "skipped"
        request = writer.request(action, current)
        key = idempotency_key(row.action_id, request)

        def send() -> str | None:
            nonlocal attempts
            ledger.start_attempt(row.action_id, request.describe())
            attempts += 1
            return writer.send(request, key)

        request_id = _call(send, writer, f"write {what}", policy)
    except GaveUp as exc:
        ledger.finish(row.action_id, "pending", error=str(exc))
        log.warning("%s", exc)
        return "retry_later"
    except Exception as exc:  # a permanent API error: recorded, the run goes on
        if attempts > 1 and (reason := _landed_anyway(writer, action, policy)):
            return _already(ledger, row.action_id, attempts, reason)
        message = writer.error_message(exc)
        ledger.finish(row.action_id, "failed", error=message)
        log.error("%s failed: %s", what, message)
        return "failed"
    ledger.finish(row.action_id, "applied", billing_request_id=request_id)
    return "applied"


def _landed_anyway(writer: BillingWriter, action: Action, policy: RetryPolicy | None) -> str | None:
    """After an error on a resend: did an earlier try get through? (A Stripe DELETE is not
    idempotent: resent after a lost answer, it meets the canceled subscription's 404.)"""
    try:
        current = _call(lambda: writer.read(action.subscription_id), writer, "read back", policy)
    except Exception:
        return None
    return writer.already_done(action, current)


def _already(ledger: Recorder, action_id: str, attempts: int, reason: str) -> str:
    if attempts > 0:  # our own earlier attempt got through
        ledger.finish(
            action_id,
            "applied",
            reason=f"confirmed by reading back after an interrupted attempt: {reason}",
        )
        return "applied"
    ledger.finish(action_id, "skipped", reason=f"already true in billing: {reason}")
    return "skipped"


def _call(call: Callable[[], Any], writer: BillingWriter, what: str, policy: RetryPolicy | None):
    """Retry rate limits and transient errors; GaveUp when they run out."""
    try:
        return with_retries(call, writer.classifier, what, policy)
    except RuntimeError as exc:
        if isinstance(exc.__cause__, Exception) and (
            writer.classifier.retry_after(exc.__cause__) is not None
            or writer.classifier.transient(exc.__cause__)
        ):
            raise GaveUp(str(exc)) from exc
        raise
