"""The Stripe dlt source against the sandbox: full load equal to the scenario's facts,
incremental runs through events, updates while paging, faults, a killed run, the 30-day
window fallback and the API key kept out of warehouse and logs.

Every test loads a generated scenario (~300 Stripe customers) into a real DuckDB file;
the sandbox clock is frozen at as_of unless a test moves it.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import deque
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar
from urllib.parse import parse_qsl, urlsplit

import dlt
import duckdb
import orjson
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from billing_clients.retries import RetryPolicy
from billing_clients.sdk import stripe_client
from dlt_sources.stripe import stripe_source
from dlt_sources.stripe.helpers import LISTING_FLOOR, StripeApi
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.scenario import Scenario, load_scenario, to_minor_units
from sandbox.server import FaultConfig
from sandbox.stripe_render import INVOICE_STATUS
from tests.writeback_scenario import scenario as small_scenario

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
TABLES = ("customers", "subscriptions", "prices", "products", "coupons", "invoices", "events")
FAST = RetryPolicy(base_delay=0.001, max_delay=0.01)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "scenario.json"
    write_scenario(GenerateOptions(customers=500, seed=42, as_of=AS_OF), path)
    return path


@pytest.fixture(scope="module")
def doc(scenario_file) -> dict:
    return orjson.loads(scenario_file.read_bytes())


@pytest.fixture(scope="module")
def facts(scenario_file) -> Scenario:
    return load_scenario(scenario_file)


@pytest.fixture
def sandbox(serve_scenario, doc):
    return serve_scenario(doc, systems=("stripe",))


class Warehouse:
    """One dlt pipeline into its own DuckDB file, and reads of what it loaded."""

    def __init__(self, root: Path, name: str):
        self.path = root / f"{name}.duckdb"
        self.pipelines_dir = root / f"{name}_pipelines"
        self.pipeline = dlt.pipeline(
            pipeline_name=f"stripe_{name}",
            pipelines_dir=str(self.pipelines_dir),
            destination=dlt.destinations.duckdb(str(self.path)),
            dataset_name="raw_stripe",
        )

    def run(self, sandbox, resources: tuple[str, ...] = (), **options):
        options = {"requests_per_second": None, "retry_policy": FAST, **options}
        source = stripe_source(api_key=sandbox.api_key, base_url=sandbox.urls["stripe"], **options)
        if resources:
            source = source.with_resources(*resources)
        info = self.pipeline.run(source)
        assert not info.has_failed_jobs
        return info

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.path), read_only=True) as con:
            return con.sql(sql).fetchall()

    def counts(self) -> dict[str, int]:
        return {t: self.query(f"select count(*) from raw_stripe.{t}")[0][0] for t in TABLES}

    def column(self, table: str, column: str, key: str = "id") -> dict:
        return dict(self.query(f"select {key}, {column} from raw_stripe.{table}"))

    def snapshot(self) -> dict[str, list[tuple]]:
        """Every table's rows without dlt's columns, columns by name, rows sorted."""
        out = {}
        for table in TABLES:
            columns = sorted(
                name
                for (name,) in self.query(
                    "select column_name from information_schema.columns "
                    f"where table_schema = 'raw_stripe' and table_name = '{table}'"
                )
                if not name.startswith("_dlt")
            )
            rows = self.query(f"select {', '.join(columns)} from raw_stripe.{table}")
            out[table] = sorted(rows, key=repr)
        return out


@pytest.fixture
def warehouse(tmp_path):
    """Factory: `warehouse(name)` -> a Warehouse in this test's tmp_path."""
    return lambda name="main": Warehouse(tmp_path, name)


def epoch(value: datetime) -> int:
    return int(value.timestamp())


def stripe_status(sub: dict, at: datetime) -> str:
    """Stripe's status from the facts: a pending cancel and a collection pause keep it."""
    if sub["ended_at"] is not None and sub["ended_at"] <= at:
        return "canceled"
    if sub["trial_end"] is not None and sub["trial_end"] > at:
        return "trialing"
    return sub["dunning"] or "active"


