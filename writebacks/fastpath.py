"""The fast path: a completed cancel or an accepted offer applied in billing within
seconds of the click, not at the next scheduled run.

The collector hands each committed session to `FastPath.submit` (design-16.md), which
queues it for a worker thread of its billing system (the HTTP answer never waits for
billing; one system's slow API or outage never holds up the others'). A system has
`lanes` workers, each with its own billing client; a billing id always goes to the same
lane, so one visitor's actions are applied in the order they were committed. A worker:

1. skips what the catalog does not write back (system `off`, acted before `since`);
2. finds the episode start S from the billing id's earlier visits, those the latest
   synced marts know (`fct_exit_sessions`) and those the collector knows (`earlier`),
   and the subscription the episode matches, from the marts' `dim_subscriptions`
   (validation.md §2, §3: writebacks.matching, held to dbt's answers by a test);
   no match (a subscription not synced yet): nothing is written, the scheduled run
   handles the session once the marts have it;
3. turns the session into actions with the scheduled path's own function
   (`derive.session_actions`: same action ids, parameters, modes and `since`);
4. records each in the journal (writebacks.journal) and applies it with the runner's
   own steps (`runner.apply_action`: read billing first, idempotency key, retries, the
   attempt counted before the request leaves), or records what a dry run would send.

The marts are read through `marts()`, a new read connection each time: the serving
copy of the marts on DuckDB (a new build is seen as soon as it is published), the
`marts` schema on Postgres; never the warehouse file, whose one writer is the pipeline.
`run_writebacks` imports the journal before it derives, so the scheduled path sees
these actions done and never sends them twice.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from billing_clients.retries import RetryPolicy
from writebacks.catalog import Catalog
from writebacks.derive import session_actions
from writebacks.journal import FINAL, Journal
from writebacks.matching import SAVE_WINDOW, episode_of, match_subscription
from writebacks.runner import WriterFactory, apply_action, dry_run_action

log = logging.getLogger("retention.writebacks.fastpath")
ACTIONS = ("canceled", "offer_accepted")
# Seconds, not the scheduled run's minutes: what is still failing after this is left
# pending in the journal for the scheduled run, which reads billing before resending.
FAST_POLICY = RetryPolicy(max_attempts=4, base_delay=0.25, max_delay=5.0)
# Workers per billing system: a burst of clicks is applied a few at a time, well within
# the APIs' write limits (bench/bench_fastpath.py measures it).
LANES = 4
Marts = Callable[[], AbstractContextManager[Any]]

_VISITS = """
select started_at, session_id from marts.fct_exit_sessions
where billing_system = ? and billing_id = ?
"""
# The billing id's candidates (§3) and, for a cancel of every subscription of the
# customer, the matched subscription's customer's others.
_SUBSCRIPTIONS = """
select subscription_id, customer_id, currency, activated_at, ended_at, current_period_end, mrr
from marts.dim_subscriptions
where billing_system = ? and (
    subscription_id = ? or customer_id = ? or customer_id in (
        select customer_id from marts.dim_subscriptions
        where billing_system = ? and subscription_id = ?))
"""
_VALIDATED_AT = "select max(validated_at) from marts.fct_exit_episodes where billing_system = ?"


def _aware(value: datetime | str | None) -> datetime | None:
    """A time from the marts or the collector (ISO-8601 text or a datetime), in UTC; one
    without an offset is UTC, as the exit-session contract reads it."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _records(db: Any, query: str, params: list[Any]) -> list[dict[str, Any]]:
    cursor = db.execute(query, params)
    names = [d[0] for d in cursor.description]
    return [
        {n: _aware(v) if isinstance(v, datetime) else v for n, v in zip(names, row, strict=True)}
        for row in cursor.fetchall()
    ]


def serving_marts(path: Path) -> Marts:
    """`marts` for the serving DuckDB copy at `path` (orchestration/serving.py): a read-only
    connection per worker thread, kept while `path` points at the same build and reopened
    on the newest one as soon as a sync publishes it (opening costs ~20 ms of CPU a click)."""
    local = threading.local()

    def connect() -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        if not path.exists():
            raise FileNotFoundError(
                f"no serving copy of the marts at {path} yet: the sync publishes it "
                "(serving_marts); until then the scheduled write-back run applies sessions"
            )
        build = path.resolve()
        stat = build.stat()
        key = (build, stat.st_ino, stat.st_mtime_ns)
        if getattr(local, "key", None) != key:
            if getattr(local, "connection", None) is not None:
                local.connection.close()
            local.connection, local.key = duckdb.connect(str(build), read_only=True), key
        return contextlib.nullcontext(local.connection)

    return connect


