"""The durable session log: every accepted change of a session, as its full row, in one
SQLite table of the state database (WAL, synchronous=FULL: a commit is on disk before the
collector acknowledges it).

One writer thread owns every write and commits in groups: requests queue their change, the
writer takes all that are waiting, applies them in one transaction and commits once, then
answers each. An fsync per request would cap the rate at the disk's fsync rate; a group
commit costs one fsync for the whole group. Because one thread applies every change in
order, the idempotency check (is this exactly the stored row?) needs no other lock.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collector.sessions import Checked, Problem, check_rows, decode, encode
from statedb import connect, transaction

log = logging.getLogger(__name__)

SCHEMA = """
create table if not exists collector_sessions (
    seq integer primary key autoincrement,
    session_id text not null,
    billing_system text not null,
    billing_id text not null,
    started_at text not null,
    action text,
    row text not null,
    received_at text not null,
    dispatched_at text
);
create index if not exists collector_sessions_by_id on collector_sessions (session_id, seq);
create index if not exists collector_sessions_by_billing_id
    on collector_sessions (billing_system, billing_id);
create index if not exists collector_sessions_undispatched
    on collector_sessions (seq) where dispatched_at is null;
create table if not exists collector_segments (
    first_seq integer primary key,
    last_seq integer not null,
    name text not null,
    published_at text
);
create table if not exists collector_meta (key text primary key, value text not null);
"""


def create_tables(path: Path) -> None:
    with closing(connect(path)) as con:
        con.executescript(SCHEMA)


@dataclass(frozen=True)
class Landing:
    """A page's first post of a visit: the session's fields as sent."""

    fields: dict[str, Any]


@dataclass(frozen=True)
class Update:
    """A later post of the outcome; `identity` must equal the stored session's."""

    session_id: str
    identity: dict[str, Any]
    fields: dict[str, Any]


@dataclass
class Result:
    """What the writer did: status 201 (new session), 200 (updated, or unchanged: `stored`
    False), 403/404/409/422 with problems."""

    status: int
    row: dict[str, Any] | None = None
    stored: bool = False
    problems: list[Problem] = field(default_factory=list)


_STOP = object()


class SessionLog:
    """The session log and its writer thread."""

    def __init__(self, path: Path, max_batch: int = 512, linger: float = 0.002) -> None:
        self.path = path
        self.max_batch = max_batch
        self.linger = linger
        create_tables(path)
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="collector-log", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def submit(self, change: Landing | Update) -> Future[Result]:
        """Queue a change; the future is answered once it is committed (or refused)."""
        future: Future[Result] = Future()
        self._queue.put((change, future))
        return future

    def _run(self) -> None:
        with closing(connect(self.path)) as con:
            while True:
                items = self._take()
                stop = _STOP in items
                items = [item for item in items if item is not _STOP]
                if items:
                    self._commit(con, items)
                if stop:
                    return

    def _take(self) -> list:
        """The next group: the first waiting change, and those arriving within `linger`
        after it. A group costs about 3 ms of CPU whatever its size (one contract pass,
        one commit), so a moment's wait that makes groups larger costs far less than it
        saves once the rate is high."""
        items = [self._queue.get()]
        deadline = time.monotonic() + self.linger
        while len(items) < self.max_batch:
            try:
                items.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return items

    def _commit(self, con: sqlite3.Connection, items: list) -> None:
        try:
            with transaction(con):
                results = apply(con, [change for change, _ in items], now())
        except (sqlite3.Error, OSError) as exc:
            log.error("could not commit %d session changes: %s", len(items), exc)
            for _, future in items:
                future.set_exception(exc)
            return
        for (_, future), result in zip(items, results, strict=True):
            future.set_result(result)


def now() -> str:
    return datetime.now(UTC).isoformat()


def latest(con: sqlite3.Connection, session_id: str) -> dict[str, Any] | None:
    found = con.execute(
        "select row from collector_sessions where session_id = ? order by seq desc limit 1",
        (session_id,),
    ).fetchone()
    return decode(found[0]) if found else None


