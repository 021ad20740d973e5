"""The Recurly dlt source against the sandbox, loaded into a DuckDB file.

A generated scenario (500 customers, about 120 of them on Recurly) checks counts, types,
incremental runs, faults and a killed run; the hand-written scenario of the SDK tests
checks exact values. Writes go through the official SDK, as the cancel page makes them.
"""

from __future__ import annotations

import http.client
import json
import logging
import secrets
from collections import deque
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dlt
import duckdb
import orjson
import pytest
import recurly
from dlt.pipeline.exceptions import PipelineStepFailed

from billing_clients.retries import RetryPolicy
from billing_clients.sdk import recurly_client
from dlt_sources.recurly import recurly_source
from dlt_sources.recurly.helpers import RecurlyLister, Settings, format_time
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.recurly_render import coupon_codes, subscription_state
from sandbox.scenario import validate_scenario
from sandbox.server import FaultConfig
from tests.integration.test_sandbox_recurly import SCENARIO as HAND_WRITTEN

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
TABLES = ("customers", "subscriptions", "plans", "coupons", "invoices")
PATHS = {
    "/accounts": "customers",
    "/subscriptions": "subscriptions",
    "/plans": "plans",
    "/coupons": "coupons",
    "/invoices": "invoices",
}
# The fault tests fault 40% of requests, drawn in whatever order the concurrent windows
# and redemption readers ask: with 12 attempts one request in 60,000 would give up (a few
# hundred requests a run: a flaky test); 30 make it one in 10^12.
FAST_RETRIES = RetryPolicy(max_attempts=30, base_delay=0.001, max_delay=0.01)
LAG = timedelta(seconds=60)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict:
    """A generated scenario document (as_of 2026-06-30), written and read back once."""
    path = tmp_path_factory.mktemp("scenario") / "scenario.json"
    write_scenario(GenerateOptions(customers=500, seed=11, as_of=AS_OF), path)
    return orjson.loads(path.read_bytes())


@pytest.fixture
def facts(generated) -> dict[str, list[dict]]:
    """The scenario's Recurly records, parsed, per section; add-on records are no plans
    (Recurly lists them under each plan that offers them, `/plans/{id}/add_ons`)."""
    scenario = validate_scenario(generated)
    records = {table: scenario.for_system(table, "recurly") for table in TABLES}
    records["plans"] = [plan for plan in records["plans"] if plan["kind"] == "plan"]
    return records


class Warehouse:
    """One dlt pipeline and its DuckDB file."""

    def __init__(self, root: Path, name: str):
        self.path = root / f"{name}.duckdb"
        self.pipeline = dlt.pipeline(
            pipeline_name=f"recurly_{name}",
            pipelines_dir=str(root / f"{name}_dlt"),
            destination=dlt.destinations.duckdb(str(self.path)),
            dataset_name="raw_recurly",
        )

    def run(self, sandbox, **options) -> dict[str, int]:
        """Load once; the rows each table received in this run."""
        options = {"requests_per_second": None, "retry_policy": FAST_RETRIES, **options}
        source = recurly_source(
            api_key=sandbox.api_key, base_url=sandbox.urls["recurly"], **options
        )
        self.pipeline.run(source)
        return dict(self.pipeline.last_trace.last_normalize_info.row_counts)

    def query(self, sql: str) -> list[dict]:
        with duckdb.connect(str(self.path), read_only=True) as con:
            return con.sql(sql).pl().to_dicts()

    def rows(self, table: str) -> dict[str, dict]:
        """A table by id, without dlt's columns and without null values (so tables that
        saw a column at different times compare equal)."""
        found = self.query(f"select * from raw_recurly.{table}")
        return {
            row["id"]: {k: v for k, v in row.items() if v is not None and not k.startswith("_dlt")}
            for row in found
        }

    def snapshot(self) -> dict[str, dict[str, dict]]:
        return {table: self.rows(table) for table in (*TABLES, "coupon_redemptions")}

    def cursor(self, table: str) -> datetime:
        resources = self.pipeline.state["sources"]["recurly"]["resources"]
        return datetime.fromisoformat(resources[table]["updated_at"])


def _list_requests(sandbox) -> list[dict]:
    return [
        entry
        for entry in sandbox.emulator("recurly").request_log
        if entry["method"] == "GET" and entry["path"] in PATHS and not _is_probe(entry)
    ]