class FastPath:
    """Queues and worker threads per billing system (see the module docstring); each
    worker builds its own writer, as a Recurly client is not thread-safe."""

    def __init__(
        self,
        state_db: Path,
        catalog: Catalog,
        marts: Marts,
        writer_for: WriterFactory,
        *,
        window: timedelta = SAVE_WINDOW,
        policy: RetryPolicy = FAST_POLICY,
        on_result: Callable[[dict[str, Any]], None] | None = None,
        lanes: int = LANES,
    ):
        self.journal = Journal(state_db)
        self.catalog, self.marts, self.window, self.policy = catalog, marts, window, policy
        self.on_result = on_result
        self.lanes = lanes
        self._writer_for = writer_for
        self._queues: dict[tuple[str, int], queue.Queue[tuple[dict, list] | None]] = {
            (system, lane): queue.Queue()
            for system, settings in catalog.systems.items()
            if settings.mode != "off"
            for lane in range(lanes)
        }
        # Set by each worker once its writer is built (or failed to be).
        self._warm = {lane: threading.Event() for lane in self._queues}
        self._workers = [
            threading.Thread(
                target=self._work, args=lane, name=f"fastpath-{lane[0]}-{lane[1]}", daemon=True
            )
            for lane in self._queues
        ]
        for worker in self._workers:
            worker.start()

    # -- the collector's side ------------------------------------------------------------
    def submit(self, session: dict[str, Any], earlier: list[datetime]) -> None:
        """Queue a committed session (the full row); returns at once. Sessions that ask
        for nothing are dropped here; a session submitted again is applied once (its
        actions' ids are in the journal). A system the catalog turns off has no queue."""
        lane = zlib.crc32(str(session.get("billing_id")).encode()) % self.lanes
        todo = self._queues.get((session.get("billing_system"), lane))
        if todo is not None and session.get("action") in ACTIONS:
            todo.put((session, list(earlier)))

    def wait_ready(self, timeout: float) -> bool:
        """Wait until every worker has built its billing client (or failed to, logged):
        the first click of a system otherwise pays for the SDK's import. False if some
        were still building at `timeout`."""
        deadline = time.monotonic() + timeout
        return all(e.wait(max(deadline - time.monotonic(), 0)) for e in self._warm.values())

    def drain(self, timeout: float) -> None:
        """Wait until every submitted session has been handled (tests, benches)."""
        deadline = time.monotonic() + timeout
        for (system, _), todo in self._queues.items():
            with todo.all_tasks_done:
                while todo.unfinished_tasks:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(
                            f"fast path: {todo.unfinished_tasks} {system} session(s) still "
                            f"being applied after {timeout} s"
                        )
                    todo.all_tasks_done.wait(remaining)

    def close(self) -> None:
        """Finish what is queued, stop the workers, close the journal."""
        for todo in self._queues.values():
            todo.put(None)
        for worker in self._workers:
            worker.join()
        self.journal.close()

    def _work(self, system: str, lane: int) -> None:
        todo = self._queues[(system, lane)]
        # Built before the first click (the SDK's import and client cost seconds once),
        # else on first use: functools.cache keeps no failure.
        writer = functools.cache(lambda: self._writer_for(system))
        try:
            writer()
        except Exception as exc:
            log.warning("fast path: no %s writer yet (%s); trying again on a click", system, exc)
        finally:
            self._warm[(system, lane)].set()
        while (item := todo.get()) is not None:
            try:
                self.apply(*item, writer=writer)
            except Exception:  # logged; the scheduled run applies the session later
                log.exception("fast path: session %s not applied", item[0].get("session_id"))
            finally:
                todo.task_done()
        todo.task_done()

    # -- the work ------------------------------------------------------------------------
    def apply(
        self, session: dict[str, Any], earlier: list[datetime], writer: Callable[[], Any]
    ) -> list[dict[str, Any]]:
        """Match, derive, record and apply one session's actions now with `writer()`,
        its system's writer; the journal rows (none when nothing is written back, or no
        subscription matched yet)."""
        action_at = _aware(session["action_at"])
        settings = self.catalog.systems.get(session["billing_system"])
        if settings is None or not settings.enabled_for(action_at):
            return []
        with self.marts() as db:
            found = self._match(db, session, action_at, earlier)
        if found is None:
            log.info(
                "fast path: no synced %s subscription for billing id %r yet: the scheduled "
                "run applies session %s",
                session["billing_system"],
                session["billing_id"],
                session["session_id"],
            )
            return []
        described, matched, owned = found
        results = []
        for row in session_actions(described, matched, owned, self.catalog):
            stored = self.journal.record(row)
            if stored.status not in FINAL:
                if stored.mode == "dry_run":
                    dry_run_action(self.journal, stored, writer())
                else:
                    apply_action(self.journal, stored, writer(), self.policy)
            results.append(self._report(self.journal.row(stored.action_id)))
        return results

    def _match(
        self, db: Any, session: dict[str, Any], action_at: datetime, earlier: list[datetime]
    ) -> tuple[dict, dict, list[dict]] | None:
        """The session as `session_actions` takes it, its matched subscription and that
        customer's subscriptions; None when no subscription matches."""
        system, billing_id = session["billing_system"], session["billing_id"]
        visits = [
            (v["started_at"], v["session_id"]) for v in _records(db, _VISITS, [system, billing_id])
        ]
        # The collector knows only when its earlier visits started; "" sorts a visit of
        # the same second first, as it came first.
        visits += [(_aware(when), "") for when in earlier]
        episode = episode_of(
            session["session_id"], _aware(session["started_at"]), visits, self.window
        )
        candidates = _records(
            db, _SUBSCRIPTIONS, [system, billing_id, billing_id, system, billing_id]
        )
        matched = match_subscription(candidates, billing_id, episode.started_at)
        if matched is None:
            return None
        validated_at = db.execute(_VALIDATED_AT, [system]).fetchall()[0][0]
        described = {
            **{k: session.get(k) for k in ("session_id", "billing_system", "billing_id")},
            **{k: session.get(k) for k in ("action", "offer_id", "offer_type")},
            "action_at": action_at,
            "episode_id": episode.episode_id or None,
            "customer_id": matched["customer_id"],
            "validated_at": _aware(validated_at),
        }
        owned = [c for c in candidates if c["customer_id"] == matched["customer_id"]]
        return described, matched, owned

    def _report(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.on_result is not None:
            try:
                self.on_result(row)
            except Exception:  # the callback's failure is its own; the action stands
                log.exception("fast path: on_result failed for %s", row["action_id"])
        log.info(
            "fast path: %s %s %s: %s",
            row["billing_system"],
            row["action_type"],
            row["subscription_id"],
            row["status"],
        )
        return row