def plain_active(facts: Scenario) -> list[dict]:
    """Stripe subscriptions with nothing going on at as_of, oldest first."""
    subs = [
        s
        for s in facts.for_system("subscriptions", "stripe")
        if s["ended_at"] is None
        and s["paused_at"] is None
        and s["coupon_id"] is None
        and s["dunning"] is None
        and (s["trial_end"] is None or s["trial_end"] <= AS_OF)
    ]
    return sorted(subs, key=lambda s: (s["created_at"], s["subscription_id"]))


def kept(records: list[dict]) -> list[dict]:
    """The records Stripe still answers for at AS_OF: not deleted, or deleted within the
    30 days its deletion event is kept."""
    oldest = AS_OF - timedelta(days=30)
    return [r for r in records if r["deleted_at"] is None or r["deleted_at"] >= oldest]


def requests(sandbox, since: int = 0) -> list[tuple[str, str]]:
    """(method, path) of the API requests the emulator answered, from index `since`."""
    log = sandbox.emulator("stripe").request_log[since:]
    return [(entry["method"], entry["path"]) for entry in log]


def full_listings(sandbox, since: int = 0) -> set[str]:
    """The list paths listed in full from request `since` on: a full listing's first
    window starts at 1970 (`LISTING_FLOOR`); an incremental run's read-back of changed
    objects lists only the `created` seconds around them."""
    log = sandbox.emulator("stripe").request_log[since:]
    return {e["path"] for e in log if str(e["params"].get("created[gte]")) == str(LISTING_FLOOR)}


# --------------------------------------------------------------------------- full load