def _is_probe(entry: dict) -> bool:
    """A one-record request: Recurly's clock (a `Date` of `/accounts`) or whether the
    site has any coupon (`/coupons`), not a listing."""
    return entry["params"] == {"limit": "1"}


# --------------------------------------------------------------------------- full load


def test_first_run_loads_every_record_once(serve_scenario, generated, facts, tmp_path):
    sandbox = serve_scenario(generated, systems=("recurly",))
    warehouse = Warehouse(tmp_path, "full")
    warehouse.run(sandbox, page_size=50)

    for table in TABLES:
        [count] = warehouse.query(
            f"select count(*) as n, count(distinct id) as ids from raw_recurly.{table}"
        )
        assert count == {"n": len(facts[table]), "ids": len(facts[table])}, table
    customers = {row["code"]: row for row in warehouse.rows("customers").values()}
    assert set(customers) == {c["customer_id"] for c in facts["customers"]}

    subs = warehouse.rows("subscriptions")
    for sub in facts["subscriptions"]:
        row = subs[sub["subscription_id"]]
        assert row["account__code"] == sub["customer_id"]
        assert row["plan__code"] == sub["plan_id"]
        assert row["state"] == subscription_state(sub, AS_OF)
        assert row["created_at"] == sub["created_at"]
        add_ons = json.loads(row.get("add_ons", "[]"))
        assert [(a["add_on"]["code"], a["quantity"]) for a in add_ons] == [
            (item["plan_id"], item["quantity"]) for item in sub["items"] or ()
        ]
    assert {row["state"] for row in subs.values()} >= {"active", "canceled", "expired"}
    assert any(sub["items"] for sub in facts["subscriptions"]), "no subscription has add-ons"

    invoices = {row["number"]: row for row in warehouse.rows("invoices").values()}
    for invoice in facts["invoices"][:200]:
        row = invoices[invoice["invoice_id"]]
        assert (row["currency"], Decimal(str(row["total"]))) == (
            invoice["currency"],
            invoice["total"],
        )
        assert row["account__code"] == invoice["customer_id"]

    redemptions = warehouse.rows("coupon_redemptions").values()
    assert sorted(
        ((r["account__code"], r["coupon__code"], r.get("subscription_id")) for r in redemptions),
        key=str,
    ) == _expected_redemptions(facts)

    plans = {row["code"]: row for row in warehouse.rows("plans").values()}
    [yen] = json.loads(plans["pro-monthly-jpy"]["currencies"])
    assert (yen["currency"], yen["unit_amount"]) == ("JPY", 4900)  # major units, as the API
    prices = json.loads(plans["pro-monthly-usd"]["currencies"])  # its own first, then options
    assert [(p["currency"], p["unit_amount"]) for p in prices] == [
        ("USD", 49.0),
        ("EUR", 45.0),
        ("GBP", 39.0),
    ]


def _expected_redemptions(facts: dict) -> list[tuple]:
    """One redemption per coupon of each subscription (several coupons: several
    redemptions); account-level ones (Recurly's default) name no subscription."""
    level = {c["coupon_id"]: c["redemption_resource"] or "account" for c in facts["coupons"]}
    return sorted(
        (
            (s["customer_id"], code, None)
            if level[code] == "account"
            else (s["customer_id"], code, s["subscription_id"])
            for s in facts["subscriptions"]
            for code in coupon_codes(s)
        ),
        key=str,
    )


