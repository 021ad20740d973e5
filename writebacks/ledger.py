"""The write-back ledger: one row per action, the durable memory of exactly-once.

A table in the warehouse (`writebacks.actions`, on DuckDB or Postgres), written by the
runner one statement at a time, each committed before the next network call: an attempt is counted *before* its
request leaves, so after a crash at any point the row tells a re-run whether the
request may have gone out (`attempts > 0`) and the runner reads billing before sending
again. dbt publishes the table as `marts.fct_billing_writebacks` (marts.md).

Statuses: `pending` (to do, or interrupted), `applied`, `failed` (a permanent error, or
an action that cannot be resolved: no subscription matched, offer not in the catalog;
retried on request), `skipped` (already true in billing, or no longer asked for),
`dry_run` (recorded with the request it would send, not sent: the system's mode was
dry_run). Only pending rows are ever sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import duckdb
import pyarrow as pa

SCHEMA = "writebacks"
TABLE = f"{SCHEMA}.actions"
STATUSES = ("pending", "applied", "failed", "skipped", "dry_run")

_DDL = f"""
create schema if not exists {SCHEMA};
create table if not exists {TABLE} (
    action_id varchar primary key,
    episode_id varchar,
    session_id varchar not null,
    billing_system varchar not null,
    subscription_id varchar,
    customer_id varchar,
    action_type varchar not null,
    offer_id varchar,
    action_at timestamptz not null,
    mode varchar not null,
    parameters varchar not null,
    request varchar,
    status varchar not null,
    attempts integer not null default 0,
    reason varchar,
    error varchar,
    billing_request_id varchar,
    derived_at timestamptz not null,
    last_attempt_at timestamptz,
    applied_at timestamptz,
    updated_at timestamptz not null
)
"""


@dataclass
class LedgerRow:
    """An action as derived from the marts (status pending, or failed when it cannot be
    resolved), or as read back from the ledger."""

    action_id: str
    episode_id: str | None
    session_id: str
    billing_system: str
    subscription_id: str | None
    customer_id: str | None
    action_type: str
    offer_id: str | None
    action_at: datetime
    mode: str
    parameters: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"
    attempts: int = 0
    error: str | None = None
    request: dict[str, Any] | None = None


_COLUMNS = (
    "action_id",
    "episode_id",
    "session_id",
    "billing_system",
    "subscription_id",
    "customer_id",
    "action_type",
    "offer_id",
    "action_at",
    "mode",
    "parameters",
    "status",
    "attempts",
    "error",
    "request",
)


def as_json(value: dict[str, Any] | None) -> str | None:
    """A parameters or request column as stored (keys sorted: equal dicts, equal text)."""
    return json.dumps(value, sort_keys=True) if value is not None else None


def _values(row: LedgerRow) -> list[Any]:
    return [
        as_json(getattr(row, c)) if c in ("parameters", "request") else getattr(row, c)
        for c in _COLUMNS
    ]


def _now() -> datetime:
    return datetime.now(UTC)


# Every column of the ledger, which the fast path's journal has too (writebacks.journal).
ALL_COLUMNS = (
    *_COLUMNS,
    "reason",
    "billing_request_id",
    "derived_at",
    "last_attempt_at",
    "applied_at",
    "updated_at",
)


class Connection(Protocol):
    """A warehouse connection: DuckDB's, or one with the same `execute` (`?` placeholders,
    each statement committed) and `executemany` (orchestration's PostgresConnection)."""

    def execute(self, sql: str, params: Any = None) -> Any: ...

    def executemany(self, sql: str, rows: Any) -> Any: ...


_INSERT = (
    f"insert into {TABLE} ({', '.join(_COLUMNS)}, derived_at, updated_at) "
    f"values ({', '.join('?' * (len(_COLUMNS) + 2))}) on conflict do nothing"
)


class Recorder:
    """The writes the runner makes around each request, shared by the ledger and the fast
    path's journal (writebacks.journal): one committed statement each, so the attempt is
    recorded before the request leaves and the outcome before the next one."""

    table: str

    def _run(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        raise NotImplementedError

    def _stamp(self) -> Any:
        """Now, as the table stores times."""
        return _now()

    def start_attempt(self, action_id: str, request: dict[str, Any]) -> None:
        """Counted before the request leaves: `attempts > 0` means it may have arrived."""
        now = self._stamp()
        self._run(
            f"update {self.table} set attempts = attempts + 1, request = ?, last_attempt_at = ?, "
            "updated_at = ? where action_id = ?",
            [as_json(request), now, now, action_id],
        )

    def finish(
        self,
        action_id: str,
        status: str,
        *,
        reason: str | None = None,
        error: str | None = None,
        billing_request_id: str | None = None,
        request: dict[str, Any] | None = None,
    ) -> None:
        now = self._stamp()
        self._run(
            f"update {self.table} set status = ?, reason = ?, error = ?, "
            "billing_request_id = coalesce(?, billing_request_id), "
            "request = coalesce(?, request), "
            "applied_at = case when ? = 'applied' then ? else applied_at end, "
            "updated_at = ? where action_id = ?",
            [
                status,
                reason,
                error,
                billing_request_id,
                as_json(request),
                status,
                now,
                now,
                action_id,
            ],
        )


class Ledger(Recorder):
    """The ledger table on an open warehouse connection (DuckDB's or Postgres')."""

    table = TABLE

    def __init__(self, connection: Connection):
        self.db = connection
        # One connection, used by the runner's per-system threads in turn: DuckDB's
        # statements here take about a millisecond.
        self._lock = threading.Lock()
        self._run(_DDL)
        # Ledgers written before dry runs had their own status recorded them as skipped.
        self._run(
            f"update {TABLE} set status = 'dry_run' where status = 'skipped' "
            "and mode = 'dry_run' and reason like 'dry run:%'"
        )

    def _run(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        """One statement (committed on its own), its rows fetched."""
        with self._lock:
            return self.db.execute(sql, list(params)).fetchall()

    # -- reading ------------------------------------------------------------------------
    def rows(self, where: str = "true", params: Iterable[Any] = ()) -> Iterator[LedgerRow]:
        query = (
            f"select {', '.join(_COLUMNS)} from {TABLE} where {where} order by action_at, action_id"
        )
        for values in self._run(query, params):
            record = dict(zip(_COLUMNS, values, strict=True))
            record["parameters"] = json.loads(record["parameters"])
            record["request"] = json.loads(record["request"]) if record["request"] else None
            record["action_at"] = record["action_at"].astimezone(UTC)
            yield LedgerRow(**record)

    def statuses(self) -> dict[str, str]:
        return dict(self._run(f"select action_id, status from {TABLE}"))

    def counts(self) -> dict[tuple[str, str], int]:
        """(billing_system, status) -> actions."""
        query = f"select billing_system, status, count(*) from {TABLE} group by 1, 2"
        return {(s, st): n for s, st, n in self._run(query)}

    # -- writing: one committed statement each ------------------------------------------
    def insert(self, rows: list[LedgerRow]) -> None:
        """New actions, in one statement (on DuckDB an Arrow table: row-by-row inserts
        cost ~3 ms each; on Postgres batches of rows); one already in the ledger is left
        as it is."""
        if not rows:
            return
        now = _now()
        values = [[*_values(row), now, now] for row in rows]
        if not isinstance(self.db, duckdb.DuckDBPyConnection):
            with self._lock:
                self.db.executemany(_INSERT, values)
            return
        names = [*_COLUMNS, "derived_at", "updated_at"]
        table = pa.table({name: [v[i] for v in values] for i, name in enumerate(names)})
        with self._lock:
            self.db.register("new_actions", table)
            try:
                self.db.execute(
                    f"insert into {TABLE} by name select * from new_actions on conflict do nothing"
                )
            finally:
                self.db.unregister("new_actions")

    def import_rows(self, records: list[dict[str, Any]]) -> int:
        """The fast path's journal rows (writebacks.journal), as the journal has them:
        new ones added; a ledger row still pending (or failed, where the fast path has
        since applied it) takes the journal's state, parameters included, so a resend
        carries the request, and the idempotency key, the fast path may have sent."""
        if not records:
            return 0
        names = [c for c in ALL_COLUMNS if c != "action_id"]
        statement = (
            f"insert into {TABLE} as a ({', '.join(ALL_COLUMNS)}) "
            f"values ({', '.join('?' * len(ALL_COLUMNS))}) on conflict (action_id) do update set "
            + ", ".join(
                f"{c} = greatest(a.{c}, excluded.{c})" if c == "attempts" else f"{c} = excluded.{c}"
                for c in names
                if c != "derived_at"
            )
            + " where a.status = 'pending' or (a.status = 'failed' and excluded.status = 'applied')"
        )
        values = [
            [as_json(r[c]) if c in ("parameters", "request") else r[c] for c in ALL_COLUMNS]
            for r in records
        ]
        with self._lock:
            self.db.executemany(statement, values)
        return len(records)

    def reopen(self, row: LedgerRow) -> None:
        """A failed action to try again, with its parameters resolved anew (the catalog
        may have been fixed since)."""
        self._run(
            f"update {TABLE} set status = 'pending', parameters = ?, subscription_id = ?, "
            "action_type = ?, mode = ?, error = null, updated_at = ? "
            "where action_id = ? and status = 'failed'",
            [
                as_json(row.parameters),
                row.subscription_id,
                row.action_type,
                row.mode,
                _now(),
                row.action_id,
            ],
        )

    def set_mode(self, action_id: str, mode: str) -> None:
        """A pending action follows its system's mode as the catalog says it now (a live
        system switched to dry_run sends nothing more)."""
        self._run(
            f"update {TABLE} set mode = ?, updated_at = ? "
            "where action_id = ? and status = 'pending' and mode <> ?",
            [mode, _now(), action_id, mode],
        )
