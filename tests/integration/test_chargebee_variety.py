"""The variety of real Chargebee accounts, on a site of each Product Catalog: a small
hand-written scenario with archived prices, a deleted coupon, several coupons, a
multi-cycle term, a scheduled plan change, a package price, a deleted customer and a
deleted subscription, a transferred subscription, and an invoice in every status.
Served by the sandbox, extracted by the real source (twice: the second run incremental,
after a deletion), modelled by real dbt; the marts equal tests/oracle.py's facts and
staging carries the deletions, the transfer and the invoice statuses."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx
import pytest

from orchestration.extract import run_extract
from sandbox.exit_files import write_exit_session_files
from sandbox.scenario import validate_scenario
from sandbox.server import DEFAULT_API_KEY
from tests.conformance.chargebee_schema import Report
from tests.integration.test_conformance_chargebee import crawl
from tests.integration.test_end_to_end_marts import marts
from tests.oracle import subscription_facts, wrong_fields
from tests.small_scenarios import one_subscription_per_system

pytestmark = pytest.mark.integration

CB = "chargebee"
STATUSES = ("draft", "open", "past_due", "paid", "uncollectible", "void")


def _at(day: str) -> str:
    return f"{day}T00:00:00Z"


def variety() -> dict:
    """One subscription per system (the shared baseline) plus Chargebee's variety."""
    doc = one_subscription_per_system()

    def plan(plan_id: str, product: str, amount: str, **extra) -> dict:
        return {
            "billing_system": CB,
            "plan_id": plan_id,
            "product_id": product,
            "product_name": product.title(),
            "currency": "USD",
            "unit_amount": amount,
            "interval": "month",
            "interval_count": 1,
            **extra,
        }

    doc["plans"] += [
        plan("Basic-USD-Monthly", "basic", "5.00"),
        plan("Legacy-USD-Monthly", "legacy", "8.00", archived_at=_at("2026-02-01")),
        plan("Pack-USD-Monthly", "pack", "25.00", pricing_model="package", package_size=5),
    ]
    doc["coupons"] = [
        {"billing_system": CB, "coupon_id": "TEN", "percent_off": "10", "duration": "forever"},
        {
            "billing_system": CB,
            "coupon_id": "FIVE",
            "amount_off": "5.00",
            "currency": "USD",
            "duration": "forever",
        },
        {
            "billing_system": CB,
            "coupon_id": "GONE",
            "percent_off": "20",
            "duration": "forever",
            "deleted_at": _at("2026-03-01"),
        },
    ]
    customers = ["cb-cust-2", "cb-cust-3", "cb-cust-4", "cb-cust-5", "cb-cust-6"]
    doc["customers"] += [
        {"billing_system": CB, "customer_id": c, "created_at": _at("2025-05-01")} for c in customers
    ]
    doc["customers"].append(
        {
            "billing_system": CB,
            "customer_id": "cb-cust-gone",
            "created_at": _at("2025-05-01"),
            "deleted_at": _at("2026-05-01"),
        }
    )

    def sub(sub_id: str, customer: str, plan_id: str, start: str, **extra) -> dict:
        return {
            "billing_system": CB,
            "subscription_id": sub_id,
            "customer_id": customer,
            "plan_id": plan_id,
            "quantity": 1,
            "created_at": _at(start),
            "activated_at": _at(start),
            **extra,
        }

    doc["subscriptions"] += [
        sub(
            "cb-sub-coupons",
            "cb-cust-2",
            "Pro-USD-Monthly",
            "2026-01-10",
            quantity=2,
            coupon_id="TEN",
            extra_coupon_ids=["FIVE"],
            term_cycles=12,
        ),
        sub(
            "cb-sub-pending",
            "cb-cust-3",
            "Pro-USD-Monthly",
            "2026-02-15",
            pending_plan_id="Basic-USD-Monthly",
            pending_quantity=3,
        ),
        sub("cb-sub-archived", "cb-cust-4", "Legacy-USD-Monthly", "2025-11-20", coupon_id="GONE"),
        sub(
            "cb-sub-transferred",
            "cb-cust-5",
            "Basic-USD-Monthly",
            "2025-09-10",
            ended_at=_at("2026-04-10"),
            transferred_at=_at("2026-04-10"),
        ),
        sub("cb-sub-pack", "cb-cust-6", "Pack-USD-Monthly", "2026-03-03", quantity=12),
        sub(
            "cb-sub-deleted",
            "cb-cust-gone",
            "Pro-USD-Monthly",
            "2025-06-01",
            canceled_at=_at("2026-03-01"),
            ended_at=_at("2026-03-31"),
            deleted_at=_at("2026-04-15"),
        ),
    ]
    doc["invoices"] = [
        {
            "billing_system": CB,
            "invoice_id": f"cb-inv-{status}",
            "customer_id": "cb-cust-2",
            "subscription_id": "cb-sub-coupons",
            "currency": "USD",
            "total": "15.00",
            "status": status,
            "created_at": _at(f"2026-0{month}-10"),
            "paid_at": _at(f"2026-0{month}-10") if status == "paid" else None,
        }
        for month, status in enumerate(STATUSES, start=1)
    ]
    # Stripe and Recurly need a coupon and an invoice each for their staging to build.
    for system, customer in (("stripe", "cus_1"), ("recurly", "acct-1")):
        doc["coupons"].append(
            {"billing_system": system, "coupon_id": "once", "percent_off": "5", "duration": "once"}
        )
        doc["invoices"].append(
            {
                "billing_system": system,
                "invoice_id": f"{system}-inv-1",
                "customer_id": customer,
                "currency": "USD",
                "total": "10.00",
                "status": "paid",
                "created_at": _at("2026-02-05"),
                "paid_at": _at("2026-02-05"),
            }
        )
    doc["exit_sessions"] = [
        {
            "session_id": "ses-1",
            "billing_system": CB,
            "billing_id": "cb-sub-coupons",
            "started_at": _at("2026-06-20"),
        }
    ]
    return doc


