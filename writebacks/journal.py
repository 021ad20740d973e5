"""The fast path's journal: its ledger rows, in the collector's state database (SQLite).

The fast path applies a cancel or an accepted offer within seconds of the visitor's
click, while the pipeline may hold the warehouse (DuckDB's one writer) for a load or a
dbt run: so it records to a table of its own in the state database (design-16.md), one
row per action with the ledger's columns and statuses, each change committed (WAL,
synchronous=FULL: fsynced) before the next network call, the attempt counted before the
request leaves, as the ledger does (writebacks/ledger.py).

The scheduled run imports the rows changed since its last import into the ledger
before it derives (`Ledger.import_rows`), so it sees the fast path's work as its own:
an applied action is never sent again, and one left pending after an attempt is read
back from billing before anything is resent.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from statedb import connect
from writebacks.ledger import ALL_COLUMNS, LedgerRow, Recorder, as_json

TABLE = "fastpath_journal"

_DDL = f"""
create table if not exists {TABLE} (
    action_id text primary key,
    episode_id text,
    session_id text not null,
    billing_system text not null,
    subscription_id text,
    customer_id text,
    action_type text not null,
    offer_id text,
    action_at text not null,
    mode text not null,
    parameters text not null,
    request text,
    status text not null,
    attempts integer not null default 0,
    reason text,
    error text,
    billing_request_id text,
    derived_at text not null,
    last_attempt_at text,
    applied_at text,
    updated_at text not null,
    imported_at text
)
"""
TIMES = ("action_at", "derived_at", "last_attempt_at", "applied_at", "updated_at")
FINAL = ("applied", "skipped", "failed", "dry_run")


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Journal(Recorder):
    """The journal table on the state database at `state_db` (or an open connection).
    One connection, shared by the fast path's worker and its callers, one statement at
    a time. Attempts and outcomes are written as the ledger writes them (Recorder)."""

    table = TABLE

    def __init__(self, state_db: Path | sqlite3.Connection):
        self.db = state_db if isinstance(state_db, sqlite3.Connection) else connect(state_db)
        self._lock = threading.Lock()
        self._run(_DDL)

    def _run(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._lock:
            return self.db.execute(sql, list(params)).fetchall()

    def _stamp(self) -> str:
        return _now()

    def close(self) -> None:
        self.db.close()

    # -- the fast path's side -------------------------------------------------------------
    def record(self, row: LedgerRow) -> LedgerRow:
        """The action as the journal holds it: `row` added if new, else the stored one
        (status and attempts as a previous try left them)."""
        now = _now()
        self._run(
            f"insert into {TABLE} (action_id, episode_id, session_id, billing_system, "
            "subscription_id, customer_id, action_type, offer_id, action_at, mode, parameters, "
            "status, error, derived_at, updated_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?, ?, ?) on conflict (action_id) do nothing",
            [
                row.action_id,
                row.episode_id,
                row.session_id,
                row.billing_system,
                row.subscription_id,
                row.customer_id,
                row.action_type,
                row.offer_id,
                row.action_at.astimezone(UTC).isoformat(),
                row.mode,
                as_json(row.parameters),
                row.status,
                row.error,
                now,
                now,
            ],
        )
        stored = self.row(row.action_id)
        return LedgerRow(**{name: stored[name] for name in LedgerRow.__dataclass_fields__})

    # -- reading -------------------------------------------------------------------------
    def row(self, action_id: str) -> dict[str, Any]:
        """One action, every column, times as datetimes and JSON decoded."""
        return self._rows("action_id = ?", [action_id])[0]

    def _rows(self, where: str, params: list[Any]) -> list[dict[str, Any]]:
        names = [*ALL_COLUMNS, "imported_at"]
        query = f"select {', '.join(names)} from {TABLE} where {where} order by action_at"
        rows = []
        for values in self._run(query, params):
            record = dict(zip(names, values, strict=True))
            for name in TIMES:
                if record[name] is not None:
                    record[name] = datetime.fromisoformat(record[name])
            record["parameters"] = json.loads(record["parameters"])
            record["request"] = json.loads(record["request"]) if record["request"] else None
            rows.append(record)
        return rows

    # -- the scheduled run's side --------------------------------------------------------
    def changed(self) -> list[dict[str, Any]]:
        """Rows added or changed since they were last imported into the ledger."""
        return self._rows("imported_at is null or imported_at <> updated_at", [])

    def session_ids(self) -> set[str]:
        """Every session the fast path has acted on."""
        return {session_id for (session_id,) in self._run(f"select session_id from {TABLE}")}

    def prune(self, before: datetime) -> int:
        """Forget finished rows imported as they are now and last changed before `before`:
        the ledger holds them. Keeps the journal as small as the fast path's recent work."""
        with self._lock:
            return self.db.execute(
                f"delete from {TABLE} where imported_at = updated_at "
                f"and status in ({', '.join('?' * len(FINAL))}) "
                "and julianday(updated_at) < julianday(?)",
                [*FINAL, before.astimezone(UTC).isoformat()],
            ).rowcount

    def mark_imported(self, rows: list[dict[str, Any]]) -> None:
        """Imported as they were read: a row changed since is imported again next time."""
        with self._lock:
            self.db.executemany(
                f"update {TABLE} set imported_at = updated_at "
                "where action_id = ? and updated_at = ?",
                [(r["action_id"], r["updated_at"].isoformat()) for r in rows],
            )