def test_full_load_equals_the_scenario(sandbox, warehouse, facts):
    wh = warehouse()
    wh.run(sandbox)

    plans = facts.for_system("plans", "stripe")
    subs = facts.for_system("subscriptions", "stripe")
    invoices = facts.for_system("invoices", "stripe")
    emulator = sandbox.emulator("stripe")
    assert wh.counts() == {
        # Deleted customers and coupons are listed no more: those deleted within the 30
        # days of events Stripe keeps come from their deletion events, older ones never.
        "customers": len(kept(facts.for_system("customers", "stripe"))),
        "subscriptions": len(subs),
        "prices": len(plans),
        "products": len({p["product_id"] for p in plans}),
        "coupons": len(kept(facts.for_system("coupons", "stripe"))),
        "invoices": len(invoices),
        "events": len(emulator.events.events),  # the 30 days of history Stripe keeps
    }
    for table in TABLES:  # nothing doubled
        assert wh.query(f"select count(distinct id) = count(*) from raw_stripe.{table}") == [
            (True,)
        ]
    # One table per resource (dagster-dlt: one asset each), no child tables.
    loaded = {
        name
        for (name,) in wh.query(
            "select table_name from information_schema.tables where table_schema = 'raw_stripe'"
        )
    }
    assert {t for t in loaded if not t.startswith("_dlt")} == {*TABLES, "syncs"}

    # Subscriptions: status at as_of, customer, price and quantity, for every one.
    assert wh.column("subscriptions", "status") == {
        s["subscription_id"]: stripe_status(s, AS_OF) for s in subs
    }
    items = {k: orjson.loads(v) for k, v in wh.column("subscriptions", "items__data").items()}
    assert {
        k: (customer, items[k][0]["price"]["id"], items[k][0]["quantity"])
        for k, customer in wh.column("subscriptions", "customer").items()
    } == {s["subscription_id"]: (s["customer_id"], s["plan_id"], s["quantity"]) for s in subs}
    # Every further price is an item of its own; a metered one has no quantity.
    metered = {p["plan_id"] for p in plans if p["usage_type"] == "metered"}
    assert {
        k: [(i["price"]["id"], i.get("quantity")) for i in v[1:]] for k, v in items.items()
    } == {
        s["subscription_id"]: [
            (i["plan_id"], None if i["plan_id"] in metered else i["quantity"])
            for i in s["items"] or []
        ]
        for s in subs
    }
    assert any(i["price"]["id"] in metered for v in items.values() for i in v)
    # Discounts expanded by the listing (ids otherwise): each names its coupon, in order.
    discounts = {k: orjson.loads(v) for k, v in wh.column("subscriptions", "discounts").items()}
    assert {k: [d["source"]["coupon"] for d in v] for k, v in discounts.items()} == {
        s["subscription_id"]: [s["coupon_id"], *(s["extra_coupon_ids"] or [])]
        if s["coupon_id"]
        else []
        for s in subs
    }
    listed = [e["params"] for e in emulator.request_log if e["path"] == "/v1/subscriptions"]
    assert listed and all("data.discounts" in str(p) for p in listed)
    assert wh.column("subscriptions", "ended_at") == {  # a scheduled end is not an end yet
        s["subscription_id"]: epoch(s["ended_at"])
        if s["ended_at"] is not None and s["ended_at"] <= AS_OF
        else None
        for s in subs
    }
    # Money in the API's minor units, JPY (no minor unit) included.
    # A tiered or volume price has no unit amount: its tiers (expanded by the listing) do.
    assert wh.column("prices", "(currency, unit_amount)") == {
        p["plan_id"]: (
            p["currency"].lower(),
            None if p["tiers"] else to_minor_units(p["unit_amount"], p["currency"]),
        )
        for p in plans
    }
    tiers = {k: orjson.loads(v) if v else None for k, v in wh.column("prices", "tiers").items()}
    assert {k: v for k, v in tiers.items() if v} == {
        p["plan_id"]: [
            {
                "flat_amount": to_minor_units(t["flat_amount"], p["currency"]),
                "flat_amount_decimal": str(to_minor_units(t["flat_amount"], p["currency"])),
                "unit_amount": to_minor_units(t["unit_amount"], p["currency"]),
                "unit_amount_decimal": str(to_minor_units(t["unit_amount"], p["currency"])),
                "up_to": t["up_to"],
            }
            for t in p["tiers"]
        ]
        for p in plans
        if p["tiers"]
    }
    assert wh.column("prices", "unit_amount")["price_pro_monthly_jpy"] == 4900
    assert wh.column("prices", "unit_amount")["price_pro_monthly_usd"] == 4900
    assert wh.column("invoices", "(customer, total, status)") == {
        i["invoice_id"]: (
            i["customer_id"],
            to_minor_units(i["total"], i["currency"]),
            INVOICE_STATUS[i["status"]],  # past due is Stripe's `open`
        )
        for i in invoices
    }
    assert wh.column("coupons", "percent_off") == {
        c["coupon_id"]: float(c["percent_off"]) for c in kept(facts.for_system("coupons", "stripe"))
    }
    # Lists stay JSON text in their row: the subscription's single item and its price.
    jpy = [v[0] for v in items.values() if v[0]["price"]["id"] == "price_pro_monthly_jpy"]
    assert jpy and jpy[0]["price"]["unit_amount"] == 4900 and jpy[0]["current_period_end"]
    # Events say what they are about and carry their object as JSON.
    assert wh.column("events", "(type, data__object_id)") == {
        e["id"]: (e["type"], e["data"]["object"]["id"]) for e in emulator.events.events
    }
    event = emulator.events.events[-1]
    loaded = wh.column("events", "data__object")[event["id"]]
    assert orjson.loads(loaded) == event["data"]["object"]


# --------------------------------------------------------------------------- incremental