def test_exact_values_and_types(serve_scenario, tmp_path):
    sandbox = serve_scenario(HAND_WRITTEN, systems=("recurly",))
    warehouse = Warehouse(tmp_path, "exact")
    warehouse.run(sandbox, page_size=3)

    subs = warehouse.rows("subscriptions")
    assert {sid: row["state"] for sid, row in subs.items()} == {
        "sub_active": "active",
        "sub_week": "active",
        "sub_trial": "active",
        "sub_cancel": "canceled",
        "sub_ended": "expired",
        "sub_paused": "paused",
        "sub_future": "future",
        "sub_jp": "active",
    }
    jp = subs["sub_jp"]
    assert (jp["currency"], jp["unit_amount"], jp["total"], jp["account__code"]) == (
        "JPY",
        4900.0,
        4900.0,
        "cus_7",
    )
    assert [r["coupon"]["code"] for r in json.loads(jp["coupon_redemptions"])] == ["JPYOFF"]
    active = subs["sub_active"]
    assert (active["quantity"], active["unit_amount"], active["total"]) == (2, 49.0, 98.0)
    assert active["current_period_ends_at"] == datetime(2026, 7, 15, tzinfo=UTC)
    canceled = subs["sub_cancel"]
    assert (canceled["canceled_at"], canceled["expires_at"]) == (
        datetime(2026, 5, 1, tzinfo=UTC),
        datetime(2026, 9, 1, tzinfo=UTC),
    )
    assert subs["sub_paused"]["remaining_pause_cycles"] == 3

    plans = {row["code"]: row for row in warehouse.rows("plans").values()}
    assert (plans["team_w"]["interval_unit"], plans["team_w"]["interval_length"]) == ("days", 14)
    coupons = {row["code"]: row for row in warehouse.rows("coupons").values()}
    assert (coupons["SAVE"]["discount__type"], coupons["SAVE"]["discount__percent"]) == (
        "percent",
        50,
    )
    assert json.loads(coupons["JPYOFF"]["discount__currencies"]) == [
        {"currency": "JPY", "amount": 500}
    ]
    invoices = {row["number"]: row for row in warehouse.rows("invoices").values()}
    assert (invoices["1003"]["state"], invoices["1003"]["balance"]) == ("pending", 4400.0)
    assert invoices["1001"]["closed_at"] == datetime(2026, 5, 15, 0, 5, tzinfo=UTC)
    assert json.loads(invoices["1001"]["subscription_ids"]) == ["sub_active"]

    types = {
        (row["table_name"], row["column_name"]): row["data_type"]
        for row in warehouse.query(
            "select table_name, column_name, data_type from information_schema.columns "
            "where table_schema = 'raw_recurly'"
        )
    }
    assert types["subscriptions", "updated_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["subscriptions", "unit_amount"] == "DOUBLE"
    assert types["invoices", "balance"] == "DOUBLE"


# --------------------------------------------------------------------------- incremental


def _live_subscriptions(warehouse: Warehouse, n: int) -> list[dict]:
    return warehouse.query(
        "select id, account__code from raw_recurly.subscriptions where state = 'active' "
        f"and paused_at is null and coupon_redemptions = '[]' order by id limit {n}"
    )


def test_incremental_run_lists_only_the_updated_at_window(
    serve_scenario, generated, facts, tmp_path
):
    sandbox = serve_scenario(generated, systems=("recurly",))
    warehouse = Warehouse(tmp_path, "incremental")
    warehouse.run(sandbox)
    cursors = {table: warehouse.cursor(table) for table in TABLES}
    # Records the lag window re-reads: those stamped within a minute of each cursor.
    window = {
        table: {
            row["id"]
            for row in warehouse.query(f"select id, updated_at from raw_recurly.{table}")
            if row["updated_at"] >= cursors[table] - LAG
        }
        for table in TABLES
    }

    canceled, paused, discounted = _live_subscriptions(warehouse, 3)
    sandbox.clock.set(AS_OF + timedelta(hours=1))
    client = recurly_client(sandbox.api_key, sandbox.urls["recurly"])
    client.cancel_subscription(canceled["id"])
    client.pause_subscription(paused["id"], {"remaining_pause_cycles": 2})
    client.create_coupon_redemption(
        f"code-{discounted['account__code']}",
        {"coupon_id": "code-SAVE50", "subscription_id": discounted["id"]},
    )
    sandbox.emulator("recurly").request_log.clear()

    received = warehouse.run(sandbox)

    # Written through the API, or renewed while the clock moved (a new period stamps
    # updated_at, as Recurly does).
    renewed = {
        sub["subscription_id"]
        for sub in sandbox.emulator("recurly").store.all("subscriptions")
        if AS_OF < sub["updated_at"] <= AS_OF + timedelta(hours=1)
    }
    changed = {canceled["id"], paused["id"], discounted["id"]} | renewed
    assert received["subscriptions"] == len(window["subscriptions"] | changed)
    for table in ("customers", "plans", "coupons", "invoices"):
        assert received.get(table, 0) == len(window[table]), table
    for entry in _list_requests(sandbox):
        table = PATHS[entry["path"]]
        assert entry["params"]["sort"] == "updated_at"
        assert entry["params"]["order"] == "asc"
        assert entry["params"]["begin_time"] == format_time(cursors[table] - LAG)
    for table in TABLES:
        [count] = warehouse.query(f"select count(*) as n from raw_recurly.{table}")
        assert count["n"] == len(facts[table])

    subs = warehouse.rows("subscriptions")
    assert subs[canceled["id"]]["state"] == "canceled"
    assert subs[canceled["id"]]["canceled_at"] == AS_OF + timedelta(hours=1)
    assert subs[paused["id"]]["remaining_pause_cycles"] == 2
    assert "paused_at" in subs[paused["id"]]
    redemptions = json.loads(subs[discounted["id"]]["coupon_redemptions"])
    assert [r["coupon"]["code"] for r in redemptions] == ["SAVE50"]
    assert warehouse.cursor("subscriptions") == AS_OF + timedelta(hours=1)


def test_a_write_while_paging_and_a_second_write_in_the_same_second(
    serve_scenario, tmp_path, monkeypatch
):
    """An incremental run that re-reads everything (a lag of years) lists sub_active on
    its first page; it is canceled while the run pages, so it moves behind the run's
    position and is listed again: the newer copy must win the merge. Then it is
    reactivated within the same second, which the next run (no lag: begin_time is the
    cursor itself) must load, where boundary dedup by id would drop it."""
    sandbox = serve_scenario(HAND_WRITTEN, systems=("recurly",))
    warehouse = Warehouse(tmp_path, "paging")
    warehouse.run(sandbox)  # the first sync: a full listing by created_at
    written_at = AS_OF + timedelta(hours=2)
    writer = recurly_client(sandbox.api_key, sandbox.urls["recurly"])
    pages: list[str] = []
    listed = RecurlyLister.get

    def get_then_write(self: RecurlyLister, path: str) -> dict:
        page = listed(self, path)
        if path.startswith("/subscriptions"):
            pages.append(path)
            if len(pages) == 2:
                sandbox.clock.set(written_at)
                writer.cancel_subscription("sub_active")
        return page

    monkeypatch.setattr(RecurlyLister, "get", get_then_write)
    received = warehouse.run(sandbox, page_size=2, lag_seconds=5 * 365 * 86400)

    assert received["subscriptions"] == len(HAND_WRITTEN["subscriptions"]) + 1
    subs = warehouse.rows("subscriptions")
    assert len(subs) == len(HAND_WRITTEN["subscriptions"])
    assert (subs["sub_active"]["state"], subs["sub_active"]["updated_at"]) == (
        "canceled",
        written_at,
    )
    assert warehouse.cursor("subscriptions") == written_at

    writer.reactivate_subscription("sub_active")  # the clock is frozen: same second
    sandbox.emulator("recurly").request_log.clear()
    received = warehouse.run(sandbox, lag_seconds=0)
    assert received["subscriptions"] == 1
    [listing] = [e for e in _list_requests(sandbox) if e["path"] == "/subscriptions"]
    assert listing["params"]["begin_time"] == format_time(written_at)
    active = warehouse.rows("subscriptions")["sub_active"]
    assert (active["state"], active.get("canceled_at")) == ("active", None)


def test_requests_of_all_resources_together_keep_the_pace(serve_scenario, tmp_path):
    sandbox = serve_scenario(HAND_WRITTEN, systems=("recurly",))
    Warehouse(tmp_path, "paced").run(sandbox, page_size=1, requests_per_second=20)
    times = sorted(entry["wall_time"] for entry in _list_requests(sandbox))
    assert len(times) > 20
    assert times[-1] - times[0] >= (len(times) - 1) / 20 * 0.95
    # No burst: over any 2 s about 40 requests. The bucket's own schedule is exact (its
    # unit tests); the server sees requests the scheduler woke late bunched with the next
    # ones (dozens of worker threads and the server on two shared cores), hence the margin.
    assert max(sum(1 for t in times if start <= t < start + 2) for start in times) <= 60


# --------------------------------------------------------------------------- faults


def test_faults_give_the_same_tables_as_a_clean_run(serve_scenario, generated, tmp_path, caplog):
    faults = FaultConfig(
        rate_429=0.2,
        rate_500=0.05,
        rate_503=0.05,
        rate_drop=0.05,
        rate_drop_after=0.05,
        retry_after=0,
        seed=5,
    )
    sandbox = serve_scenario(generated, systems=("recurly",), faults={"recurly": faults})
    with caplog.at_level(logging.WARNING, logger="retention.extract"):
        Warehouse(tmp_path, "faulty").run(sandbox, page_size=40)
    faulty = Warehouse(tmp_path, "faulty").snapshot()
    seen = {entry["fault"] for entry in sandbox.emulator("recurly").request_log}
    assert seen >= {"429", "500", "503", "drop", "drop_after", None}
    retried = caplog.text
    assert "RateLimitedError" in retried and "NetworkError" in retried
    assert "InternalServerError" in retried

    sandbox.emulator("recurly").faults = FaultConfig()
    clean = Warehouse(tmp_path, "clean")
    clean.run(sandbox, page_size=200)
    assert faulty == clean.snapshot()


def test_a_429_waits_for_the_reset_and_a_timeout_gets_a_fresh_connection(serve_scenario):
    sandbox = serve_scenario(HAND_WRITTEN, systems=("recurly",))
    emulator = sandbox.emulator("recurly")
    waits: list[float] = []
    settings = Settings(
        api_key=sandbox.api_key,
        base_url=sandbox.urls["recurly"],
        retry_policy=RetryPolicy(base_delay=0.001, sleep=waits.append),
    )

    emulator.faults = FaultConfig(script=deque(["429", "429"]), retry_after=7)
    pages = list(RecurlyLister(settings).pages("/plans", {"limit": 200}, "plans"))
    assert [len(page) for page in pages] == [len(HAND_WRITTEN["plans"])]
    assert waits == [7.0, 7.0]  # the API's wait, not the backoff's

    # A timeout leaves the SDK's own connection mid-exchange: every later call fails.
    emulator.faults = FaultConfig(script=deque(["slow"]), slow_seconds=0.5)
    sdk = recurly_client(sandbox.api_key, sandbox.urls["recurly"], timeout=0.2)
    with pytest.raises(recurly.NetworkError):
        sdk.list_plans().first()
    with pytest.raises(http.client.CannotSendRequest):
        sdk.list_plans().first()

    # The lister closes it after a failure, so its next attempt opens a fresh one.
    emulator.faults = FaultConfig(script=deque(["slow"]), slow_seconds=0.5)
    with settings.clients.lease() as client:  # the client the next request borrows
        client._BaseClient__conn.timeout = 0.2
        client._BaseClient__conn.close()  # the timeout applies from the next connection
    pages = list(RecurlyLister(settings).pages("/plans", {"limit": 200}, "plans"))
    assert [len(page) for page in pages] == [len(HAND_WRITTEN["plans"])]
    assert len(waits) == 3  # one backoff, after the timeout


def test_a_killed_run_resumes_from_the_last_committed_cursor(serve_scenario, generated, tmp_path):
    sandbox = serve_scenario(generated, systems=("recurly",))
    emulator = sandbox.emulator("recurly")
    one_attempt = RetryPolicy(max_attempts=1)

    # A first run killed midway (the third invoices page fails, no retry left) commits
    # nothing; its re-run is a full load.
    warehouse = Warehouse(tmp_path, "killed")
    emulator.faults = FaultConfig(only_paths=["/invoices"], script=deque([None, None, "500"]))
    with pytest.raises(PipelineStepFailed, match="gave up after 1 attempts"):
        warehouse.run(sandbox, page_size=100, retry_policy=one_attempt)
    assert not warehouse.path.exists() or not warehouse.query(
        "select table_name from information_schema.tables where table_schema = 'raw_recurly' "
        "and table_name = 'subscriptions'"
    )
    warehouse.run(sandbox, page_size=100)
    cursors = {table: warehouse.cursor(table) for table in TABLES}

    # Changes, then an incremental run killed on its second subscriptions page: the
    # cursors stay where the last load committed them, and the re-run picks up all.
    # The writes leave the clock (as_of) and the accounts' derived flags alone: the
    # sandbox rolls billing periods over and recomputes `has_*_subscription` at read time
    # without touching `updated_at`, which no incremental source can see (see the report).
    paused, discounted = _live_subscriptions(warehouse, 2)
    client = recurly_client(sandbox.api_key, sandbox.urls["recurly"])
    client.pause_subscription(paused["id"], {"remaining_pause_cycles": 1})
    client.create_coupon_redemption(
        f"code-{discounted['account__code']}",
        {"coupon_id": "code-LOYAL20", "subscription_id": discounted["id"]},
    )
    emulator.faults = FaultConfig(only_paths=["/subscriptions"], script=deque([None, "drop"]))
    with pytest.raises(PipelineStepFailed, match="gave up after 1 attempts"):
        warehouse.run(sandbox, page_size=1, retry_policy=one_attempt)
    assert {table: warehouse.cursor(table) for table in TABLES} == cursors
    assert "paused_at" not in warehouse.rows("subscriptions")[paused["id"]]

    warehouse.run(sandbox, page_size=1)
    assert warehouse.cursor("subscriptions") == AS_OF
    reference = Warehouse(tmp_path, "reference")
    reference.run(sandbox)
    assert warehouse.snapshot() == reference.snapshot()
    subs = warehouse.rows("subscriptions")
    assert subs[paused["id"]]["remaining_pause_cycles"] == 1
    # LOYAL20 is an account-level coupon: not on the subscription, but the redemption
    # moved the account, so the re-run read the account's redemptions.
    assert "LOYAL20" not in subs[discounted["id"]]["coupon_redemptions"]
    redeemed = {
        (r["account__code"], r["coupon__code"], r.get("subscription_id"))
        for r in warehouse.rows("coupon_redemptions").values()
    }
    assert (discounted["account__code"], "LOYAL20", None) in redeemed


# --------------------------------------------------------------------------- secrets


def test_the_api_key_stays_out_of_the_warehouse_and_the_logs(
    serve_scenario, tmp_path, caplog, monkeypatch
):
    key = "rk_" + secrets.token_hex(16)
    faults = FaultConfig(rate_429=0.2, rate_500=0.1, rate_drop=0.1, retry_after=0, seed=3)
    sandbox = serve_scenario(
        HAND_WRITTEN, systems=("recurly",), api_key=key, faults={"recurly": faults}
    )
    monkeypatch.setenv("SOURCES__RECURLY__API_KEY", key)
    monkeypatch.setenv("SOURCES__RECURLY__BASE_URL", sandbox.urls["recurly"])
    warehouse = Warehouse(tmp_path, "secret")
    with caplog.at_level(logging.DEBUG):
        warehouse.pipeline.run(recurly_source(retry_policy=FAST_RETRIES, requests_per_second=None))
        assert warehouse.rows("subscriptions")  # configured from the environment

        monkeypatch.setenv("SOURCES__RECURLY__API_KEY", key[::-1])
        with pytest.raises(PipelineStepFailed, match=r"UnauthorizedError|Invalid API key"):
            refused = recurly_source(retry_policy=FAST_RETRIES, requests_per_second=None)
            Warehouse(tmp_path, "refused").pipeline.run(refused)
    assert any(e["status"] == 401 for e in sandbox.emulator("recurly").request_log)
    assert "UnauthorizedError (attempt" not in caplog.text  # a 401 is not retried
    assert "retrying" in caplog.text  # the faults were logged, the key was not
    for text in (key, key[::-1]):
        assert text not in caplog.text

    with duckdb.connect(str(warehouse.path), read_only=True) as con:
        tables = con.sql(
            "select table_schema, table_name from information_schema.tables"
        ).fetchall()
        for schema, table in tables:
            dump = con.sql(f'select * from "{schema}"."{table}"').fetchall()
            assert key not in repr(dump), f"{schema}.{table}"
    for path in (tmp_path / "secret_dlt").rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_the_region_setting_points_the_listers_at_the_eu_host():
    """`sources.recurly.region` (SOURCES__RECURLY__REGION) reaches every client the
    listers borrow; a base URL (the sandbox) wins over it."""

    def host(settings: Settings) -> str:
        with settings.clients.lease() as client:
            return client._BaseClient__conn.host

    assert host(Settings(api_key="k", region="eu")) == "v3.eu.recurly.com"
    assert host(Settings(api_key="k")) == "v3.recurly.com"
    assert host(Settings(api_key="k", base_url="http://127.0.0.1:9", region="eu")) == "127.0.0.1"
