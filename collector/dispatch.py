"""Handing each committed session change to the webhook outbox and, for a completed cancel
or an accepted offer, to the write-back fast path: at least once, in log order.

A round submits its changes to the fast path (a queue: it returns at once), then, in ONE
transaction of the state database, enqueues their webhook events and marks them
dispatched: the events and the marks commit together with one fsync, so an event is
enqueued exactly once. After a crash or an error the unmarked changes are handed over
again; the fast path applies a session once (the write-back's action id)."""

from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from collector.log import connect, now, transaction
from collector.sessions import FAST_PATH_ACTIONS, decode
from collector.worker import Worker

log = logging.getLogger(__name__)


class Outbox(Protocol):
    def emit_sessions(self, rows: list[dict[str, Any]], *, db: sqlite3.Connection) -> int: ...

    def wake(self) -> None: ...


class FastPath(Protocol):
    def submit(self, session: dict[str, Any], earlier: list[datetime]) -> None: ...


def earlier_starts(con: sqlite3.Connection, row: dict[str, Any]) -> list[datetime]:
    """started_at of the other sessions of this billing id that began before this one: the
    fast path groups them into episodes with those the marts know (validation.md §2)."""
    found = con.execute(
        "select distinct started_at from collector_sessions"
        " where billing_system = ? and billing_id = ? and session_id != ? and started_at < ?",
        (row["billing_system"], row["billing_id"], row["session_id"], row["started_at"]),
    )
    return sorted(datetime.fromisoformat(text) for (text,) in found)


def dispatch_once(
    con: sqlite3.Connection,
    outbox: Outbox | None,
    fast_path: FastPath | None,
    limit: int = 500,
) -> int:
    """Hand the oldest undispatched changes over; the number handed. An error leaves the
    whole round unmarked, to be handed over again."""
    pending = [
        (seq, decode(text))
        for seq, text in con.execute(
            "select seq, row from collector_sessions where dispatched_at is null"
            " order by seq limit ?",
            (limit,),
        )
    ]
    if not pending:
        return 0
    if fast_path is not None:
        for _, row in pending:
            if row["action"] in FAST_PATH_ACTIONS:
                fast_path.submit(row, earlier_starts(con, row))
    with transaction(con):
        if outbox is not None:
            outbox.emit_sessions([row for _, row in pending], db=con)
        at = now()
        con.executemany(
            "update collector_sessions set dispatched_at = ? where seq = ?",
            [(at, seq) for seq, _ in pending],
        )
    if outbox is not None:
        outbox.wake()
    return len(pending)


class Dispatcher(Worker):
    """A thread dispatching new changes; woken when the log commits, else every
    `interval` seconds (and after an error, `interval` later)."""

    thread_name = "collector-dispatch"

    def __init__(
        self,
        state_db: Path,
        outbox: Outbox | None,
        fast_path: FastPath | None,
        interval: float = 1.0,
        gather: float = 0.05,
    ) -> None:
        super().__init__()
        self.state_db = state_db
        self.outbox = outbox
        self.fast_path = fast_path
        self.interval = interval
        self.gather = gather
        self._wake = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def _interrupt(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        with closing(connect(self.state_db)) as con:
            while not self._stop.is_set():
                self._wake.wait(self.interval)
                # Let a burst of commits gather into one round (one transaction).
                self._stop.wait(self.gather)
                self._wake.clear()
                try:
                    while dispatch_once(con, self.outbox, self.fast_path):
                        pass
                except Exception as exc:  # an outbox or fast-path failure must not end the thread
                    log.error(
                        "dispatch failed, retried in %.0f s: %s", self.interval, type(exc).__name__
                    )
