"""The Chargebee dlt source against the sandbox, into DuckDB: complete and exact on the
first run (legacy records without updated_at included; customers, subscriptions and
invoices listed by windows of their creation), incremental by updated_at on later runs, unchanged by 429s, 5xx and dropped connections, resumable after a killed run,
and never writing or logging the API key."""

from __future__ import annotations

import base64
import logging
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import dlt
import duckdb
import orjson
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from billing_clients.retries import RetryPolicy
from billing_clients.sdk import chargebee_client
from dlt_sources.chargebee import chargebee_source
from sandbox.app import Sandbox, start_sandbox
from sandbox.chargebee_render import epoch, minor_units, subscription_status
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.scenario import Scenario, validate_scenario
from sandbox.server import FaultConfig

pytestmark = pytest.mark.integration

CB = "chargebee"
AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
TABLES = ("customers", "subscriptions", "items", "item_prices", "coupons", "invoices")
LIST_PATHS = {f"/api/v2/{table}": table for table in TABLES}
FAST = RetryPolicy(max_attempts=10, base_delay=0.001, max_delay=0.01)
Snapshot = dict[str, tuple[list[str], list[tuple]]]


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def doc(tmp_path_factory) -> dict:
    """A generated scenario: ~300 Chargebee customers, ~350 subscriptions, ~3,300 invoices."""
    path = tmp_path_factory.mktemp("scenario") / "scenario.json"
    write_scenario(GenerateOptions(customers=1200, seed=3, as_of=AS_OF), path)
    return orjson.loads(path.read_bytes())


def make_pipeline(folder: Path) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name="chargebee_test",
        pipelines_dir=str(folder / "pipelines"),
        destination=dlt.destinations.duckdb(str(folder / "warehouse.duckdb")),
        dataset_name="raw_chargebee",
    )


def load(pipeline: dlt.Pipeline, sandbox: Sandbox, resources: tuple[str, ...] = (), **options):
    """One run of the source against the sandbox, unpaced, with fast retries."""
    options = {"requests_per_second": None, "retry_policy": FAST, **options}
    source = chargebee_source(sandbox.api_key, base_url=sandbox.urls[CB], **options)
    return pipeline.run(source.with_resources(*resources) if resources else source)


def snapshot(pipeline: dlt.Pipeline, tables: tuple[str, ...] = TABLES) -> Snapshot:
    """Each table's columns (sorted) and rows (by id), without dlt's bookkeeping columns."""
    path = pipeline.destination_client().config.credentials.database
    out: Snapshot = {}
    with duckdb.connect(path, read_only=True) as con:
        for table in tables:
            described = con.execute(f"describe raw_chargebee.{table}").fetchall()
            columns = sorted(
                c[0] for c in described if not c[0].startswith("_dlt") and c[0] != "_page_seq"
            )
            rows = con.execute(
                f"select {', '.join(columns)} from raw_chargebee.{table} order by id"
            ).fetchall()
            out[table] = (columns, rows)
    return out


def rows(snap: Snapshot, table: str) -> dict[str, dict]:
    columns, values = snap[table]
    return {row[columns.index("id")]: dict(zip(columns, row, strict=True)) for row in values}


def cursors(pipeline: dlt.Pipeline) -> dict[str, int]:
    resources = pipeline.state["sources"][CB]["resources"]
    return {name: state["cursor"] for name, state in resources.items()}


def list_requests(sandbox: Sandbox) -> list[dict]:
    return [
        r
        for r in sandbox.emulator(CB).request_log
        if r["path"] in LIST_PATHS and r["params"] != {"limit": "1"}  # not the clock read
    ]


def run_counts(pipeline: dlt.Pipeline) -> dict[str, int]:
    counts = pipeline.last_trace.last_normalize_info.row_counts
    return {table: counts.get(table, 0) for table in TABLES}


def facts(scenario: Scenario) -> dict[str, int]:
    plans = scenario.for_system("plans", CB)
    return {
        "customers": len(scenario.for_system("customers", CB)),
        "subscriptions": len(scenario.for_system("subscriptions", CB)),
        "items": len({p["product_id"] for p in plans}),
        "item_prices": len(plans),
        "coupons": len(scenario.for_system("coupons", CB)),
        "invoices": len(scenario.for_system("invoices", CB)),
    }


