"""The outbox: events stored in the state database before anyone sends them, then POSTed,
signed, to every endpoint that takes them, at least once.

Why an outbox table rather than sending at once: the collector acknowledges a session
before any receiver answers, and a Dagster step must not fail because a receiver is down.
An event is committed (fsync) first, one row per endpoint; delivery reads the table, so
an event survives a crash, a restart or a receiver down for hours, and any process (the
collector's `Deliverer` thread, a Dagster run's `deliver_pending`) may deliver it.

- Idempotent: the key is (endpoint, event_id); emitting an event again, delivered,
  pending or dead, adds nothing.
- At least once: a row is claimed with a lease (its next attempt moved past the request's
  longest time) and its attempt counted before the request leaves; a process that dies
  mid-request leaves the row to be claimed again when the lease ends. A receiver may see
  an event twice and dedupes by its id (`Retention-Event-Id`, the body's `id`).
- Retries: exponential backoff with full jitter (tenacity's `wait_random_exponential`,
  computed per attempt; the schedule itself is kept in the table, not in a sleeping
  thread, so it survives restarts and is shared by processes), at least the receiver's
  `Retry-After`. After `max_attempts` attempts, or once the event is `max_age_seconds`
  old, or when its endpoint left webhooks.yml, the row moves to the dead letters, where
  Dagster shows it (orchestration/webhooks.py) and `redeliver` puts it back.
- Signed: `Retention-Signature` = sign(secret, [timestamp, body]) with the timestamp of
  the attempt, so a receiver can refuse stale requests while retries stay valid; the body
  is fixed when the event is emitted, so every attempt sends the same bytes.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tenacity import RetryCallState, wait_random_exponential

import statedb
from webhooks.config import Delivery, WebhooksConfig
from webhooks.events import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    session_event,
    validation_event,
)
from webhooks.signing import sign

log = logging.getLogger(__name__)

OUTBOX = "webhook_outbox"
DEAD_LETTERS = "webhook_dead_letters"
# A writer of the shared state file waits this long for another's lock (design-16.md).
# Rows claimed at once, per request in flight: small, so a claim is sent soon after it
# is taken and its lease stays short.
CLAIM_PER_WORKER = 8
PRUNE_EVERY_SECONDS = 3600
SCHEMA = f"""
create table if not exists {OUTBOX} (
    endpoint text not null,
    event_id text not null,
    event_type text not null,
    body text not null,
    enqueued_at real not null,
    attempts integer not null default 0,
    next_attempt_at real not null,
    claim text,
    last_status integer,
    last_error text,
    delivered_at real,
    primary key (endpoint, event_id)
);
create index if not exists {OUTBOX}_due on {OUTBOX} (next_attempt_at)
    where delivered_at is null;
create index if not exists {OUTBOX}_delivered on {OUTBOX} (delivered_at)
    where delivered_at is not null;
create table if not exists {DEAD_LETTERS} (
    endpoint text not null,
    event_id text not null,
    event_type text not null,
    body text not null,
    enqueued_at real not null,
    attempts integer not null,
    last_status integer,
    last_error text,
    reason text not null,
    dead_at real not null,
    primary key (endpoint, event_id)
);
"""
_ENQUEUE = f"""
insert or ignore into {OUTBOX} (endpoint, event_id, event_type, body, enqueued_at,
    next_attempt_at)
select :endpoint, :event_id, :event_type, :body, :now, :now
where not exists (
    select 1 from {DEAD_LETTERS} where endpoint = :endpoint and event_id = :event_id
)
"""
# A row to attempt: not delivered, and its next attempt (or its lease's end) has come.
_DUE = "delivered_at is null and next_attempt_at <= ?"
_CLAIM = f"""
update {OUTBOX} set attempts = attempts + 1, claim = ?, next_attempt_at = ?
where rowid in (
    select rowid from {OUTBOX} where {_DUE}
    order by next_attempt_at limit ?
)
returning endpoint, event_id, body, attempts, claim
"""
_TO_DEAD = f"""
insert or replace into {DEAD_LETTERS}
select endpoint, event_id, event_type, body, enqueued_at, attempts, last_status,
       last_error, ?, ?