def apply(con: sqlite3.Connection, changes: list[Landing | Update], at: str) -> list[Result]:
    """Apply changes in order inside the caller's transaction. They go in rounds in which
    each session appears once, so one contract pass checks a whole round and a session's
    second change in a group sees its first."""
    results: list[Result | None] = [None] * len(changes)
    pending = list(enumerate(changes))
    while pending:
        batch, rest, seen = [], [], set()
        for index, change in pending:
            key = _session_id(change)
            (rest if key in seen else batch).append((index, change))
            seen.add(key)
        for (index, _), result in zip(batch, _apply_round(con, batch, at), strict=True):
            results[index] = result
        pending = rest
    return [r for r in results if r is not None]


def _session_id(change: Landing | Update) -> str:
    return change.session_id if isinstance(change, Update) else change.fields["session_id"]


def _apply_round(
    con: sqlite3.Connection, batch: list[tuple[int, Landing | Update]], at: str
) -> list[Result]:
    stored = [latest(con, _session_id(change)) for _, change in batch]
    merged = [merge(change, row, at) for (_, change), row in zip(batch, stored, strict=True)]
    rows = [m for m in merged if isinstance(m, dict)]
    checked = iter(check_rows(rows))
    results = []
    for (_, change), before, candidate in zip(batch, stored, merged, strict=True):
        if isinstance(candidate, Result):
            results.append(candidate)
            continue
        results.append(_store(con, change, before, next(checked), at))
    return results


def merge(change: Landing | Update, stored: dict | None, at: str) -> dict | Result:
    """The full row a change asks to store, or why it cannot: an update of an unknown
    session, or one whose signed identity is not the session's. Times the page left out
    default to the receive time, or to the stored ones, so a retry is equal."""
    if isinstance(change, Landing):
        row = dict(change.fields)
        if row.get("started_at") is None:
            row["started_at"] = stored["started_at"] if stored else at
        base = stored or {}
    else:
        if stored is None:
            return Result(404, problems=[Problem("session_id", "no session with this id")])
        differ = [k for k, v in change.identity.items() if stored.get(k) != v]
        if differ:
            return Result(
                403,
                problems=[
                    Problem(k, f"{k} differs from the session's (signed for another session)")
                    for k in differ
                ],
            )
        row = {**stored, **change.fields}
        base = stored
    if row.get("action") and row.get("action_at") is None:
        same = base.get("action") == row["action"]
        row["action_at"] = base["action_at"] if same and base.get("action_at") else at
    return row


def _store(
    con: sqlite3.Connection,
    change: Landing | Update,
    before: dict | None,
    checked: Checked,
    at: str,
) -> Result:
    if checked.row is None:
        return Result(422, problems=checked.problems)
    row = checked.row
    if before == row:
        return Result(200, row)
    if isinstance(change, Landing) and before is not None:
        differ = [k for k in row if row[k] != before.get(k)]
        return Result(
            409,
            problems=[
                Problem(
                    "session_id",
                    "a session with this id exists with other values ("
                    + ", ".join(differ)
                    + "): send changes with PATCH /v1/sessions/{session_id}",
                )
            ],
        )
    con.execute(
        "insert into collector_sessions (session_id, billing_system, billing_id, started_at,"
        " action, row, received_at) values (?, ?, ?, ?, ?, ?, ?)",
        (
            row["session_id"],
            row["billing_system"],
            row["billing_id"],
            row["started_at"],
            row["action"],
            encode(row),
            at,
        ),
    )
    return Result(201 if isinstance(change, Landing) else 200, row, stored=True)


def backlog(con: sqlite3.Connection) -> dict[str, int]:
    """Committed changes not yet handed to the outbox and fast path, and not yet published
    into the drop folder: both stay near zero while the collector keeps up."""
    undispatched = con.execute(
        "select count(*) from collector_sessions where dispatched_at is null"
    ).fetchone()[0]
    unpublished = con.execute(
        "select coalesce((select max(seq) from collector_sessions), 0)"
        " - coalesce((select max(last_seq) from collector_segments"
        " where published_at is not null), 0)"
    ).fetchone()[0]
    return {"undispatched": undispatched, "unpublished": unpublished}
