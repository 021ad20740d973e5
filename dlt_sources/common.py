"""What the three billing sources share: records to Arrow, retries, progress.

- `to_arrow`: API records (nested JSON) to one flat Arrow table, dlt's fast path
  (25x the row-dict path here). Nested objects become `parent__child` columns, as dlt
  names them; lists (subscription items, discounts, invoice lines) stay one JSON text
  column each, so every resource is one table and one Dagster asset.
- `with_retries`: 429 honouring the API's Retry-After / X-RateLimit-Reset, 5xx and dropped
  connections with exponential backoff; each source says which of its SDK's errors are
  which through a `Classifier`.
- `Progress`: records, pages and rate per resource in the log, at most every few seconds.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import orjson
import polars as pl
import pyarrow as pa

log = logging.getLogger("retention.extract")
T = TypeVar("T")


# --------------------------------------------------------------------------- records


def flatten(record: dict, prefix: str = "", out: dict | None = None) -> dict:
    """Nested dicts to `a__b` keys; lists to JSON text; scalars as they are."""
    out = {} if out is None else out
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if value:
                flatten(value, f"{name}__", out)
            else:
                out[name] = None
        elif isinstance(value, list):
            out[name] = orjson.dumps(value).decode()
        else:
            out[name] = value
    return out


def to_arrow(
    records: Iterable[dict], extra: dict[str, Any] | None = None, key: str = "id"
) -> pa.Table:
    """Flatten records into one Arrow table with the schema as dlt states it, so the pages
    of one run can share a load file: text as `string` (polars makes `large_string`, while
    dlt fills a column a page lacks as `string`), the primary key `key` not null. Columns
    null on every row are dropped: their type is unknown until a value arrives, and dlt
    adds the column then."""
    rows = [flatten(r) | (extra or {}) for r in records]
    frame = pl.DataFrame(rows, infer_schema_length=None, strict=False)
    table = frame.select(c for c in frame.columns if frame[c].dtype != pl.Null).to_arrow()
    fields = [
        pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else f.type, f.name != key)
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


# --------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class Classifier:
    """How one SDK's errors map to retry decisions.

    `retry_after(exc)`: seconds to wait for a rate-limit error (None if it is not one);
    `transient(exc)`: True for errors worth retrying with backoff (5xx, connection).
    """

    retry_after: Callable[[BaseException], float | None]
    transient: Callable[[BaseException], bool]


@dataclass
class RetryPolicy:
    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)


def with_retries(
    call: Callable[[], T], classifier: Classifier, what: str, policy: RetryPolicy | None = None
) -> T:
    """Run `call`, retrying rate limits and transient failures; re-raise anything else,
    or the last error once attempts run out, naming `what` was being fetched."""
    policy = policy or RetryPolicy()
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return call()
        except Exception as exc:
            wait = classifier.retry_after(exc)
            if wait is None and not classifier.transient(exc):
                raise
            if attempt == policy.max_attempts:
                raise RuntimeError(
                    f"{what}: gave up after {attempt} attempts: {type(exc).__name__}: {exc}"
                ) from exc
            if wait is None:
                wait = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
                wait *= 0.5 + random.random() / 2  # jitter: clients don't retry in step
            else:
                wait = min(policy.max_delay, max(wait, 0.0))
            log.warning(
                "%s: %s (attempt %d/%d), retrying in %.1fs",
                what,
                type(exc).__name__,
                attempt,
                policy.max_attempts,
                wait,
            )
            policy.sleep(wait)
    raise AssertionError("unreachable")


def header_seconds(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (seconds) or `X-RateLimit-Reset` (epoch)."""
    if not headers:
        return None
    lower = {str(k).lower(): v for k, v in dict(headers).items()}
    try:
        if "retry-after" in lower:
            return float(lower["retry-after"])
        if "x-ratelimit-reset" in lower:
            return float(lower["x-ratelimit-reset"]) - (now or time.time())
    except (TypeError, ValueError):
        return None
    return None


# --------------------------------------------------------------------------- progress


class Progress:
    """Counts records and pages of one resource and logs them every `every` seconds
    and at the end, so a long full load shows it is moving."""

    def __init__(self, name: str, every: float = 5.0):
        self.name, self.every = name, every
        self.records = self.pages = 0
        self._start = self._last = time.monotonic()
        self._lock = threading.Lock()

    def page(self, records: int) -> None:
        with self._lock:
            self.records += records
            self.pages += 1
            now = time.monotonic()
            if now - self._last >= self.every:
                self._last = now
                self._log("loading")

    def done(self) -> None:
        self._log("extracted")

    def _log(self, verb: str) -> None:
        took = max(time.monotonic() - self._start, 1e-9)
        log.info(
            "%s: %s %s records, %s pages, %s records/s",
            self.name,
            verb,
            f"{self.records:,}",
            f"{self.pages:,}",
            f"{self.records / took:,.0f}",
        )


# --------------------------------------------------------------------------- rate


class RateLimiter:
    """Client-side pacing shared by a source's threads: at most `per_second` requests a
    second on average, so concurrent resources stay under the API's published limit
    instead of collecting 429s. None or 0 = no pacing (the sandbox in tests)."""

    def __init__(self, per_second: float | None):
        self.interval = 1.0 / per_second if per_second else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


# --------------------------------------------------------------------------- syncs


def sync_row(server_time: datetime | None) -> dict:
    """The `syncs` table's row for one run: the API's own clock (its `Date` header) at
    the start, which is the validation time T downstream; the local clock if the API
    sent none, flagged so."""
    return {
        "synced_at": server_time or datetime.now(UTC),
        "clock": "api" if server_time else "local",
    }


def http_date(value: str | None) -> datetime | None:
    """An HTTP `Date` header as an aware datetime (None if absent or unreadable)."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
