"""What the three billing sources share: records to Arrow, progress, the syncs row.

- `to_arrow`: API records (nested JSON) to one flat Arrow table, dlt's fast path
  (25x the row-dict path here). Nested objects become `parent__child` columns, as dlt
  names them; lists (subscription items, discounts, invoice lines) stay one JSON text
  column each, so every resource is one table and one Dagster asset.
- `batched`: pages regrouped into lists of >= 1,000 records, one Arrow table each (dlt's
  extract pays per table).
- `Progress`: records, pages and rate per resource in the log, at most every few seconds.

Retries, pacing and the API's clock are the billing-client layer's (billing_clients),
which the write-backs use too.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import polars as pl
import pyarrow as pa

log = logging.getLogger("retention.extract")


# --------------------------------------------------------------------------- records


def flatten(record: dict, prefix: str = "", out: dict | None = None) -> dict:
    """Nested dicts to `a__b` keys; lists to JSON text; scalars as they are.

    The hot loop of a full load (every field of every record): an invoice holds a dozen
    lists, most of them empty, so `[]` skips orjson's call, and a key without prefix is
    not copied (~1.6x faster on Stripe invoices than the plain form)."""
    out = {} if out is None else out
    for key, value in record.items():
        name = prefix + key if prefix else key
        if isinstance(value, dict):
            if value:
                flatten(value, name + "__", out)
            else:
                out[name] = None
        elif isinstance(value, list):
            out[name] = orjson.dumps(value).decode() if value else "[]"
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
    rows = [flatten(r) for r in records]
    if extra:
        for row in rows:
            row.update(extra)
    frame = pl.DataFrame(rows, infer_schema_length=None, strict=False)
    table = frame.select(c for c in frame.columns if frame[c].dtype != pl.Null).to_arrow()
    fields = [
        pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else f.type, f.name != key)
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


# Records per Arrow table handed to dlt: dlt's extract pays its schema work per table
# (~25 ms here: normalizing names, computing and merging the table schema), so tables of
# one page (100 records) cost the first full sync ~1.5x on the extract.
BATCH_RECORDS = 1_000


def batched(pages: Iterable[list[dict]], least: int = BATCH_RECORDS) -> Iterator[list[dict]]:
    """The pages' records regrouped in lists of at least `least` (the last may be smaller),
    each made into one Arrow table by the source (`to_arrow`). The source's state moves
    as the pages come; dlt commits it only when the generator is done, with every batch."""
    batch: list[dict] = []
    for page in pages:
        batch += page
        if len(batch) >= least:
            yield batch
            batch = []
    if batch:
        yield batch


# --------------------------------------------------------------------------- progress


class Progress:
    """Counts records and pages of one resource and logs them every `every` seconds
    and at the end, so a long full load shows it is moving. `detail` adds a phrase of
    its own to each line (a sliced listing's windows done and pending)."""

    def __init__(self, name: str, every: float = 5.0, detail: Callable[[], str] | None = None):
        self.name, self.every, self.detail = name, every, detail
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
            "%s: %s %s records, %s pages, %s records/s%s",
            self.name,
            verb,
            f"{self.records:,}",
            f"{self.pages:,}",
            f"{self.records / took:,.0f}",
            f", {self.detail()}" if self.detail else "",
        )


# --------------------------------------------------------------------------- workers


def workers_for(rate: float | None, latency_seconds: float, unpaced: int, most: int = 64) -> int:
    """Requests in flight that keep a client at `rate` requests/s when each takes
    `latency_seconds` (Little's law: in flight = rate x time in flight), plus one so a
    slow answer does not stall the pace; at most `most`. Without a rate (an unpaced local
    server) `unpaced`: more threads than that only contend for the cores."""
    if not rate:
        return unpaced
    return max(1, min(most, math.ceil(rate * latency_seconds) + 1))


# --------------------------------------------------------------------------- syncs


def sync_row(server_time: datetime | None) -> dict:
    """The `syncs` table's row for one sync: the API's own clock (its `Date` header) at
    the start, which is the validation time T downstream; the local clock if the API
    sent none, flagged so.

    A full sync checkpointed in rounds (`dlt_sources.slices`) writes this row in its
    first round only (each source's `continues_listing`): its windows hold the objects as
    they were from then on, and what changed after the first round's start reaches the
    warehouse with the next incremental run, so a later round's clock would claim data
    fresher than it is."""
    return {
        "synced_at": server_time or datetime.now(UTC),
        "clock": "api" if server_time else "local",
    }
