"""The collector's state database: one SQLite file (RETENTION_COLLECTOR_DB) holding the
collector's session log, the fast path's journal and the webhook outbox, each package
owning its tables. This module is the one home of how it is opened, so every process and
thread that shares the file opens it alike:

- WAL: readers never block the one writer, across processes (the collector, Dagster runs,
  `retention` commands);
- synchronous=FULL: a commit is on disk before the caller goes on (the collector
  acknowledges a session only after it), unless a caller lowers it for writes it can lose;
- a busy timeout: a writer waits for another instead of failing at once with "database is
  locked";
- autocommit (`isolation_level=None`): transactions are explicit (`transaction`).

SQLite, not the warehouse: the stdlib, multi-process safe, and away from DuckDB's single
writer lock, which the pipeline holds during loads and dbt runs (DECISIONLOG #16).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 10_000


def connect(path: Path) -> sqlite3.Connection:
    """A read-write connection, creating the file (and its folder) when missing. Usable
    from another thread than the one that opened it (each user keeps a connection per
    thread, or serialises its use)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    con.execute(f"pragma busy_timeout={BUSY_TIMEOUT_MS}")
    con.execute("pragma journal_mode=WAL")
    con.execute("pragma synchronous=FULL")
    return con


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to an existing file: a sensor or a figure that polls it never
    creates the file, nor takes the write lock."""
    return sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)


@contextmanager
def transaction(con: sqlite3.Connection, lock: str = "immediate") -> Iterator[sqlite3.Connection]:
    """`begin <lock>` ... commit, rolled back on any error: a write takes the lock at once
    (`immediate`), so two writers queue on the busy timeout instead of one failing at its
    first write."""
    con.execute(f"begin {lock}")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")
