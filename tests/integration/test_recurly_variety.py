"""The variety of a years-old Recurly site, end to end on a small hand-written scenario
(tests/recurly_variety.py): served by the sandbox as API v2021-02-25 sends it (checked
against Recurly's OpenAPI file), extracted by the real source, modelled by real dbt
(DuckDB, and Postgres where a server answers), and compared with tests/oracle.py's
facts; the write-back's "already applied" check sees every coupon of both levels.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import recurly

from sandbox.scenario import validate_scenario
from tests.conformance.recurly_schema import SPEC_PATH, RecurlySpec, Validator
from tests.integration.test_conformance_recurly import Api
from tests.oracle import subscription_facts, wrong_fields
from tests.recurly_variety import INVOICES, recurly_variety
from tests.warehouse import extract_and_build, rows
from writebacks.systems.base import Action
from writebacks.systems.recurly import RecurlyWriter

pytestmark = pytest.mark.integration
# The models the comparisons read, what they are built from (the fx_rates seed too), and
# their data tests.
SELECT = ("+dim_subscriptions", "stg_recurly__invoices", "stg_recurly__customers")
CLOSED = {"acct-closed"}


@pytest.fixture
def served(serve_scenario):
    return serve_scenario(recurly_variety())


@pytest.fixture
def warehouse(served, tmp_path, monkeypatch, dbt) -> Path:
    return extract_and_build(served, tmp_path, monkeypatch, dbt, SELECT)


def recurly_facts() -> dict[str, dict]:
    facts = subscription_facts(validate_scenario(recurly_variety()))
    return {sub: fact for (system, sub), fact in facts.items() if system == "recurly"}


def assert_equal_to_the_facts(got: dict[str, dict]) -> None:
    """Plan, currency, quantity, MRR, period and coupon of every Recurly subscription."""
    want = recurly_facts()
    assert got.keys() == want.keys()
    wrong = wrong_fields(got, want)
    assert not wrong, wrong


def _recurly_subscriptions(database: Path) -> dict[str, dict]:
    query = "select * from marts.dim_subscriptions where billing_system = 'recurly'"
    return {row["subscription_id"]: row for row in rows(database, query)}


def test_every_variety_models_as_the_facts_state(warehouse):
    by_id = _recurly_subscriptions(warehouse)
    assert_equal_to_the_facts(by_id)
    # The variety is what makes these right, not a coincidence of the base case:
    assert (by_id["rs-eur"]["currency"], by_id["rs-eur"]["unit_amount_local"]) == ("EUR", 45)
    assert (by_id["rs-gbp"]["currency"], by_id["rs-gbp"]["unit_amount_local"]) == ("GBP", 39)
    assert by_id["rs-eur"]["coupon_id"] == "TEN"  # account level, applied before SUB5
    assert by_id["rs-gbp"]["coupon_id"] == "SUB5"  # subscription level, before TEN, GONE
    assert (by_id["rs-two-a"]["coupon_id"], by_id["rs-two-b"]["coupon_id"]) == ("TEN", "WELCOME")
    assert by_id["rs-closed"]["coupon_id"] == "GONE"  # an expired coupon still names it
    assert (by_id["rs-pending"]["plan_id"], by_id["rs-pending"]["quantity"]) == ("multi-m", 3)
    assert by_id["rs-legacy"]["plan_id"] == "legacy-m"  # retired plan, still billing
    term = by_id["rs-term-q"]  # a 4-quarter term: the period stays the quarter
    assert (term["current_period_start"].month, term["current_period_end"].month) == (4, 7)


def test_invoices_carry_the_neutral_status_and_type(warehouse):
    got = {
        row["invoice_id"]: (row["status"], row["invoice_type"])
        for row in rows(warehouse, "select * from staging.stg_recurly__invoices")
    }
    assert got == {number: (read, kind) for number, (_, kind, read) in INVOICES.items()}
    credits = rows(
        warehouse,
        "select total_local from staging.stg_recurly__invoices where invoice_type = 'credit'",
    )
    assert {row["total_local"] for row in credits} == {Decimal("-90")}  # as Recurly sends it


def test_closed_accounts_stay_flagged_and_no_subscription_is_deleted(warehouse):
    customers = rows(warehouse, "select * from staging.stg_recurly__customers")
    assert {row["customer_id"] for row in customers if row["is_deleted"]} == CLOSED
    assert len(customers) == len(
        validate_scenario(recurly_variety()).for_system("customers", "recurly")
    )
    subscriptions = rows(warehouse, "select * from staging.stg_recurly__subscriptions")
    assert not any(row["is_deleted"] for row in subscriptions)


def test_an_incremental_run_keeps_the_variety(served, warehouse, tmp_path, monkeypatch, dbt):
    extract_and_build(served, tmp_path, monkeypatch, dbt, SELECT)
    assert_equal_to_the_facts(_recurly_subscriptions(warehouse))
    deleted = rows(
        warehouse, "select customer_id from staging.stg_recurly__customers where is_deleted"
    )
    assert {row["customer_id"] for row in deleted} == CLOSED


def test_the_variety_is_served_as_the_openapi_describes_it(served):
    """Every answer validates against Recurly's OpenAPI file; the shapes a reader depends
    on are there: retired plans and expired coupons listed (no default state filter),
    prices per currency, a closed account, redemptions of both levels under the account,
    a pending change beside the current plan, terms, invoice states and credit invoices."""
    if not SPEC_PATH.exists():
        pytest.skip(f"Recurly's OpenAPI file is not at {SPEC_PATH}")
    validator = Validator(RecurlySpec.load())
    api = Api(served.urls["recurly"], validator)
    plans = {p["code"]: p for p in api.every_page("/plans")}
    coupons = {c["code"]: c for c in api.every_page("/coupons")}
    accounts = {a["code"]: a for a in api.every_page("/accounts")}
    subs = {s["id"]: s for s in api.every_page("/subscriptions")}
    invoices = {i["number"]: i for i in api.every_page("/invoices")}
    _, inactive = api.call("GET", "/plans?state=inactive&limit=200")
    _, credits = api.call("GET", "/invoices?type=credit&limit=200")
    two = accounts["acct-two"]["id"]
    redemptions = api.every_page(f"/accounts/{two}/coupon_redemptions")
    gbp = api.every_page(f"/accounts/{accounts['acct-gbp']['id']}/coupon_redemptions")
    assert not validator.violations, validator.violations[:10]

    assert (plans["legacy-m"]["state"], plans["legacy-m"]["deleted_at"]) == (
        "inactive",
        "2025-12-01T00:00:00Z",
    )
    assert [p["code"] for p in inactive["data"]] == ["legacy-m"]
    # Retiring touches the record: an incremental sync after it lists it again.
    assert plans["legacy-m"]["updated_at"] == "2025-12-01T00:00:00Z"
    assert coupons["GONE"]["updated_at"] == "2026-03-01T00:00:00Z"
    prices = {c["currency"]: c["unit_amount"] for c in plans["multi-m"]["currencies"]}
    assert prices == {"USD": 49.0, "EUR": 45.0, "GBP": 39.0}
    assert (coupons["GONE"]["state"], coupons["GONE"]["expired_at"]) == (
        "expired",
        "2026-03-01T00:00:00Z",
    )
    closed = accounts["acct-closed"]
    assert (closed["state"], closed["deleted_at"]) == ("inactive", "2026-05-01T00:00:00Z")
    assert (subs["rs-eur"]["currency"], subs["rs-eur"]["unit_amount"]) == ("EUR", 45.0)
    assert [r["coupon"]["code"] for r in subs["rs-eur"]["coupon_redemptions"]] == ["SUB5"]
    assert [r["coupon"]["code"] for r in subs["rs-gbp"]["coupon_redemptions"]] == ["SUB5"]
    assert [(r["coupon"]["code"], r["subscription_id"]) for r in gbp] == [
        ("SUB5", "rs-gbp"),
        ("TEN", None),
        ("GONE", None),
    ]  # in the order applied (every_page lists ascending)
    assert {r["coupon"]["code"] for r in redemptions} == {"TEN", "WELCOME"}
    pending = subs["rs-pending"]["pending_change"]
    assert (subs["rs-pending"]["plan"]["code"], subs["rs-pending"]["quantity"]) == ("multi-m", 3)
    assert (pending["plan"]["code"], pending["quantity"], pending["activated"]) == (
        "basic-m",
        2,
        False,
    )
    assert pending["activate_at"] == subs["rs-pending"]["current_period_ends_at"]
    term = subs["rs-term-q"]
    assert (term["total_billing_cycles"], term["remaining_billing_cycles"]) == (4, 2)
    assert (term["current_period_ends_at"], term["current_term_ends_at"]) == (
        "2026-07-10T00:00:00Z",
        "2027-01-10T00:00:00Z",
    )
    assert {n: (i["state"], i["type"]) for n, i in invoices.items()} == {
        "1001": ("pending", "charge"),
        "1002": ("pending", "charge"),
        "1003": ("past_due", "charge"),
        "1004": ("paid", "charge"),
        "1005": ("failed", "charge"),
        "1006": ("voided", "charge"),
        "1007": ("open", "credit"),
        "1008": ("closed", "credit"),
        "1009": ("voided", "credit"),
    }
    assert invoices["1008"]["total"] == -90.0
    assert sorted(i["number"] for i in credits["data"]) == ["1007", "1008", "1009"]


@pytest.mark.parametrize(
    ("subscription_id", "coupon", "why"),
    [
        ("rs-gbp", "GONE", "coupon GONE already applied to the account"),  # the third coupon
        ("rs-eur", "SUB5", "coupon SUB5 already applied"),  # the second, subscription level
        ("rs-two-b", "TEN", "coupon TEN already applied to the account"),  # its sibling's
    ],
)
def test_the_already_applied_check_sees_every_coupon(served, subscription_id, coupon, why):
    writer = RecurlyWriter(served.api_key, served.urls["recurly"])
    act = Action(
        action_id=f"act-{subscription_id}",
        billing_system="recurly",
        subscription_id=subscription_id,
        customer_id="",
        action_type="discount",
        parameters={"coupon": coupon},
    )
    assert writer.already_done(act, writer.read(subscription_id)) == why


def test_a_second_coupon_redeemed_comes_after_the_first(served):
    """A discount written back onto a subscription that has a coupon is applied after it:
    the subscription's first coupon (the marts' coupon_id) stays."""
    writer = RecurlyWriter(served.api_key, served.urls["recurly"])
    act = Action(
        action_id="act-second",
        billing_system="recurly",
        subscription_id="rs-two-a",
        customer_id="acct-two",
        action_type="discount",
        parameters={"coupon": "SUB5"},
    )
    current = writer.read("rs-two-a")
    assert writer.already_done(act, current) is None
    writer.send(writer.request(act, current), "key-second")
    after = writer.read("rs-two-a")
    assert writer.already_done(act, after) == "coupon SUB5 already applied"
    store = served.emulator("recurly").store.get("subscriptions", "rs-two-a")
    assert (store["coupon_id"], store["extra_coupon_ids"]) == ("TEN", ["SUB5"])


def test_an_expired_coupon_cannot_be_redeemed(served):
    writer = RecurlyWriter(served.api_key, served.urls["recurly"])
    act = Action(
        action_id="act-expired",
        billing_system="recurly",
        subscription_id="rs-two-a",
        customer_id="acct-two",
        action_type="discount",
        parameters={"coupon": "GONE"},
    )
    current = writer.read("rs-two-a")
    with pytest.raises(recurly.errors.ValidationError, match="expired"):
        writer.send(writer.request(act, current), "key-expired")
    store = served.emulator("recurly").store.get("subscriptions", "rs-two-a")
    assert (store["coupon_id"], store["extra_coupon_ids"]) == ("TEN", None)


@pytest.mark.parametrize(
    ("timeframe", "why"),
    [("renewal", "basic-m already scheduled for 2026-07-15T00:00:00Z"), ("now", None)],
)
def test_a_pending_change_counts_for_a_change_at_renewal_only(served, timeframe, why):
    writer = RecurlyWriter(served.api_key, served.urls["recurly"])
    act = Action(
        action_id=f"act-pending-{timeframe}",
        billing_system="recurly",
        subscription_id="rs-pending",
        customer_id="acct-pending",
        action_type="plan_change",
        parameters={"plan": "basic-m", "timeframe": timeframe},
    )
    assert writer.already_done(act, writer.read("rs-pending")) == why


@pytest.mark.postgres
def test_postgres_models_the_variety_alike(served, tmp_path, monkeypatch, dbt, postgres):
    import psycopg2

    extract_and_build(served, tmp_path, monkeypatch, dbt, SELECT, target="postgres")
    with psycopg2.connect(postgres) as con, con.cursor() as cur:
        cur.execute("select * from marts.dim_subscriptions where billing_system = 'recurly'")
        names = [d[0] for d in cur.description]
        got = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        cur.execute("select invoice_id, status, invoice_type from staging.stg_recurly__invoices")
        statuses = {number: (status, kind) for number, status, kind in cur.fetchall()}
        cur.execute("select customer_id from staging.stg_recurly__customers where is_deleted")
        deleted = {row[0] for row in cur.fetchall()}
    assert_equal_to_the_facts({row["subscription_id"]: row for row in got})
    assert statuses == {number: (read, kind) for number, (_, kind, read) in INVOICES.items()}
    assert deleted == CLOSED