def test_incremental_run_refetches_only_changed_objects(sandbox, warehouse, facts, caplog):
    wh = warehouse()
    wh.run(sandbox)
    before = wh.counts()
    emulator = sandbox.emulator("stripe")
    events_before = len(emulator.events.events)

    client = stripe_client(sandbox.api_key, sandbox.urls["stripe"])
    cancel, pause, discount = (s["subscription_id"] for s in plain_active(facts)[:3])
    client.v1.subscriptions.cancel(cancel)
    client.v1.subscriptions.update(pause, params={"pause_collection": {"behavior": "void"}})
    client.v1.subscriptions.update(discount, params={"discounts": [{"coupon": "SAVE50"}]})
    # An event about a coupon Stripe answers 404 for (deleted since) is skipped; a
    # customer's deletion event carries what the table keeps of it, nothing is refetched.
    emulator.events.add(emulator.now(), "coupon.updated", {"id": "GONE", "object": "coupon"}, None)
    customer = {"id": plain_active(facts)[3]["customer_id"], "object": "customer"}
    emulator.events.add(emulator.now(), "customer.deleted", {**customer, "email": "x@y.z"}, None)
    # A customer-level discount's event is about the customer it names: refetched.
    discounted = plain_active(facts)[4]["customer_id"]
    customer_discount = {"id": "di_x", "object": "discount", "customer": discounted}
    emulator.events.add(emulator.now(), "customer.discount.created", customer_discount, None)
    seen = len(emulator.request_log)

    wh.run(sandbox)

    sent = sandbox.emulator("stripe").request_log[seen:]
    # The subscriptions' events carry their creation second: read back from the list, in
    # `created` windows no wider than theirs (no full listing); the rest by id.
    lists = [entry for entry in sent if entry["path"].count("/") == 2]
    assert {entry["path"] for entry in lists} == {"/v1/events", "/v1/subscriptions"}
    stamps = wh.column("subscriptions", "created")
    created = {ident: stamps[ident] for ident in (cancel, pause, discount)}
    for entry in lists:
        if entry["path"] == "/v1/subscriptions":
            lo, hi = int(entry["params"]["created[gte]"]), int(entry["params"]["created[lt]"])
            assert min(created.values()) <= lo and hi <= max(created.values()) + 1
    assert {entry["path"] for entry in sent if entry["path"].count("/") == 3} == {
        "/v1/coupons/GONE",
        f"/v1/customers/{discounted}",
    }
    assert wh.column("subscriptions", "(status, ended_at)")[cancel] == ("canceled", epoch(AS_OF))
    assert wh.column("subscriptions", "pause_collection__behavior")[pause] == "void"
    refetched = orjson.loads(wh.column("subscriptions", "discounts")[discount])
    assert [d["source"]["coupon"] for d in refetched] == ["SAVE50"]  # expanded on retrieve
    assert "stripe /v1/coupons/GONE: gone (404), skipped" in caplog.text
    assert wh.column("customers", "(deleted, email)")[customer["id"]] == (True, "x@y.z")
    assert wh.counts() == before | {"events": events_before + 6}
    # A run with nothing new refetches nothing and changes nothing.
    seen = len(sandbox.emulator("stripe").request_log)
    snapshot = wh.snapshot()
    wh.run(sandbox)
    assert {path for _, path in requests(sandbox, seen)} == {"/v1/events"}
    assert wh.snapshot() == snapshot


def test_update_while_paging_is_loaded_by_this_run_or_the_next(
    sandbox, warehouse, facts, monkeypatch
):
    """Two pages of subscriptions at a time: after the first page, one subscription on it
    and one on the last page are canceled. The later one is read by this run; the one
    already read is refetched by the next run through its event."""
    client = stripe_client(sandbox.api_key, sandbox.urls["stripe"])
    late = plain_active(facts)[0]["subscription_id"]  # oldest: listed last
    written: list[str] = []
    original_get = StripeApi.get

    def get_then_write(self, path, **params):
        body, headers = original_get(self, path, **params)
        if path == "/v1/subscriptions" and not written:
            early = next(s["id"] for s in body["data"] if s["status"] != "canceled")
            for ident in (early, late):
                client.v1.subscriptions.cancel(ident)
                written.append(ident)
        return body, headers

    monkeypatch.setattr(StripeApi, "get", get_then_write)
    wh = warehouse()
    wh.run(sandbox, resources=("subscriptions",), page_size=2)
    early = written[0]
    statuses = wh.column("subscriptions", "status")
    assert statuses[late] == "canceled"  # its page came after the write
    assert statuses[early] != "canceled"  # read before the write: this run has the old one

    wh.run(sandbox, resources=("subscriptions",), page_size=2)
    statuses = wh.column("subscriptions", "status")
    assert statuses[early] == statuses[late] == "canceled"
    assert len(statuses) == len(facts.for_system("subscriptions", "stripe"))


# --------------------------------------------------------------------------- faults