@pytest.fixture(scope="module")
def clean(doc, tmp_path_factory) -> Iterator[tuple[Snapshot, list[dict], Sandbox]]:
    """One fault-free first run: its tables, its list requests and its sandbox (served
    until the module ends)."""
    sandbox = start_sandbox(validate_scenario(doc), frozen=True, systems=(CB,))
    try:
        pipeline = make_pipeline(tmp_path_factory.mktemp("clean"))
        load(pipeline, sandbox)
        yield snapshot(pipeline), list_requests(sandbox), sandbox
    finally:
        sandbox.stop()


# --------------------------------------------------------------------------- first run


def test_first_run_loads_every_record_once_with_api_values(clean):
    snap, _, sandbox = clean
    scenario = sandbox.scenario
    expected = facts(scenario)
    assert {t: len(snap[t][1]) for t in TABLES} == expected
    assert expected["customers"] >= 250 and expected["subscriptions"] >= 300
    for table in TABLES:
        assert len(rows(snap, table)) == expected[table], f"{table} has a doubled id"

    prices = rows(snap, "item_prices")
    jpy, usd = prices["Pro-Monthly-Jpy"], prices["Pro-Monthly-Usd"]
    assert (jpy["price"], jpy["currency_code"], jpy["item_id"]) == (4900, "JPY", "pro")
    assert (usd["price"], usd["currency_code"]) == (4900, "USD")
    quarterly = prices["Team-Quarterly-Gbp"]
    assert (quarterly["price"], quarterly["period"], quarterly["period_unit"]) == (
        12000,
        3,
        "month",
    )
    items = rows(snap, "items")
    assert set(items) == {p["product_id"] for p in scenario.for_system("plans", CB)}
    kinds = {k: (v["type"], v["metered"]) for k, v in items.items()}
    assert (
        kinds.items()
        >= {
            "pro": ("plan", False),
            "setup-fee": ("charge", False),
            "api-calls": ("addon", True),
        }.items()
    )
    volume = orjson.loads(prices["Seats-volume-Monthly-Usd"]["tiers"])
    assert prices["Seats-volume-Monthly-Usd"]["pricing_model"] == "volume"
    assert [(t["starting_unit"], t.get("ending_unit"), t["price"]) for t in volume] == [
        (1, 10, 900),
        (11, None, 700),
    ]
    coupons = rows(snap, "coupons")
    assert coupons["SAVE50"]["discount_percentage"] == 50.0
    assert coupons["SAVE50"]["duration_type"] == "limited_period"

    subs = rows(snap, "subscriptions")
    for sub in scenario.for_system("subscriptions", CB):
        row = subs[sub["subscription_id"]]
        assert row["status"] == subscription_status(sub, AS_OF)
        assert row["customer_id"] == sub["customer_id"]
        items = orjson.loads(row["subscription_items"])
        extra = [i["plan_id"] for i in sub["items"] or ()]
        assert [i["item_price_id"] for i in items] == [sub["plan_id"], *extra]
        assert items[0]["item_type"] == "plan"
    assert {r["status"] for r in subs.values()} >= {"active", "cancelled", "in_trial", "paused"}

    invoices = rows(snap, "invoices")
    for invoice in scenario.for_system("invoices", CB):
        row = invoices[invoice["invoice_id"]]
        assert row["total"] == minor_units(invoice["total"], invoice["currency"])
        assert (row["customer_id"], row["currency_code"]) == (
            invoice["customer_id"],
            invoice["currency"],
        )
    assert any(r["currency_code"] == "JPY" for r in invoices.values())


def test_first_run_loads_legacy_records_without_updated_at(clean):
    """Records last changed over 730 days before as_of have no updated_at: the first run
    lists without any updated_at filter, so they load (a filter would skip them)."""
    snap, requests, sandbox = clean
    assert requests and not any("updated_at[after]" in r["params"] for r in requests)
    emulator = sandbox.emulator(CB)
    kinds = {
        "customers": ("customers", "customer_id"),
        "subscriptions": ("subscriptions", "subscription_id"),
        "invoices": ("invoices", "invoice_id"),
        "item_prices": ("plans", "plan_id"),
        "coupons": ("coupons", "coupon_id"),
    }
    legacy = {
        table: {r[key] for r in emulator.store.all(kind) if emulator.render.updated_at(r) is None}
        for table, (kind, key) in kinds.items()
    }
    assert legacy["customers"] and legacy["subscriptions"] and legacy["invoices"]
    for table, ids in legacy.items():
        loaded = rows(snap, table)
        assert {i for i, r in loaded.items() if r.get("updated_at") is None} == ids, table

    # What a filter would have lost: the API leaves such records out of any updated_at filter.
    cb = chargebee_client(sandbox.api_key, base_url=sandbox.urls[CB])
    old = {"id": {"is": min(legacy["subscriptions"])}}
    assert len(cb.Subscription.list(old).list) == 1
    assert cb.Subscription.list({**old, "updated_at": {"after": 0}}).list == []