def _rows(database: Path, sql: str) -> dict[str, tuple]:
    """Rows keyed by their first column."""
    with duckdb.connect(str(database)) as con:
        return {row[0]: row[1:] for row in con.sql(sql).fetchall()}


@pytest.fixture(params=["2.0", "1.0"], ids=["catalog_2", "catalog_1"])
def site(request, tmp_path, serve_scenario, monkeypatch, dbt):
    """The variety served on a site of each catalog, extracted and built twice: the second
    run incremental, after the merchant deleted a customer (and its ended subscription)."""
    doc = variety() | {"chargebee_product_catalog": request.param}
    sandbox = serve_scenario(doc)
    write_exit_session_files(validate_scenario(doc), tmp_path / "drop")
    for system, url in sandbox.urls.items():
        monkeypatch.setenv(f"SOURCES__{system.upper()}__BASE_URL", url)
    database = tmp_path / "warehouse.duckdb"

    def build() -> None:
        results = run_extract(
            database=database, exit_sessions_folder=tmp_path / "drop", pipelines_dir=tmp_path
        )
        assert [r.error for r in results] == [None] * 4
        # unit tests need every system's full raw columns, which this small scenario lacks
        dbt(database, "build", "--exclude", "resource_type:unit_test")

    build()
    return request.param, doc, sandbox, database, build


def test_the_variety_is_served_as_chargebee_sends_it(site):
    catalog, _, sandbox, *_ = site
    base = sandbox.urls[CB] + "/api/v2"
    with httpx.Client(base_url=base, auth=(DEFAULT_API_KEY, "")) as api:
        report = Report()
        listed = crawl(api, catalog, report)
        assert report.violations == []
        subs = {e["subscription"]["id"]: e["subscription"] for e in listed["subscriptions"]}
        assert subs["cb-sub-transferred"]["status"] == "transferred"
        assert "cancelled_at" not in subs["cb-sub-transferred"]
        assert subs["cb-sub-deleted"]["deleted"] is True
        assert [c["coupon_id"] for c in subs["cb-sub-coupons"]["coupons"]] == ["TEN", "FIVE"]
        assert subs["cb-sub-coupons"]["remaining_billing_cycles"] == 6  # 6th of 12 cycles
        pending = subs["cb-sub-pending"]
        assert pending["has_scheduled_changes"] is True
        assert pending["changes_scheduled_at"] == pending["current_term_end"]
        scheduled = api.get("/subscriptions/cb-sub-pending/retrieve_with_scheduled_changes")
        changed = scheduled.raise_for_status().json()["subscription"]
        plan_of = (
            (
                lambda s: (
                    s["subscription_items"][0]["item_price_id"],
                    s["subscription_items"][0]["quantity"],
                )
            )
            if catalog == "2.0"
            else (lambda s: (s["plan_id"], s["plan_quantity"]))
        )
        assert plan_of(pending) == ("Pro-USD-Monthly", 1)
        assert plan_of(changed) == ("Basic-USD-Monthly", 3)
        refused = api.get("/subscriptions/cb-sub-coupons/retrieve_with_scheduled_changes")
        assert refused.status_code == 400
        # deleted records: listed only when asked, not retrievable
        default = api.get("/subscriptions", params={"limit": 100}).json()["list"]
        assert "cb-sub-deleted" not in {e["subscription"]["id"] for e in default}
        assert api.get("/customers/cb-cust-gone").status_code == 404
        coupons = {e["coupon"]["id"]: e["coupon"]["status"] for e in listed["coupons"]}
        assert coupons == {"TEN": "active", "FIVE": "active", "GONE": "deleted"}
        prices = listed["item_prices" if catalog == "2.0" else "plans"]
        status = {p["id"]: p["status"] for e in prices for p in e.values()}
        assert status["Legacy-USD-Monthly"] == "archived" and status["Pro-USD-Monthly"] == "active"
        invoices = {e["invoice"]["id"]: e["invoice"]["status"] for e in listed["invoices"]}
        assert [invoices[f"cb-inv-{s}"] for s in STATUSES] == [
            "pending",
            "posted",
            "payment_due",
            "paid",
            "not_paid",
            "voided",
        ]


