"""The Chargebee source's sliced full listing against the sandbox, with writes through the
SDK from another thread while it pages: after the full run and one incremental run, the
warehouse holds the sandbox's final state, every id once. And a full listing stopped at
checkpoints resumes where it stopped, listing no window twice."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from itertools import cycle
from pathlib import Path

import dlt
import duckdb
import httpx
import orjson
import pytest

from billing_clients.retries import RetryPolicy
from billing_clients.sdk import chargebee_client
from dlt_sources.chargebee import chargebee_source
from sandbox.app import Sandbox, start_sandbox
from sandbox.chargebee_render import subscription_status
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.network import Latency
from sandbox.scenario import validate_scenario

pytestmark = pytest.mark.integration

CB = "chargebee"
AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
FAST = RetryPolicy(max_attempts=10, base_delay=0.001, max_delay=0.01)
STEP = timedelta(minutes=10)
SLICED = {"customers": "created_at", "subscriptions": "created_at", "invoices": "date"}


@pytest.fixture(scope="module")
def doc(tmp_path_factory) -> dict:
    """~150 Chargebee customers, ~180 subscriptions, ~1,600 invoices."""
    path = tmp_path_factory.mktemp("scenario") / "scenario.json"
    write_scenario(GenerateOptions(customers=600, seed=7, as_of=AS_OF), path)
    return orjson.loads(path.read_bytes())


def make_pipeline(folder: Path) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name="chargebee_slices",
        pipelines_dir=str(folder / "pipelines"),
        destination=dlt.destinations.duckdb(str(folder / "warehouse.duckdb")),
        dataset_name="raw_chargebee",
    )


def load(pipeline: dlt.Pipeline, sandbox: Sandbox, **options) -> None:
    options = {"requests_per_second": None, "retry_policy": FAST, "page_size": 10, **options}
    source = chargebee_source(sandbox.api_key, base_url=sandbox.urls[CB], **options)
    pipeline.run(source.with_resources(*SLICED))


def window_requests(sandbox: Sandbox) -> list[dict]:
    """The list requests of the sliced listings' windows (not the span probes)."""
    return [
        r
        for r in sandbox.emulator(CB).request_log
        for table, field in SLICED.items()
        if r["path"] == f"/api/v2/{table}" and f"{field}[after]" in r["params"]
    ]


def warehouse(pipeline: dlt.Pipeline, table: str) -> list[dict]:
    """The table's ids, updated_at, status (and coupons for subscriptions)."""
    columns = ["id", "updated_at", "status" if table != "customers" else "null as status"]
    columns += ["coupons"] if table == "subscriptions" else []
    path = pipeline.destination_client().config.credentials.database
    with duckdb.connect(path, read_only=True) as con:
        found = con.execute(f"select {', '.join(columns)} from raw_chargebee.{table}").fetchall()
    names = [c.split()[-1] for c in columns]
    return [dict(zip(names, row, strict=True)) for row in found]


def sandbox_state(sandbox: Sandbox, table: str) -> dict[str, dict]:
    """Every record of `table` as the API lists it now, deleted ones included: plain
    HTTP pages, one after another, none of the source's code."""
    entry, records, params = table[:-1], {}, {"limit": 100, "include_deleted": "true"}
    with httpx.Client(auth=(sandbox.api_key, "")) as client:
        while True:
            body = client.get(f"{sandbox.urls[CB]}/api/v2/{table}", params=params).json()
            records |= {e[entry]["id"]: e[entry] for e in body["list"]}
            if "next_offset" not in body:
                return records
            params["offset"] = body["next_offset"]


class Writer(threading.Thread):
    """Cancels, pauses or gives a coupon to active subscriptions through the SDK, one
    after another, from the sliced listing's first window request until told to stop.
    The sandbox's clock jumps `STEP` before each write, as if the listing took hours:
    the writes are stamped well after the cursor taken before the listing (its margin
    hides nothing), and the subscriptions' own renewals and ends fall due meanwhile."""

    def __init__(self, sandbox: Sandbox, targets: list[str]):
        super().__init__(daemon=True)
        self.sandbox, self.targets = sandbox, targets
        self.client = chargebee_client(sandbox.api_key, base_url=sandbox.urls[CB])
        self.stop, self.written, self.errors = threading.Event(), [], []

    def run(self) -> None:
        while not window_requests(self.sandbox) and not self.stop.is_set():
            time.sleep(0.002)
        subs = self.client.Subscription
        actions = cycle(
            [
                lambda i: subs.cancel_for_items(i, {"end_of_term": False}),
                lambda i: subs.pause(i, {"pause_option": "immediately"}),
                lambda i: subs.update_for_items(i, {"coupon_ids": ["SAVE50"]}),
            ]
        )
        for ident, action in zip(self.targets, actions, strict=False):
            if self.stop.is_set():
                return
            self.sandbox.clock.advance(STEP)
            try:
                action(ident)
                self.written.append((ident, time.time()))
            except Exception as exc:  # reported by the test, not swallowed
                self.errors.append((ident, exc))
            time.sleep(0.005)  # leave the listing some of the interpreter