# --------------------------------------------------------------------------- incremental


def test_second_run_lists_only_the_updated_at_window(doc, serve_scenario, tmp_path):
    sandbox = serve_scenario(doc, systems=(CB,))
    pipeline = make_pipeline(tmp_path)
    load(pipeline, sandbox)
    before, since = snapshot(pipeline), cursors(pipeline)
    subs = rows(before, "subscriptions")
    active = sorted(i for i, r in subs.items() if r["status"] == "active")
    fresh = [i for i in active if subs[i].get("updated_at") is not None]
    legacy = [i for i in active if subs[i].get("updated_at") is None]
    no_coupon = [i for i in fresh if subs[i].get("coupons") is None]
    cancel, pause, legacy_cancel = fresh[0], fresh[1], legacy[0]
    coupon = next(i for i in no_coupon if i not in (cancel, pause))

    cb = chargebee_client(sandbox.api_key, base_url=sandbox.urls[CB])
    cb.Subscription.cancel_for_items(cancel, {"end_of_term": False})
    cb.Subscription.pause(pause, {"pause_option": "immediately"})
    cb.Subscription.update_for_items(coupon, {"coupon_ids": ["SAVE50"]})
    cb.Subscription.cancel_for_items(legacy_cancel, {"end_of_term": True})
    sandbox.emulator(CB).request_log.clear()

    load(pipeline, sandbox)

    requests = list_requests(sandbox)
    assert {LIST_PATHS[r["path"]] for r in requests} == set(TABLES)
    for request in requests:
        since_param = request["params"]["updated_at[after]"]
        assert since_param == str(since[LIST_PATHS[request["path"]]] - 1)
    changed = {cancel, pause, coupon, legacy_cancel}
    expected = {}
    for table in TABLES:
        at_or_after = {
            i for i, r in rows(before, table).items() if (r.get("updated_at") or 0) >= since[table]
        }
        expected[table] = len(at_or_after | (changed if table == "subscriptions" else set()))
    assert run_counts(pipeline) == expected
    assert expected["subscriptions"] < len(subs) // 4  # a window, not a relisting

    after = snapshot(pipeline)
    assert {t: len(after[t][1]) for t in TABLES} == {t: len(before[t][1]) for t in TABLES}
    now = rows(after, "subscriptions")
    assert now[cancel]["status"] == "cancelled"
    assert now[pause]["status"] == "paused"
    assert [c["coupon_id"] for c in orjson.loads(now[coupon]["coupons"])] == ["SAVE50"]
    assert now[legacy_cancel]["status"] == "non_renewing"
    assert now[legacy_cancel]["updated_at"] == epoch(AS_OF)
    unchanged = set(subs) - changed
    assert all(now[i] == subs[i] for i in unchanged)


def test_write_while_paging_an_incremental_listing_is_loaded_by_this_run_and_the_next(
    doc, serve_scenario, tmp_path
):
    """An incremental listing pages in updated_at order: a subscription cancelled between
    two pages, after the listing passed it, moves to the end of that order, so this run
    lists it again (the merge keeps the later copy), and the next run's window, from the
    cursor's own second, has it too. The cursor is set back to the start of time after
    the first run, so the incremental listing has many pages."""
    sandbox = serve_scenario(doc, systems=(CB,))
    pipeline = make_pipeline(tmp_path)
    load(pipeline, sandbox, ("subscriptions",))
    with pipeline.managed_state() as state:
        state["sources"][CB]["resources"]["subscriptions"]["cursor"] = 1
    subs = rows(snapshot(pipeline, ("subscriptions",)), "subscriptions")
    dated = {i: r for i, r in subs.items() if r.get("updated_at") is not None}
    first_page = sorted(dated, key=lambda i: (dated[i]["updated_at"], i))[:10]
    target = next(i for i in first_page if dated[i]["status"] == "active")
    cb = chargebee_client(sandbox.api_key, base_url=sandbox.urls[CB])
    sandbox.emulator(CB).request_log.clear()
    _before_list_request(
        sandbox, "subscriptions", 3, lambda: cb.Subscription.cancel_for_items(target)
    )

    load(pipeline, sandbox, ("subscriptions",), page_size=10)

    assert len(list_requests(sandbox)) > 3  # the write landed between pages
    loaded = rows(snapshot(pipeline, ("subscriptions",)), "subscriptions")
    assert len(loaded) == len(subs)
    assert loaded[target]["status"] == "cancelled"
    assert run_counts(pipeline)["subscriptions"] == len(dated) + 1  # twice, merged once
    assert cursors(pipeline) == {"subscriptions": epoch(AS_OF)}

    load(pipeline, sandbox, ("subscriptions",), page_size=10)
    newest = {i for i, r in loaded.items() if r.get("updated_at") == epoch(AS_OF)}
    assert target in newest and run_counts(pipeline)["subscriptions"] == len(newest)
    again = rows(snapshot(pipeline, ("subscriptions",)), "subscriptions")
    assert again == loaded


