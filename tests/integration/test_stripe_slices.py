"""Stripe's sliced full listing under writes: while a first sync pages through many small
windows, another thread cancels and updates subscriptions through the SDK; one more
(incremental) run, and the warehouse equals the sandbox's final state, each object once.

The Stripe sandbox takes subscription updates and cancels only (no creation of customers,
subscriptions or invoices), so the writes are those. Creation cannot land in a window
already listed anyway: an object is created at the server's present, after the listing's
span, and reaches the next run through its event.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import dlt
import duckdb
import orjson
import pytest

from billing_clients.retries import RetryPolicy
from billing_clients.sdk import stripe_client
from dlt_sources.stripe import stripe_source
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.network import Latency
from sandbox.scenario import load_scenario

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
FAST = RetryPolicy(base_delay=0.001, max_delay=0.01)
RESOURCES = ("customers", "subscriptions", "invoices")


def load(pipeline: dlt.Pipeline, sandbox, **options) -> dict[str, int]:
    """One run of the chosen resources; the rows each table received."""
    source = stripe_source(
        api_key=sandbox.api_key,
        base_url=sandbox.urls["stripe"],
        requests_per_second=None,
        retry_policy=FAST,
        **options,
    ).with_resources(*RESOURCES)
    info = pipeline.run(source)
    assert not info.has_failed_jobs
    return dict(pipeline.last_trace.last_normalize_info.row_counts)


def new_pipeline(root: Path, name: str) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=f"slices_{name}",
        pipelines_dir=str(root / f"{name}_pipelines"),
        destination=dlt.destinations.duckdb(str(root / f"{name}.duckdb")),
        dataset_name="raw_stripe",
    )


def snapshot(root: Path, name: str, table: str) -> list[tuple]:
    """A table's rows without dlt's columns, columns by name, rows sorted."""
    with duckdb.connect(str(root / f"{name}.duckdb"), read_only=True) as con:
        columns = sorted(
            column
            for (column,) in con.sql(
                "select column_name from information_schema.columns "
                f"where table_schema = 'raw_stripe' and table_name = '{table}'"
            ).fetchall()
            if not column.startswith("_dlt")
        )
        rows = con.sql(f"select {', '.join(columns)} from raw_stripe.{table}").fetchall()
    return sorted(rows, key=repr)


def duplicates(root: Path, name: str, table: str) -> int:
    with duckdb.connect(str(root / f"{name}.duckdb"), read_only=True) as con:
        sql = f"select count(*) - count(distinct id) from raw_stripe.{table}"
        return con.sql(sql).fetchall()[0][0]


class Writer(threading.Thread):
    """Cancels, schedules cancels and updates metadata of subscriptions spread over the
    whole listing, once the run has started listing subscriptions, until stopped."""

    def __init__(self, sandbox, subscription_ids: list[str]):
        super().__init__(daemon=True)
        self.sandbox, self.ids = sandbox, subscription_ids
        self.client = stripe_client(sandbox.api_key, sandbox.urls["stripe"])
        self.stop = threading.Event()
        self.written: list[tuple[str, str, float]] = []  # (kind, id, when)

    def listing_started(self) -> bool:
        log = self.sandbox.emulator("stripe").request_log
        return sum(e["path"] == "/v1/subscriptions" for e in list(log)) >= 3

    def run(self) -> None:
        while not self.listing_started() and not self.stop.is_set():
            time.sleep(0.005)
        subscriptions = self.client.v1.subscriptions
        for number, ident in enumerate(self.ids):
            if self.stop.is_set():
                return
            kind = ("cancel", "cancel_at_period_end", "metadata")[number % 3]
            if kind == "cancel":
                subscriptions.cancel(ident)
            elif kind == "cancel_at_period_end":
                subscriptions.update(ident, params={"cancel_at_period_end": True})
            else:
                subscriptions.update(ident, params={"metadata": {"touched": str(number)}})
            self.written.append((kind, ident, time.monotonic()))


def test_writes_during_a_sliced_full_listing_are_all_in_the_warehouse_once(
    serve_scenario, tmp_path
):
    path = tmp_path / "scenario.json"
    write_scenario(GenerateOptions(customers=300, seed=11, as_of=AS_OF), path)
    facts = load_scenario(path)
    sandbox = serve_scenario(
        orjson.loads(path.read_bytes()),
        systems=("stripe",),
        latency={"stripe": Latency(8, 4, seed=3)},
    )
    running = [
        s["subscription_id"]
        for s in facts.for_system("subscriptions", "stripe")
        if s["ended_at"] is None or s["ended_at"] > AS_OF
    ]
    random.Random(5).shuffle(running)
    writer = Writer(sandbox, running[:60])

    pipeline = new_pipeline(tmp_path, "sliced")
    writer.start()
    counts = load(pipeline, sandbox, page_size=2, max_workers=6)
    ended = time.monotonic()
    writer.stop.set()
    writer.join(timeout=30)

    during = [w for w in writer.written if w[2] < ended]
    assert len(during) >= 5, f"only {len(during)} writes landed while the listing ran"
    listed = sandbox.emulator("stripe").request_log
    windows = {
        (e["params"].get("created[gte]"), e["params"].get("created[lt]"))
        for e in listed
        if e["path"] == "/v1/subscriptions"
    }
    assert len(windows) > 3, "the listing was not split into windows"
    # Each subscription handed over once by the sliced listing, writes or not.
    assert counts["subscriptions"] == len(facts.for_system("subscriptions", "stripe"))

    load(pipeline, sandbox, page_size=2, max_workers=6)  # incremental: the events since

    reference = new_pipeline(tmp_path, "reference")
    load(reference, sandbox)  # a clean full listing of the final state
    for table in RESOURCES:
        assert duplicates(tmp_path, "sliced", table) == 0, table
        assert snapshot(tmp_path, "sliced", table) == snapshot(tmp_path, "reference", table), table