from {OUTBOX} where endpoint = ? and event_id = ?
"""
_DEAD_COLUMNS = (
    "endpoint",
    "event_id",
    "event_type",
    "attempts",
    "last_status",
    "last_error",
    "reason",
    "enqueued_at",
    "dead_at",
)


@dataclass
class DeliveryStats:
    """What one `deliver_pending` did: requests made, and how each ended."""

    attempts: int = 0
    delivered: int = 0
    retry_later: int = 0
    dead: int = 0
    # Per attempt that got an answer or an error, how long it took (seconds).
    latencies: list[float] = field(default_factory=list)

    def add(self, other: DeliveryStats) -> None:
        self.attempts += other.attempts
        self.delivered += other.delivered
        self.retry_later += other.retry_later
        self.dead += other.dead
        self.latencies += other.latencies


@dataclass(frozen=True)
class _Claimed:
    endpoint: str
    event_id: str
    body: str
    attempts: int
    claim: str


@dataclass(frozen=True)
class _Result:
    status: int | None
    error: str | None
    retry_after: float | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def backoff(attempts: int, delivery: Delivery, retry_after: float | None = None) -> float:
    """Seconds before the next attempt after `attempts` failed ones: uniform in
    [initial, min(max, initial × 2^(attempts−1))] (full jitter, so receivers coming back
    are not hit by every sender at once), at least the receiver's Retry-After, never more
    than max_backoff_seconds."""
    wait = wait_random_exponential(
        multiplier=delivery.initial_backoff_seconds,
        min=delivery.initial_backoff_seconds,
        max=delivery.max_backoff_seconds,
    )
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = attempts
    return min(max(wait(state), retry_after or 0.0), delivery.max_backoff_seconds)


class Outbox:
    """Events of one webhooks config, in the outbox tables of the state database at
    `state_db` (created if missing). Thread-safe: each thread has its own connection."""

    def __init__(
        self,
        state_db: Path | str,
        config: WebhooksConfig,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state_db = Path(state_db)
        self.config = config
        self._clock = clock
        self._client = client or httpx.Client(follow_redirects=False)
        self._own_client = client is None
        self._wake = threading.Event()
        self._pruned_at = float("-inf")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self.state_db.parent.mkdir(parents=True, exist_ok=True)
        self._connection().executescript(SCHEMA)

    # ------------------------------------------------------------------ emitting

    def emit(
        self,
        event_type: str,
        payload: Mapping[str, Any],
        *,
        event_id: str,
        db: sqlite3.Connection | None = None,
    ) -> int:
        """Store the event for every endpoint that takes it; the number of rows added
        (0 for an event already stored, or one no endpoint takes)."""
        return self.emit_many([(event_type, event_id, dict(payload))], db=db)

    def emit_session(self, row: Mapping[str, Any], *, db: sqlite3.Connection | None = None) -> int:
        """The event of a session row the collector committed (`exit_session.<action>`,
        `exit_session.started` without one), id from the session id and the type."""
        return self.emit_sessions([row], db=db)

    def emit_sessions(
        self, rows: Iterable[Mapping[str, Any]], *, db: sqlite3.Connection | None = None
    ) -> int:
        """The events of many session rows in one transaction (one fsync for all)."""
        return self.emit_many((session_event(row) for row in rows), db=db)

    def emit_validations(
        self, episodes: Iterable[Mapping[str, Any]], *, db: sqlite3.Connection | None = None
    ) -> int:
        """One `validation.<status>` event per validated episode, in one transaction."""
        return self.emit_many((validation_event(e) for e in episodes), db=db)

    def emit_many(
        self,
        events: Iterable[tuple[str, str, dict[str, Any]]],
        *,
        db: sqlite3.Connection | None = None,
    ) -> int:
        """Store (type, id, data) events in one transaction, durable on return. Why `db`:
        a caller holding a transaction on the state database (the collector marking rows
        dispatched) passes it, so its mark and the events commit together, with one
        fsync; it then calls `wake()` after its commit."""
        if db is not None:
            return self._enqueue(db, events)
        with self._transaction() as own:
            added = self._enqueue(own, events)
        if added:
            self.wake()
        return added

    def _enqueue(
        self, db: sqlite3.Connection, events: Iterable[tuple[str, str, dict[str, Any]]]
    ) -> int:
        now = self._clock()
        added = 0
        for event_type, event_id, data in events:
            endpoints = self.config.subscribers(event_type)
            body = _body(event_id, event_type, int(now), data) if endpoints else ""
            for endpoint in endpoints:
                added += db.execute(
                    _ENQUEUE,
                    {
                        "endpoint": endpoint.name,
                        "event_id": event_id,
                        "event_type": event_type,
                        "body": body,
                        "now": now,
                    },
                ).rowcount
        return added

    # ------------------------------------------------------------------ delivering

    def deliver_pending(self, budget_seconds: float | None = None) -> DeliveryStats:
        """Attempt the events due until none is (a failure is scheduled after its
        backoff, not waited for): what a Dagster step or a test calls; the `Deliverer`
        calls it in a loop.
        With `budget_seconds`, no new claim is taken after that long (a step must not
        hang on a receiver that times out): the rest waits for the next pass."""
        stats = DeliveryStats()
        started = time.monotonic()
        self._prune()
        self._expire()
        while budget_seconds is None or time.monotonic() - started < budget_seconds:
            claimed = self._claim()
            if not claimed:
                break
            stats.add(self._deliver(claimed))
        return stats

    @property
    def lease_seconds(self) -> float:
        """How long a claim is held: every round of requests of one claim at twice the
        timeout (httpx times connect and read apart), plus a margin."""
        delivery = self.config.delivery
        return CLAIM_PER_WORKER * 2 * delivery.timeout_seconds + 10

    def _prune(self) -> None:
        """Delivered rows older than keep_delivered_seconds deleted, at most once every
        PRUNE_EVERY_SECONDS per outbox: the table does not grow forever, and an event
        emitted again within the time is still recognised."""
        now = self._clock()
        if now - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = now
        with self._transaction(durable=False) as db:
            db.execute(
                f"delete from {OUTBOX} where delivered_at < ?",
                (now - self.config.delivery.keep_delivered_seconds,),
            )

    def _expire(self) -> None:
        """Due rows too old, or of an endpoint no longer configured, to the dead letters."""
        now = self._clock()
        expired = (
            f"select endpoint, event_id, attempts from {OUTBOX} where {_DUE} "
            "and (enqueued_at <= ? or endpoint not in (select value from json_each(?)))"
        )
        found = (now, now - self.config.delivery.max_age_seconds)
        found += (json.dumps(list(self.config.endpoints)),)
        with self._transaction("deferred") as db:  # most passes find none: no write lock
            if not db.execute(expired, found).fetchone():
                return
        with self._transaction() as db:
            rows = db.execute(expired, found).fetchall()
            for endpoint, event_id, attempts in rows:
                reason = (
                    f"endpoint {endpoint} is no longer in webhooks.yml"
                    if endpoint not in self.config.endpoints
                    else f"older than max_age_seconds ({self.config.delivery.max_age_seconds:g}) "
                    f"after {attempts} attempt(s)"
                )
                _bury(db, endpoint, event_id, reason, now)

    def _claim(self) -> list[_Claimed]:
        """Due rows of configured endpoints, each with its attempt counted and leased
        past the request's longest time."""
        now = self._clock()
        size = CLAIM_PER_WORKER * self.config.delivery.concurrency
        with self._transaction(durable=False) as db:
            rows = db.execute(
                _CLAIM, (uuid.uuid4().hex, now + self.lease_seconds, now, size)
            ).fetchall()
        return [_Claimed(*row) for row in rows]

    def _deliver(self, claimed: list[_Claimed]) -> DeliveryStats:
        workers = min(self.config.delivery.concurrency, len(claimed))
        with ThreadPoolExecutor(workers, thread_name_prefix="webhook") as pool:
            results = list(pool.map(self._post, claimed))
        stats = DeliveryStats(attempts=len(claimed))
        with self._transaction(durable=False) as db:
            for row, result in zip(claimed, results, strict=True):
                stats.latencies.append(result.seconds)
                outcome = self._record(db, row, result)
                setattr(stats, outcome, getattr(stats, outcome) + 1)
        if stats.dead:
            log.warning("webhooks: %s event(s) moved to the dead letters", stats.dead)
        return stats

    def _post(self, row: _Claimed) -> _Result:
        """One signed POST; never raises (an error is a failed attempt)."""
        endpoint = self.config.endpoints[row.endpoint]
        timestamp = str(int(self._clock()))
        signature = sign(endpoint.secret, [timestamp, row.body])
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: row.event_id,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature,
        }
        started = time.perf_counter()
        try:
            response = self._client.post(
                endpoint.url,
                content=row.body.encode(),
                headers=headers,
                timeout=self.config.delivery.timeout_seconds,
            )
        except httpx.HTTPError as exc:
            error = _short(f"{type(exc).__name__}: {exc}", signature)
            return _Result(None, error, None, _since(started))
        error = (
            None
            if response.is_success
            else _short(f"HTTP {response.status_code}: {response.text}", signature)
        )
        return _Result(response.status_code, error, _retry_after(response), _since(started))

    def _record(self, db: sqlite3.Connection, row: _Claimed, result: _Result) -> str:
        """Store an attempt's end; the stats field it counts in. A row another process
        claimed after this claim's lease ended is left to that process."""
        now = self._clock()
        key = (row.endpoint, row.event_id, row.claim)
        if result.ok:
            db.execute(
                f"update {OUTBOX} set delivered_at = ?, last_status = ?, last_error = null, "
                "claim = null where endpoint = ? and event_id = ? and claim = ?",
                (now, result.status, *key),
            )
            return "delivered"
        held = db.execute(
            f"update {OUTBOX} set last_status = ?, last_error = ?, claim = null, "
            "next_attempt_at = ? where endpoint = ? and event_id = ? and claim = ?",
            (
                result.status,
                result.error,
                now + backoff(row.attempts, self.config.delivery, result.retry_after),
                *key,
            ),
        ).rowcount
        if held and row.attempts >= self.config.delivery.max_attempts:
            _bury(
                db,
                row.endpoint,
                row.event_id,
                f"{row.attempts} attempt(s) failed (max_attempts)",
                now,
            )
            return "dead"
        return "retry_later"

    # ------------------------------------------------------------------ dead letters

    def dead_letters(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The dead letters, newest first (no body: it may hold customer data)."""
        with self._transaction("deferred") as db:
            rows = db.execute(
                f"select {', '.join(_DEAD_COLUMNS)} from {DEAD_LETTERS} "
                "order by dead_at desc limit ?",
                (limit,),
            ).fetchall()
        return [dict(zip(_DEAD_COLUMNS, row, strict=True)) for row in rows]

    def redeliver(self, event_ids: Iterable[str] | None = None) -> int:
        """Dead letters (all, or these events') back to the outbox, due now with their
        attempts and age reset; the number moved."""
        now = self._clock()
        only = None if event_ids is None else json.dumps(list(event_ids))
        where = "? is null or event_id in (select value from json_each(?))"
        with self._transaction() as db:
            moved = db.execute(
                f"insert or replace into {OUTBOX} (endpoint, event_id, event_type, body, "
                "enqueued_at, attempts, next_attempt_at, last_status, last_error) "
                f"select endpoint, event_id, event_type, body, ?, 0, ?, last_status, "
                f"last_error from {DEAD_LETTERS} where {where}",
                (now, now, only, only),
            ).rowcount
            db.execute(f"delete from {DEAD_LETTERS} where {where}", (only, only))
        if moved:
            self._wake.set()
        return moved

    def counts(self) -> Counter[tuple[str, str]]:
        """Rows per (endpoint, state): pending, delivered, dead."""
        with self._transaction("deferred") as db:
            rows = db.execute(
                f"select endpoint, case when delivered_at is null then 'pending' "
                f"else 'delivered' end, count(*) from {OUTBOX} group by 1, 2 "
                f"union all select endpoint, 'dead', count(*) from {DEAD_LETTERS} group by 1"
            ).fetchall()
        return Counter({(endpoint, state): n for endpoint, state, n in rows})

    # ------------------------------------------------------------------ plumbing

    def wake(self) -> None:
        """Make a waiting `wait_for_events` return now."""
        self._wake.set()

    def wait_for_events(self, timeout: float) -> None:
        """Return when an event is emitted (in this process) or after `timeout`."""
        self._wake.wait(timeout)
        self._wake.clear()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._connections_lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()
        if self._own_client:
            self._client.close()

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, kept open. Why not one per transaction: closing the
        last connection to a WAL database checkpoints and fsyncs it, 12 ms here each
        time, which capped delivery at about 300 events/s."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = statedb.connect(self.state_db)  # used by its thread only; closed by close()
            self._local.db = db
            with self._connections_lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _transaction(
        self, lock: str = "immediate", *, durable: bool = True
    ) -> Iterator[sqlite3.Connection]:
        """A transaction on this thread's connection, committed on exit; a write takes the
        lock at once (`immediate`), a read does not (`deferred`). Durable (fsync at commit,
        synchronous=FULL) unless told: claims and attempt results are not, since losing
        the last of them in a power cut only sends an event again, which at-least-once
        allows, and an fsync each would halve the delivery rate (bench_webhooks.py)."""
        db = self._connection()
        db.execute(f"pragma synchronous={'FULL' if durable else 'NORMAL'}")
        db.execute(f"begin {lock}")
        try:
            yield db
        except BaseException:
            db.execute("rollback")
            raise
        db.execute("commit")


class Deliverer:
    """A background thread delivering the outbox as events come (the collector starts
    it): a pass at once when this process emits, else every `poll_seconds`, which also
    picks up retries, and events other processes emitted."""

    def __init__(self, outbox: Outbox, *, poll_seconds: float = 0.5) -> None:
        self.outbox = outbox
        self.poll_seconds = poll_seconds
        self.totals = DeliveryStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-deliverer", daemon=True)

    def start(self) -> Deliverer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        """Finish the pass under way, then stop."""
        self._stop.set()
        self.outbox.wake()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.totals.add(self.outbox.deliver_pending())
            except Exception:  # the thread must outlive a locked or unreadable state file
                log.exception("webhooks: a delivery pass failed; retrying")
            self.outbox.wait_for_events(self.poll_seconds)


def due_events(state_db: Path, now: float) -> int:
    """Events due for an attempt (0 while there is no outbox yet), read-only: a sensor
    polling it never creates the state file."""
    if not state_db.exists():
        return 0
    db = statedb.connect_read_only(state_db)
    try:
        return db.execute(f"select count(*) from {OUTBOX} where {_DUE}", (now,)).fetchone()[0]
    except sqlite3.OperationalError:  # no outbox table yet
        return 0
    finally:
        db.close()


def _bury(db: sqlite3.Connection, endpoint: str, event_id: str, reason: str, now: float) -> None:
    db.execute(_TO_DEAD, (reason, now, endpoint, event_id))
    db.execute(f"delete from {OUTBOX} where endpoint = ? and event_id = ?", (endpoint, event_id))


def _body(event_id: str, event_type: str, created: int, data: dict[str, Any]) -> str:
    """The request body, compact JSON (no newline: it is one signed part)."""
    return json.dumps(
        {"id": event_id, "type": event_type, "created": created, "data": data},
        separators=(",", ":"),
        sort_keys=True,
        default=str,
    )


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (the HTTP-date form is rare from receivers: ignored)."""
    value = response.headers.get("retry-after", "")
    return float(value) if value.strip().isdigit() else None


def _short(text: str, signature: str) -> str:
    """An error as stored and shown: without the request's signature (a receiver may echo
    the headers back), and short."""
    text = text.replace(signature, "[signature]")
    return text if len(text) <= 300 else text[:297] + "..."


def _since(started: float) -> float:
    return time.perf_counter() - started