def test_writes_during_a_sliced_listing_reach_the_warehouse_once(doc, tmp_path):
    scenario = validate_scenario(doc)
    sandbox = start_sandbox(
        scenario, frozen=True, systems=(CB,), latency={CB: Latency(10, 5, seed=1)}
    )
    try:
        active = sorted(
            s["subscription_id"]
            for s in scenario.for_system("subscriptions", CB)
            if subscription_status(s, AS_OF) == "active"
        )
        writer = Writer(sandbox, active)
        writer.start()
        pipeline = make_pipeline(tmp_path)
        load(pipeline, sandbox, max_workers=4)
        writer.stop.set()
        writer.join()
        assert writer.errors == []

        windows = window_requests(sandbox)
        listed_from, listed_to = windows[0]["wall_time"], windows[-1]["wall_time"]
        during = [i for i, at in writer.written if listed_from < at < listed_to]
        assert len(during) >= 5, "the writes did not overlap the listing"
        bounds = {
            (r["path"], r["params"].get("created_at[after]", r["params"].get("date[after]")))
            for r in windows
        }
        assert len(bounds) > 6, "the listing was never split"

        load(pipeline, sandbox)  # incremental: updated_at since the cursor taken before
        assert not window_requests(sandbox)[len(windows) :]

        final = {table: sandbox_state(sandbox, table) for table in SLICED}
        assert_same(pipeline, final)
        subs, written = final["subscriptions"], {i for i, _ in writer.written}
        assert {subs[i]["status"] for i in written} == {"cancelled", "paused", "active"}
        assert all(subs[i].get("coupons") for i in written if subs[i]["status"] == "active")
    finally:
        sandbox.stop()


def assert_same(pipeline: dlt.Pipeline, final: dict[str, dict[str, dict]]) -> None:
    """The warehouse's tables hold each record of `final` once, as the SDK lists it."""
    for table, records in final.items():
        loaded = warehouse(pipeline, table)
        ids = [r["id"] for r in loaded]
        assert len(ids) == len(set(ids)), f"{table}: an id loaded twice"
        assert set(ids) == set(records), table
        for row in loaded:
            record = records[row["id"]]
            assert row["updated_at"] == record.get("updated_at"), (table, row["id"])
            assert row.get("status") == record.get("status"), (table, row["id"])
            if table == "subscriptions":
                coupons = orjson.loads(row["coupons"]) if row.get("coupons") else None
                assert coupons == record.get("coupons"), row["id"]


def test_a_listing_stopped_at_checkpoints_resumes_without_listing_a_window_twice(doc, tmp_path):
    """Runs that stop after their first requests (`checkpoint_seconds=0`), as the runner repeats them: each commits what it listed and
    the windows left; the next goes on from there. No request is made twice, the
    warehouse is complete, and the cursor is stored only by the run that finishes."""
    scenario = validate_scenario(doc)
    sandbox = start_sandbox(scenario, frozen=True, systems=(CB,), latency={CB: Latency(5, 2)})
    try:
        pipeline = make_pipeline(tmp_path)
        runs = 0
        while True:
            load(pipeline, sandbox, max_workers=3, page_size=20, checkpoint_seconds=0)
            runs += 1
            resources = pipeline.state["sources"][CB]["resources"]
            if not any(state.get("slices") for state in resources.values()):
                break
            assert all(
                "cursor" not in resources[t] for t, s in resources.items() if s.get("slices")
            )
            assert runs < 100
        assert runs >= 2  # resumed at least once
        asked = [(r["path"], tuple(sorted(r["params"].items()))) for r in window_requests(sandbox)]
        assert len(asked) == len(set(asked)), "a window page was listed twice"
        assert {t: "cursor" in s for t, s in resources.items()} == dict.fromkeys(SLICED, True)
        assert_same(pipeline, {table: sandbox_state(sandbox, table) for table in SLICED})
    finally:
        sandbox.stop()
