"""The variety of a years-old Stripe account, end to end on a small hand-written scenario
(tests/stripe_variety.py): served by the sandbox exactly as API 2026-10-28.endive sends it,
extracted by the real source through the official SDK, modelled by real dbt (DuckDB, and
Postgres where a server answers), and compared with tests/oracle.py's facts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from billing_clients.sdk import stripe_client
from sandbox.scenario import validate_scenario
from tests.conformance.stripe_schema import StripeSchema
from tests.oracle import subscription_facts, wrong_fields
from tests.stripe_variety import EXTRAS, INVOICE_STATUSES, stripe_variety
from tests.warehouse import extract_and_build, rows

pytestmark = pytest.mark.integration
# The models the comparisons read, what they are built from (the fx_rates seed too), and
# their tests.
SELECT = ("+dim_subscriptions", "stg_stripe__invoices", "stg_stripe__customers")


@pytest.fixture
def served(serve_scenario):
    return serve_scenario(stripe_variety())


@pytest.fixture
def warehouse(served, tmp_path, monkeypatch, dbt) -> Path:
    return extract_and_build(served, tmp_path, monkeypatch, dbt, SELECT)


def stripe_facts() -> dict[str, dict]:
    facts = subscription_facts(validate_scenario(stripe_variety()))
    return {sub: fact for (system, sub), fact in facts.items() if system == "stripe"}


def assert_equal_to_the_facts(got: dict[str, dict]) -> None:
    """Plan, currency, quantity, MRR, period and coupon of every Stripe subscription."""
    want = stripe_facts()
    assert got.keys() == want.keys()
    wrong = wrong_fields(got, want)
    assert not wrong, wrong


def test_every_variety_models_as_the_facts_state(warehouse):
    got = rows(warehouse, "select * from marts.dim_subscriptions where billing_system = 'stripe'")
    assert_equal_to_the_facts({row["subscription_id"]: row for row in got})
    by_id = {row["subscription_id"]: row for row in got}
    # The variety is what makes these right, not a coincidence of the base case:
    assert (by_id["sub_eur"]["currency"], by_id["sub_eur"]["unit_amount_local"]) == ("EUR", 9)
    assert (by_id["sub_jpy"]["currency"], by_id["sub_jpy"]["unit_amount_local"]) == ("JPY", 1500)
    assert by_id["sub_eur"]["coupon_id"] == "TEN"  # the first of two discounts
    assert by_id["sub_loyal"]["coupon_id"] == "LOYAL"  # the customer's discount
    assert by_id["sub_loyal_own"]["coupon_id"] == "TEN"  # its own beats the customer's
    assert by_id["sub_pending"]["plan_id"] == "price_basic"  # not the scheduled price_pro
    assert by_id["sub_legacy"]["plan_id"] == "price_legacy"  # archived, still billing


def test_invoices_carry_the_neutral_status_and_type(warehouse):
    got = {
        row["invoice_id"]: (row["status"], row["invoice_type"])
        for row in rows(warehouse, "select * from staging.stg_stripe__invoices")
    }
    want = {invoice_id: (status, "charge") for invoice_id, status in INVOICE_STATUSES.items()}
    assert got == {**want, "in_two_items": ("paid", "charge"), "in_many": ("paid", "charge")}
    # Every line, also past the first page the invoice embeds, one per item.
    [lines] = [
        row["lines__data"]
        for row in rows(warehouse, "select * from raw_stripe.invoices where id = 'in_many'")
    ]
    items = [
        line["parent"]["subscription_item_details"]["subscription_item"]
        for line in json.loads(lines)
    ]
    assert len(items) == len(set(items)) == 1 + len(EXTRAS)


def test_deleted_customers_stay_flagged(warehouse):
    got = {
        row["customer_id"]: row
        for row in rows(warehouse, "select * from staging.stg_stripe__customers")
    }
    deleted = {customer for customer, row in got.items() if row["is_deleted"]}
    assert deleted == {"cus_left", "cus_long_gone"}
    # Deleted within the event window: its last state, from the `customer.deleted` event.
    assert got["cus_left"]["email"] == "cus_left@example.com"
    assert got["cus_left"]["created_at"] is not None
    # Deleted long before the first sync: only the subscription that names it is left.
    assert got["cus_long_gone"]["email"] is None


def test_an_incremental_run_keeps_the_deletions_and_the_currency_options(
    served, warehouse, tmp_path, monkeypatch, dbt
):
    extract_and_build(served, tmp_path, monkeypatch, dbt, SELECT)
    deleted = rows(
        warehouse,
        "select customer_id from staging.stg_stripe__customers where is_deleted order by 1",
    )
    assert [row["customer_id"] for row in deleted] == ["cus_left", "cus_long_gone"]
    got = rows(warehouse, "select * from marts.dim_subscriptions where billing_system = 'stripe'")
    assert_equal_to_the_facts({row["subscription_id"]: row for row in got})


def test_the_variety_is_served_as_the_pinned_version_sends_it(served):
    """Every object of the variety passes the SDK's classes; the shapes a reader depends on
    are there: a deleted customer's stub, deleted coupons unlisted, archived prices listed
    inactive, currency options only when expanded, one invoice line per item."""
    client = stripe_client(served.api_key, served.urls["stripe"], retries=0)

    def get(path: str, **params) -> dict:
        return client.raw_request("get", path, **params).data

    schema = StripeSchema()
    served_objects = [
        get("/v1/customers", limit=100),
        get("/v1/customers/cus_left"),
        get("/v1/customers/cus_loyal"),
        get("/v1/coupons", limit=100),
        get("/v1/prices", limit=100),
        get("/v1/prices", limit=100, expand=["data.currency_options"]),
        get("/v1/subscriptions", limit=100, status="all", expand=["data.discounts"]),
        get("/v1/invoices", limit=100),
        get("/v1/events", limit=100),
        get("/v1/subscriptions/sub_pending", expand=["schedule"]),
    ]
    violations = [v for obj in served_objects for v in schema.validate(obj)]
    assert not violations, violations[:10]
    customers, stub, loyal, coupons, prices, expanded, subs, invoices, events, pending = (
        served_objects
    )
    assert "cus_left" not in {c["id"] for c in customers["data"]}
    assert stub == {"id": "cus_left", "object": "customer", "deleted": True}
    assert loyal["discount"]["source"]["coupon"] == "LOYAL"
    assert loyal["discount"]["subscription"] is None
    assert "GONE" not in {c["id"] for c in coupons["data"]}
    assert {p["id"]: p["active"] for p in prices["data"]}["price_legacy"] is False
    assert not any("currency_options" in p for p in prices["data"])
    options = {p["id"]: p["currency_options"] for p in expanded["data"]}["price_basic"]
    assert {code: o["unit_amount"] for code, o in options.items()} == {
        "usd": 1000,
        "eur": 900,
        "jpy": 1500,
    }
    by_sub = {s["id"]: s for s in subs["data"]}
    assert [d["source"]["coupon"] for d in by_sub["sub_eur"]["discounts"]] == ["TEN", "GONE"]
    assert by_sub["sub_eur"]["currency"] == "eur"
    schedule = pending["schedule"]  # the change waits in the schedule's next phase
    assert [p["items"][0]["price"] for p in schedule["phases"]] == ["price_basic", "price_pro"]
    assert schedule["phases"][1]["start_date"] == pending["items"]["data"][0]["current_period_end"]
    assert get(f"/v1/subscription_schedules/{schedule['id']}") == schedule
    assert pending["items"]["data"][0]["price"]["id"] == "price_basic"
    lines = {i["id"]: i["lines"] for i in invoices["data"]}
    assert [line["quantity"] for line in lines["in_two_items"]["data"]] == [3, 12]
    assert sum(line["amount"] for line in lines["in_two_items"]["data"]) == 15000
    assert (len(lines["in_many"]["data"]), lines["in_many"]["has_more"]) == (10, True)
    rest = get(lines["in_many"]["url"], limit=100)
    assert not schema.validate(rest) and len(rest["data"]) == 1 + len(EXTRAS)
    assert {e["type"] for e in events["data"]} >= {"customer.deleted", "coupon.deleted"}
    with pytest.raises(Exception, match="No such coupon"):
        get("/v1/coupons/GONE")


@pytest.mark.postgres
def test_postgres_models_the_variety_alike(served, tmp_path, monkeypatch, dbt, postgres):
    import psycopg2

    extract_and_build(served, tmp_path, monkeypatch, dbt, SELECT, target="postgres")
    with psycopg2.connect(postgres) as con, con.cursor() as cur:
        cur.execute("select * from marts.dim_subscriptions where billing_system = 'stripe'")
        names = [d[0] for d in cur.description]
        got = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        cur.execute("select invoice_id, status from staging.stg_stripe__invoices")
        statuses = dict(cur.fetchall())
        cur.execute("select customer_id from staging.stg_stripe__customers where is_deleted")
        deleted = {row[0] for row in cur.fetchall()}
    assert_equal_to_the_facts({row["subscription_id"]: row for row in got})
    assert statuses == {**INVOICE_STATUSES, "in_two_items": "paid", "in_many": "paid"}
    assert deleted == {"cus_left", "cus_long_gone"}