def _before_list_request(sandbox: Sandbox, table: str, nth: int, write: Callable) -> None:
    """Make `write` (through the SDK, so over HTTP) just before the `nth` list request of
    `table` is answered."""
    emulator = sandbox.emulator(CB)
    answer, seen = emulator.handle, []

    def handle(request):
        if request.path == f"/api/v2/{table}":
            seen.append(request)
            if len(seen) == nth:
                write()
        return answer(request)

    emulator.handle = handle


# --------------------------------------------------------------------------- faults


def test_429_storms_5xx_and_dropped_connections_change_nothing(
    doc, clean, serve_scenario, tmp_path
):
    faults = FaultConfig(rate_429=0.3, rate_500=0.1, rate_503=0.05, rate_drop=0.1, seed=11)
    sandbox = serve_scenario(doc, systems=(CB,), faults={CB: faults})
    pipeline = make_pipeline(tmp_path)
    # 45% of requests fault, drawn in whatever order the concurrent windows ask: with 10
    # attempts one request in 400 would give up; 30 make it one in 60 million.
    patient = RetryPolicy(max_attempts=30, base_delay=0.001, max_delay=0.01)
    load(pipeline, sandbox, max_workers=4, retry_policy=patient)
    kinds = {r["fault"] for r in sandbox.emulator(CB).request_log}
    assert {"429", "500", "503", "drop"} <= kinds
    assert snapshot(pipeline) == clean[0]


def test_killed_runs_resume_from_the_last_committed_cursor(doc, clean, serve_scenario, tmp_path):
    sandbox = serve_scenario(doc, systems=(CB,))
    emulator = sandbox.emulator(CB)
    pipeline = make_pipeline(tmp_path)
    give_up = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.01)

    # The first run dies on the third invoices page, after other resources finished.
    emulator.faults = FaultConfig(
        script=deque([None, None, "500", "500"]), only_paths=["/invoices"]
    )
    with pytest.raises(PipelineStepFailed, match="gave up after 2 attempts"):
        load(pipeline, sandbox, retry_policy=give_up)
    emulator.request_log.clear()
    load(pipeline, sandbox)
    assert not any("updated_at[after]" in r["params"] for r in list_requests(sandbox))
    assert snapshot(pipeline) == clean[0]

    # An incremental run dies on subscriptions after a cancel; no cursor moved, so the
    # re-run lists the same window and loads the cancel.
    since = cursors(pipeline)
    subs = rows(clean[0], "subscriptions")
    target = min(i for i, r in subs.items() if r["status"] == "active")
    chargebee_client(sandbox.api_key, base_url=sandbox.urls[CB]).Subscription.cancel_for_items(
        target
    )
    emulator.faults = FaultConfig(script=deque(["drop", "drop"]), only_paths=["/subscriptions"])
    with pytest.raises(PipelineStepFailed, match="RemoteProtocolError"):
        load(pipeline, sandbox, retry_policy=give_up)
    assert cursors(make_pipeline(tmp_path)) == since
    emulator.request_log.clear()
    load(pipeline, sandbox)
    (request,) = [r for r in list_requests(sandbox) if r["path"].endswith("/subscriptions")]
    assert request["params"]["updated_at[after]"] == str(since["subscriptions"] - 1)
    after = snapshot(pipeline)
    assert rows(after, "subscriptions")[target]["status"] == "cancelled"
    assert {t: len(after[t][1]) for t in TABLES} == {t: len(clean[0][t][1]) for t in TABLES}


