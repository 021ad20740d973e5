"""Recurly's sliced full listing against the sandbox: nothing lost or doubled at window
edges, while the SDK writes during the listing, and across checkpointed rounds.

Pages of 5 records make dozens of windows (the engine splits where records are dense);
the writes go through the official SDK from another thread while the listing pages, with
the sandbox's clock moving a second per write, as the cancel page would make them.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import orjson
import pytest

from billing_clients.sdk import recurly_client
from sandbox.generate import GenerateOptions, write_scenario
from tests.integration.test_source_recurly import AS_OF, TABLES, Warehouse

pytestmark = pytest.mark.integration

PAGE = 5
# Read at request time from the account's subscriptions, not stamped on the account (see
# the source's docstring): no incremental source can see them change.
DERIVED = (
    "has_live_subscription",
    "has_active_subscription",
    "has_future_subscription",
    "has_canceled_subscription",
    "has_paused_subscription",
    "has_past_due_invoice",
)


def _scenario(tmp_path_factory, customers: int) -> dict:
    path = tmp_path_factory.mktemp("scenario") / "scenario.json"
    write_scenario(GenerateOptions(customers=customers, seed=23, as_of=AS_OF), path)
    return orjson.loads(path.read_bytes())


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict:
    """About 120 Recurly accounts and their subscriptions and invoices."""
    return _scenario(tmp_path_factory, 500)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict:
    """About 35 Recurly accounts: enough windows for several rounds, few rounds."""
    return _scenario(tmp_path_factory, 150)


def _comparable(warehouse: Warehouse) -> dict[str, dict[str, dict]]:
    tables = warehouse.snapshot()
    for row in tables["customers"].values():
        for name in DERIVED:
            row.pop(name, None)
    return tables


def _each_id_once(warehouse: Warehouse, sandbox) -> None:
    """Every table holds each of the sandbox's records exactly once."""
    store = sandbox.emulator("recurly").store
    for table in TABLES:
        [count] = warehouse.query(
            f"select count(*) as n, count(distinct id) as ids from raw_recurly.{table}"
        )
        assert count["n"] == count["ids"], table
    listed = {row["code"] for row in warehouse.rows("customers").values()}
    assert listed == {c["customer_id"] for c in store.all("customers")}
    subs = set(warehouse.rows("subscriptions"))
    assert subs == {s["subscription_id"] for s in store.all("subscriptions")}


class Writer(threading.Thread):
    """Writes through the SDK while the listing runs: waits for the listing's first
    requests, then one write per subscription given (cancel, pause, an account-level
    coupon, in turn), the clock a second later each time. Errors are kept for the test."""

    def __init__(self, sandbox, subscriptions: list[dict]):
        super().__init__(daemon=True)
        self.sandbox, self.subscriptions = sandbox, subscriptions
        self.done: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._write()
        except BaseException as exc:
            self.error = exc

    def _write(self) -> None:
        log = self.sandbox.emulator("recurly").request_log
        while sum(1 for e in log if "sort" in e["params"]) < 10:
            threading.Event().wait(0.01)
        client = recurly_client(self.sandbox.api_key, self.sandbox.urls["recurly"])
        for index, sub in enumerate(self.subscriptions):
            self.sandbox.clock.set(AS_OF + timedelta(seconds=index + 1))
            kind = index % 3
            if kind == 0:
                client.cancel_subscription(sub["id"])
            elif kind == 1:
                client.pause_subscription(sub["id"], {"remaining_pause_cycles": 1})
            else:
                client.create_coupon_redemption(
                    f"code-{sub['account__code']}", {"coupon_id": "code-LOYAL20"}
                )
            self.done.append(sub["id"])
            threading.Event().wait(0.02)


def test_writes_during_a_sliced_full_listing_then_an_incremental_run_give_the_final_state(
    serve_scenario, generated, tmp_path
):
    sandbox = serve_scenario(generated, systems=("recurly",))
    probe = Warehouse(tmp_path, "probe")
    probe.run(sandbox)  # only to pick live subscriptions to write to
    targets = probe.query(
        "select id, account__code from raw_recurly.subscriptions where state = 'active' "
        "and paused_at is null and coupon_redemptions = '[]' order by id limit 30"
    )
    sandbox.emulator("recurly").request_log.clear()

    writer = Writer(sandbox, targets)
    writer.start()
    warehouse = Warehouse(tmp_path, "sliced")
    warehouse.run(sandbox, page_size=PAGE, max_workers=4, requests_per_second=60)
    writer.join()
    assert writer.error is None
    listing = [e for e in sandbox.emulator("recurly").request_log if "sort" in e["params"]]
    last_listed = max(e["wall_time"] for e in listing)
    writes = [e for e in sandbox.emulator("recurly").request_log if e["method"] != "GET"]
    assert len(writes) == len(targets)
    assert any(e["wall_time"] < last_listed for e in writes), "no write during the listing"
    windows = {
        (e["params"]["begin_time"], e["params"]["end_time"])
        for e in listing
        if e["path"] == "/invoices" and "end_time" in e["params"]
    }
    assert len(windows) > 3, "the invoices were not split"

    warehouse.run(sandbox, page_size=PAGE, max_workers=4)  # incremental
    _each_id_once(warehouse, sandbox)
    reference = Warehouse(tmp_path, "reference")
    reference.run(sandbox)
    assert _comparable(warehouse) == _comparable(reference)
    subs = warehouse.rows("subscriptions")
    assert {subs[s["id"]]["state"] for s in targets[::3]} == {"canceled"}
    assert warehouse.cursor("subscriptions") >= AS_OF + timedelta(seconds=len(targets) - 1)


def test_checkpointed_rounds_list_no_window_twice_and_load_everything_once(
    serve_scenario, small, tmp_path
):
    """Runs that start no window past their first requests (`checkpoint_seconds=0`: a
    timed interval could let a fast run finish in one round), each committing its progress, until
    no resource has windows pending (what `retention extract` does): every list request
    is a new one (no finished window listed again), and the tables are a clean run's."""
    sandbox = serve_scenario(small, systems=("recurly",))
    warehouse = Warehouse(tmp_path, "rounds")
    rounds = 0
    while True:
        rounds += 1
        warehouse.run(sandbox, page_size=2 * PAGE, max_workers=2, checkpoint_seconds=0)
        resources = warehouse.pipeline.state["sources"]["recurly"]["resources"]
        if not any(state.get("slices") for state in resources.values()):
            break
        assert rounds < 100
    assert rounds >= 2  # at least one run stopped at a checkpoint and was resumed
    # The full listings' requests (`/accounts` is listed by two resources: left out).
    requests = [
        (e["path"], tuple(sorted(e["params"].items())))
        for e in sandbox.emulator("recurly").request_log
        if e["path"] in ("/subscriptions", "/invoices") and e["params"].get("sort") == "created_at"
    ]
    # More than one round of both listings (each starts at most max_workers=2 requests a round).
    assert len(requests) > 2 * 2
    assert len(requests) == len(set(requests))
    assert {table: warehouse.cursor(table) for table in TABLES} == dict.fromkeys(TABLES, AS_OF)

    _each_id_once(warehouse, sandbox)
    reference = Warehouse(tmp_path, "reference")
    reference.run(sandbox)
    assert _comparable(warehouse) == _comparable(reference)