def test_rate_limits_5xx_and_dropped_connections_change_nothing(
    serve_scenario, doc, sandbox, warehouse
):
    clean = warehouse("clean")
    clean.run(sandbox)

    faults = FaultConfig(rate_429=0.3, rate_500=0.04, rate_drop=0.04, seed=5, retry_after=1)
    stormy = serve_scenario(doc, systems=("stripe",), faults={"stripe": faults})
    waits: list[float] = []
    faulty = warehouse("faulty")
    faulty.run(stormy, retry_policy=RetryPolicy(base_delay=0.001, sleep=waits.append))

    answered = [entry["fault"] for entry in stormy.emulator("stripe").request_log]
    assert {"429", "500", "drop"} <= set(answered)
    assert 1.0 in waits  # 429: Retry-After honoured (the SDK alone would not retry)
    assert faulty.snapshot() == clean.snapshot()


def test_killed_runs_resume_without_gaps_or_duplicates(serve_scenario, doc, warehouse, facts):
    reference = warehouse("reference")
    reference.run(serve_scenario(doc, systems=("stripe",)))

    # A first run dies midway (the 25th request gets a 429 no retry is left for).
    dying = serve_scenario(
        doc,
        systems=("stripe",),
        faults={"stripe": FaultConfig(script=deque([None] * 24 + ["429"]))},
    )
    wh = warehouse()
    with pytest.raises(PipelineStepFailed):
        wh.run(dying, retry_policy=RetryPolicy(max_attempts=1))
    wh.run(dying)
    assert wh.snapshot() == reference.snapshot()

    # An incremental run dies on a refetch (the canceled subscriptions are read back from
    # their list, by `created` windows); the re-run reads the same events again.
    client = stripe_client(dying.api_key, dying.urls["stripe"])
    canceled = [s["subscription_id"] for s in plain_active(facts)[:4]]
    for ident in canceled:
        client.v1.subscriptions.cancel(ident)
    dying.emulator("stripe").faults = FaultConfig(
        only_paths=["/v1/subscriptions"], script=deque(["429"])
    )
    with pytest.raises(PipelineStepFailed):
        wh.run(dying, retry_policy=RetryPolicy(max_attempts=1))
    assert {wh.column("subscriptions", "status")[i] for i in canceled} == {"active"}
    wh.run(dying)
    assert {wh.column("subscriptions", "status")[i] for i in canceled} == {"canceled"}
    assert wh.counts()["subscriptions"] == len(facts.for_system("subscriptions", "stripe"))


# --------------------------------------------------------------------------- event window


def test_cursor_older_than_the_event_window_falls_back_to_a_full_listing(
    sandbox, warehouse, facts, caplog
):
    caplog.set_level(logging.INFO, logger="retention.extract.stripe")
    wh = warehouse()
    wh.run(sandbox)
    listed = {"/v1/subscriptions", "/v1/customers", "/v1/invoices", "/v1/prices"}

    sandbox.clock.advance(timedelta(days=29))  # cursor ~29 days old: events still kept
    seen = len(sandbox.emulator("stripe").request_log)
    wh.run(sandbox)
    assert not listed & full_listings(sandbox, seen)
    assert "30-day event window" not in caplog.text

    # 31 days past the last run: the events since its cursor may be gone. (Advancing the
    # clock also creates events for what it made true, so the wait is counted from the
    # last run's cursor, not from the first.)
    sandbox.clock.advance(timedelta(days=31))
    seen = len(sandbox.emulator("stripe").request_log)
    wh.run(sandbox)
    assert listed <= full_listings(sandbox, seen)
    assert "stripe subscriptions: full listing" in caplog.text
    assert "beyond Stripe's 30-day event window" in caplog.text
    counts = wh.counts()
    assert counts["subscriptions"] == len(facts.for_system("subscriptions", "stripe"))
    assert counts["invoices"] == len(facts.for_system("invoices", "stripe"))

    seen = len(sandbox.emulator("stripe").request_log)  # the fresh cursor: incremental again
    wh.run(sandbox)
    assert not listed & full_listings(sandbox, seen)