# --------------------------------------------------------------------------- secrets


def test_api_key_never_reaches_the_warehouse_or_the_logs(doc, serve_scenario, tmp_path, caplog):
    secret = "live_cb_Zq8sEcReT4242"
    faults = FaultConfig(script=deque(["429", "500", "drop"]))
    sandbox = serve_scenario(doc, systems=(CB,), api_key=secret, faults={CB: faults})
    caplog.set_level(logging.DEBUG)
    pipeline = make_pipeline(tmp_path)
    load(pipeline, sandbox)
    assert len(rows(snapshot(pipeline), "subscriptions")) > 0

    encoded = base64.b64encode(f"{secret}:".encode()).decode()
    for text in (secret, encoded):
        assert text not in caplog.text
    assert "retrying" in caplog.text  # the faults were logged, without the key
    path = pipeline.destination_client().config.credentials.database
    with duckdb.connect(path, read_only=True) as con:
        columns = con.execute(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where data_type = 'VARCHAR'"
        ).fetchall()
        for schema, table, column in columns:
            hits = con.execute(
                f'select count(*) from "{schema}"."{table}" where "{column}" like ?',
                [f"%{secret}%"],
            ).fetchall()
            assert hits == [(0,)], f"{schema}.{table}.{column}"
    for file in Path(tmp_path / "pipelines").rglob("*"):
        if file.is_file():
            assert secret.encode() not in file.read_bytes(), file


# --------------------------------------------------------------------------- catalogs


def _small_site(catalog: str) -> dict:
    """One customer on one plan, on a site of the given Product Catalog."""
    return {
        "as_of": "2026-06-30T00:00:00Z",
        "reporting_currency": "USD",
        "fx_rates": {"USD": "1"},
        "chargebee_product_catalog": catalog,
        "plans": [
            {
                "billing_system": CB,
                "plan_id": "pro-usd",
                "product_id": "pro",
                "product_name": "Pro",
                "currency": "USD",
                "unit_amount": "49.00",
                "interval": "month",
                "interval_count": 1,
            }
        ],
        "customers": [
            {
                "billing_system": CB,
                "customer_id": "c1",
                "email": None,
                "name": None,
                "created_at": "2026-01-01T00:00:00Z",
            }
        ],
        "subscriptions": [
            {
                "billing_system": CB,
                "subscription_id": "s1",
                "customer_id": "c1",
                "plan_id": "pro-usd",
                "quantity": 2,
                "created_at": "2026-01-01T00:00:00Z",
                "activated_at": "2026-01-01T00:00:00Z",
            }
        ],
    }


@pytest.mark.parametrize(("catalog", "setting"), [("1.0", "auto"), ("2.0", "auto"), ("1.0", "v1")])
def test_the_catalog_decides_the_catalog_tables(tmp_path, serve_scenario, catalog, setting):
    """1.0 sites load plans (and add-ons), 2.0 sites items and item prices; `auto` asks
    GET /configurations once, a set catalog never does."""
    sandbox = serve_scenario(_small_site(catalog), systems=(CB,))
    pipeline = make_pipeline(tmp_path)
    load(pipeline, sandbox, product_catalog=setting)
    counts = pipeline.last_trace.last_normalize_info.row_counts
    catalog_tables = {t for t in ("items", "item_prices", "plans", "addons") if counts.get(t)}
    assert catalog_tables == ({"plans"} if catalog == "1.0" else {"items", "item_prices"})
    asked = [r for r in sandbox.emulator(CB).request_log if r["path"].endswith("/configurations")]
    assert len(asked) == (1 if setting == "auto" else 0)
    refused = [r for r in sandbox.emulator(CB).request_log if r["status"] >= 400]
    assert refused == []  # the other catalog's endpoints were never called


def test_a_wrong_catalog_setting_fails_the_run_loudly(tmp_path, serve_scenario):
    sandbox = serve_scenario(_small_site("2.0"), systems=(CB,))
    with pytest.raises(PipelineStepFailed, match="not applicable for Product Catalog"):
        load(make_pipeline(tmp_path), sandbox, product_catalog="v1")
    with pytest.raises(ValueError, match="product_catalog"):
        chargebee_source("key", base_url=sandbox.urls[CB], product_catalog="1.0")