def test_the_marts_and_staging_equal_the_facts(site):
    _, doc, sandbox, database, build = site
    facts = {
        key: value
        for key, value in subscription_facts(validate_scenario(doc)).items()
        if key[0] == CB
    }
    got = {
        (row["billing_system"], row["subscription_id"]): row
        for row in marts(database, "dim_subscriptions")
        if row["billing_system"] == CB
    }
    assert got.keys() == facts.keys()
    assert not wrong_fields(got, facts)
    assert got[(CB, "cb-sub-pending")]["plan_id"] == "Pro-USD-Monthly"  # never the pending plan
    assert got[(CB, "cb-sub-pack")]["mrr"] == 75  # 3 packages of 5 at 25.00

    subs = _rows(
        database,
        "select subscription_id, status, canceled_at, ended_at, coupon_id, is_deleted "
        "from staging.stg_chargebee__subscriptions",
    )
    assert subs["cb-sub-transferred"][:3] == ("canceled", None, datetime(2026, 4, 10, tzinfo=UTC))
    assert subs["cb-sub-coupons"][3:] == ("TEN", False)
    assert subs["cb-sub-archived"][3:] == ("GONE", False)
    assert {s for s, row in subs.items() if row[4]} == {"cb-sub-deleted"}
    invoices = _rows(
        database, "select invoice_id, status, invoice_type from staging.stg_chargebee__invoices"
    )
    assert {i: row for i, row in invoices.items()} == {
        f"cb-inv-{s}": (s, "charge") for s in STATUSES
    }
    customers = "select customer_id, is_deleted from staging.stg_chargebee__customers"
    assert {c for c, (deleted,) in _rows(database, customers).items() if deleted} == {
        "cb-cust-gone"
    }

    # The merchant deletes a customer with an ended subscription: the next, incremental,
    # run lists with include_deleted=true, so the deletion arrives.
    store = sandbox.emulator(CB).store
    now = sandbox.clock.now()
    sub = store.get("subscriptions", "cb-sub-transferred")
    customer = store.get("customers", "cb-cust-5")
    sub["deleted_at"] = customer["deleted_at"] = now
    store.touch("subscriptions", sub)
    store.touch("customers", customer)
    sandbox.emulator(CB).request_log.clear()
    build()
    listings = [
        r
        for r in sandbox.emulator(CB).request_log
        if r["path"].endswith(("/subscriptions", "/customers")) and r["params"] != {"limit": "1"}
    ]
    assert listings and all(
        r["params"].get("include_deleted") == "true" and "updated_at[after]" in r["params"]
        for r in listings
    )
    subs = _rows(
        database, "select subscription_id, is_deleted from staging.stg_chargebee__subscriptions"
    )
    assert {s for s, (deleted,) in subs.items() if deleted} == {
        "cb-sub-deleted",
        "cb-sub-transferred",
    }
    assert {c for c, (deleted,) in _rows(database, customers).items() if deleted} == {
        "cb-cust-gone",
        "cb-cust-5",
    }