def test_a_quiet_account_stays_incremental_past_the_window(serve_scenario, warehouse, caplog):
    """Its newest event is from its only (yearly) subscription's start, 10 days before the
    first run; 25 days later nothing else has happened. The cursor follows Stripe's clock,
    not that event, so the second run reads events instead of listing everything."""
    caplog.set_level(logging.INFO, logger="retention.extract.stripe")
    doc = small_scenario(("stripe",))
    doc["plans"] = [{**p, "interval": "year"} for p in doc["plans"]]
    live = "2026-06-20T12:00:00Z"
    doc["customers"] = [c for c in doc["customers"] if c["customer_id"].endswith("-live")]
    doc["subscriptions"] = [
        {**s, "created_at": live, "activated_at": live}
        for s in doc["subscriptions"]
        if s["subscription_id"].endswith("-live")
    ]
    sandbox = serve_scenario(doc)
    wh = warehouse()
    wh.run(sandbox)
    assert sandbox.emulator("stripe").events.events  # the subscription's creation

    sandbox.clock.advance(timedelta(days=25))
    seen = len(sandbox.emulator("stripe").request_log)
    wh.run(sandbox)
    paths = {path for _, path in requests(sandbox, seen)}
    assert paths == {"/v1/events"}
    assert "30-day event window" not in caplog.text
    assert len(wh.column("subscriptions", "status")) == 1


# --------------------------------------------------------------------------- secrets


def test_api_key_stays_out_of_warehouse_and_logs(
    serve_scenario, doc, warehouse, caplog, monkeypatch
):
    key = "sk_test_" + secrets.token_hex(16)
    sandbox = serve_scenario(doc, systems=("stripe",), api_key=key)
    monkeypatch.setenv("SOURCES__STRIPE__API_KEY", key)  # through dlt config, not an argument
    caplog.set_level(logging.DEBUG)
    wh = warehouse()
    wh.pipeline.run(
        stripe_source(base_url=sandbox.urls["stripe"], requests_per_second=None, retry_policy=FAST)
    )
    assert wh.counts()["subscriptions"] > 0

    with duckdb.connect(str(wh.path), read_only=True) as con:
        tables = con.sql(
            "select table_schema, table_name from information_schema.tables"
            " where table_schema like 'raw_stripe%'"
        ).fetchall()
        for schema, table in tables:
            text = str(con.sql(f'select * from "{schema}"."{table}"').fetchall())
            assert key not in text, f"{schema}.{table}"
    assert key not in caplog.text
    for path in wh.pipelines_dir.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


# --------------------------------------------------------------------------- many items


def _item(ident: str) -> dict:
    return {"id": ident, "object": "subscription_item", "subscription": "sub_big", "discounts": []}


class ManyItemsHandler(BaseHTTPRequestHandler):
    """A Stripe account with one subscription whose embedded item list is cut short
    (`has_more`), as Stripe embeds only a subscription's first items."""

    requests: ClassVar[list[tuple[str, dict]]] = []

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        self.requests.append((url.path, query))
        empty = {"object": "list", "data": [], "has_more": False, "url": url.path}
        if url.path == "/v1/subscriptions":
            items = {"object": "list", "data": [_item("si_1")], "has_more": True, "url": "/x"}
            sub = {
                "id": "sub_big",
                "object": "subscription",
                "created": 1_700_000_000,
                "items": items,
                "discounts": [],
            }
            body = {**empty, "data": [sub]}
        elif url.path == "/v1/subscription_items" and query.get("subscription") == "sub_big":
            body = {**empty, "data": [_item("si_1"), _item("si_2"), _item("si_3")]}
        else:
            body = empty
        data = orjson.dumps(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        return


def test_a_subscription_with_more_items_than_stripe_embeds_gets_them_all(warehouse):
    server = ThreadingHTTPServer(("127.0.0.1", 0), ManyItemsHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    account = SimpleNamespace(
        api_key="sk_test_many", urls={"stripe": f"http://127.0.0.1:{server.server_address[1]}"}
    )
    try:
        wh = warehouse()
        wh.run(account, ("subscriptions",))
    finally:
        server.shutdown()
        server.server_close()
    items = orjson.loads(wh.column("subscriptions", "items__data")["sub_big"])
    assert [item["id"] for item in items] == ["si_1", "si_2", "si_3"]
    assert wh.column("subscriptions", "items__has_more")["sub_big"] is False
    [(_, query)] = [r for r in ManyItemsHandler.requests if r[0] == "/v1/subscription_items"]
    assert query["subscription"] == "sub_big" and query["expand[0]"] == "data.discounts"
