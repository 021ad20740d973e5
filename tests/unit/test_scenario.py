"""The scenario schema refuses broken scenarios and names the object and field."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from click.testing import CliRunner

from sandbox.cli import sandbox
from sandbox.scenario import ScenarioError, load_scenario, validate_scenario

BASE = {
    "as_of": "2026-06-30T00:00:00Z",
    "reporting_currency": "USD",
    "fx_rates": {"USD": "1", "JPY": "0.0067"},
    "plans": [
        {
            "billing_system": "stripe",
            "plan_id": "price_m",
            "product_id": "prod_p",
            "product_name": "Pro",
            "currency": "USD",
            "unit_amount": "49.00",
            "interval": "month",
            "interval_count": 1,
        },
        {
            "billing_system": "recurly",
            "plan_id": "pro-jpy",
            "product_id": "pro",
            "product_name": "Pro",
            "currency": "JPY",
            "unit_amount": "4900",
            "interval": "month",
            "interval_count": 1,
        },
    ],
    "coupons": [
        {
            "billing_system": "stripe",
            "coupon_id": "SAVE50",
            "name": "50% off",
            "percent_off": "50",
            "amount_off": None,
            "currency": None,
            "duration": "repeating",
            "duration_in_months": 3,
        },
    ],
    "customers": [
        {
            "billing_system": "stripe",
            "customer_id": "cus_1",
            "email": "a@example.com",
            "name": "Ada",
            "created_at": "2025-01-03T10:00:00Z",
        },
        {
            "billing_system": "stripe",
            "customer_id": "cus_2",
            "email": None,
            "name": None,
            "created_at": "2025-01-03T10:00:00Z",
        },
        {
            "billing_system": "recurly",
            "customer_id": "acct-1",
            "email": None,
            "name": None,
            "created_at": "2025-01-03T10:00:00Z",
        },
    ],
    "subscriptions": [
        {
            "billing_system": "stripe",
            "subscription_id": "sub_1",
            "customer_id": "cus_1",
            "plan_id": "price_m",
            "quantity": 1,
            "coupon_id": "SAVE50",
            "created_at": "2025-01-03T10:00:00Z",
            "activated_at": "2025-01-03T10:00:00Z",
            "trial_start": None,
            "trial_end": None,
            "canceled_at": None,
            "ended_at": None,
            "paused_at": None,
            "resumes_at": None,
            "dunning": None,
        },
    ],
    "invoices": [
        {
            "billing_system": "stripe",
            "invoice_id": "in_1",
            "customer_id": "cus_1",
            "subscription_id": "sub_1",
            "currency": "USD",
            "total": "49.00",
            "status": "paid",
            "created_at": "2025-01-03T10:00:00Z",
            "paid_at": "2025-01-03T10:05:00Z",
        },
    ],
    "exit_sessions": [
        {
            "session_id": "es_1",
            "app_id": "app",
            "billing_system": "stripe",
            "billing_id": "sub_1",
            "email": None,
            "started_at": "2026-04-02T08:00:00Z",
            "action": "offer_accepted",
            "action_at": "2026-04-02T08:03:00Z",
            "offer_id": "pause_2m",
            "offer_type": "pause",
            "page_id": "page_a",
            "cancel_reason": None,
            "custom": {"seats": 3},
        },
    ],
}


def broken(section: str, index: int, **changes) -> dict:
    doc = copy.deepcopy(BASE)
    doc[section][index].update(changes)
    return doc


def problems_of(doc: dict) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        validate_scenario(doc)
    return caught.value.problems


def test_valid_scenario_parses_values():
    scenario = validate_scenario(BASE)
    assert scenario.as_of == datetime(2026, 6, 30, tzinfo=UTC)
    assert scenario.plans[0]["unit_amount"] == Decimal("49.00")
    assert scenario.plans[1]["unit_amount"] == Decimal("4900")
    assert scenario.subscriptions[0]["activated_at"].tzinfo is not None
    assert scenario.fx_rates["JPY"] == Decimal("0.0067")
    assert scenario.exit_sessions[0]["custom"] == {"seats": 3}
    assert [c["customer_id"] for c in scenario.for_system("customers", "stripe")] == [
        "cus_1",
        "cus_2",
    ]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            broken("subscriptions", 0, plan_id="price_x"),
            "subscriptions[0] (stripe sub_1).plan_id: unknown plan 'price_x' in stripe",
        ),
        (
            broken("subscriptions", 0, customer_id="acct-1"),
            "subscriptions[0] (stripe sub_1).customer_id: unknown customer 'acct-1' in stripe",
        ),
        (
            broken("subscriptions", 0, coupon_id="NOPE"),
            "subscriptions[0] (stripe sub_1).coupon_id: unknown coupon 'NOPE' in stripe",
        ),
        (
            broken("plans", 0, unit_amount="49,00"),
            "plans[0] (stripe price_m).unit_amount: '49,00' is not a decimal string",
        ),
        (
            broken("plans", 0, unit_amount=49),
            "plans[0] (stripe price_m).unit_amount: 49 is not a decimal string",
        ),
        (
            broken("plans", 1, unit_amount="4900.50"),
            "plans[1] (recurly pro-jpy).unit_amount: 4900.50 has more decimals than JPY allows",
        ),
        (
            broken("plans", 0, interval="fortnight"),
            "plans[0] (stripe price_m).interval: 'fortnight' is not one of day, week, month, year",
        ),
        (
            broken("plans", 0, interval_count=0),
            "plans[0] (stripe price_m).interval_count: must be >= 1",
        ),
        (
            broken("subscriptions", 0, ended_at="2024-01-01T00:00:00Z"),
            "subscriptions[0] (stripe sub_1).ended_at: is before activated_at",
        ),
        (
            broken("subscriptions", 0, canceled_at="2026-01-01T00:00:00Z"),
            "subscriptions[0] (stripe sub_1).ended_at: is required when canceled_at is set",
        ),
        (
            broken("subscriptions", 0, activated_at="2026-07-01T00:00:00Z"),
            "subscriptions[0] (stripe sub_1).activated_at: is after as_of: Stripe has no future subscriptions",
        ),
        (
            broken("subscriptions", 0, resumes_at="2026-07-01T00:00:00Z"),
            "subscriptions[0] (stripe sub_1).paused_at: is required when resumes_at is set",
        ),
        (
            broken("subscriptions", 0, created_at="2025-01-03 10:00:00"),
            "subscriptions[0] (stripe sub_1).created_at: '2025-01-03 10:00:00' is not an ISO-8601 UTC timestamp",
        ),
        (
            broken("subscriptions", 0, quantity="2"),
            "subscriptions[0] (stripe sub_1).quantity: '2' is not an integer",
        ),
        (
            broken("subscriptions", 0, colour="red"),
            "subscriptions[0] (stripe sub_1).colour: unknown field",
        ),
        (
            broken("customers", 1, customer_id="cus_1"),
            "customers[1] (stripe cus_1).customer_id: duplicate id 'cus_1'",
        ),
        (
            broken("customers", 0, created_at=None),
            "customers[0] (stripe cus_1).created_at: is required",
        ),
        (
            broken("invoices", 0, paid_at=None),
            "invoices[0] (stripe in_1).paid_at: must be set exactly when status is paid",
        ),
        (
            broken("invoices", 0, customer_id="cus_2"),
            "invoices[0] (stripe in_1).subscription_id: belongs to customer 'cus_1'",
        ),
        (
            broken("invoices", 0, currency="EUR"),
            "invoices[0] (stripe in_1).currency: EUR has no rate in fx_rates",
        ),
        (
            broken("exit_sessions", 0, action_at="2026-04-01T00:00:00Z"),
            "exit_sessions[0] (stripe es_1).action_at: is before started_at",
        ),
        (
            broken("exit_sessions", 0, action="left"),
            "exit_sessions[0] (stripe es_1).action: 'left' is not one of canceled, offer_accepted, deflected",
        ),
        (
            broken("exit_sessions", 0, offer_type=None),
            "exit_sessions[0] (stripe es_1).offer_type: is required when action is offer_accepted",
        ),
        (
            broken("exit_sessions", 0, action=None),
            "exit_sessions[0] (stripe es_1).action_at: must be set exactly when action is set",
        ),
        (
            broken("coupons", 0, amount_off="5.00"),
            "coupons[0] (stripe SAVE50).percent_off: exactly one of percent_off and amount_off must be set",
        ),
    ],
)
def test_broken_scenario_names_object_and_field(doc, expected):
    problems = problems_of(doc)
    assert any(p.startswith(expected) for p in problems), problems


def test_top_level_problems_are_named():
    doc = copy.deepcopy(BASE)
    doc["as_of"] = "yesterday"
    doc["fx_rates"]["USD"] = "2"
    doc["extra"] = 1
    problems = problems_of(doc)
    assert any(p.startswith("as_of: 'yesterday' is not an ISO-8601") for p in problems)
    assert 'fx_rates.USD: the reporting currency\'s rate must be "1"' in problems
    assert "extra: unknown top-level field" in problems


def test_every_problem_is_reported_at_once():
    doc = broken("subscriptions", 0, plan_id="x", quantity=0)
    doc["exit_sessions"].append(copy.deepcopy(doc["exit_sessions"][0]))
    problems = problems_of(doc)
    assert len(problems) == 3
    assert "exit_sessions[1] (stripe es_1).session_id: duplicate id 'es_1'" in problems


def test_load_names_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ScenarioError, match=r"bad\.json: not valid JSON"):
        load_scenario(bad)


def test_cli_validate_reports_problems(tmp_path):
    path = tmp_path / "s.json"
    path.write_bytes(orjson.dumps(broken("subscriptions", 0, plan_id="price_x")))
    result = CliRunner().invoke(sandbox, ["validate", str(path)])
    assert result.exit_code == 1
    assert "subscriptions[0] (stripe sub_1).plan_id: unknown plan 'price_x'" in result.output
    path.write_bytes(orjson.dumps(BASE))
    result = CliRunner().invoke(sandbox, ["validate", str(path)])
    assert result.exit_code == 0 and "valid; 1 subscriptions, 1 exit sessions" in result.output


def _with_extras(*extras: dict, items=None) -> dict:
    doc = copy.deepcopy(BASE)
    for extra in extras:
        doc["plans"].append({**doc["plans"][0], **extra})
    if items is not None:
        doc["subscriptions"][0]["items"] = items
    return doc


TIERED = {
    "plan_id": "price_seats",
    "unit_amount": "0",
    "pricing_model": "tiered",
    "tiers": [{"up_to": 5, "unit_amount": "10.00"}, {"up_to": None, "unit_amount": "5.00"}],
}


def test_items_and_tiers_parse_with_their_defaults():
    doc = _with_extras(TIERED, items=[{"plan_id": "price_seats", "quantity": 7}])
    scenario = validate_scenario(doc)
    plan = scenario.plans[-1]
    assert (plan["kind"], plan["usage_type"], plan["pricing_model"]) == (
        "plan",
        "licensed",
        "tiered",
    )
    assert plan["tiers"][1] == {
        "up_to": None,
        "unit_amount": Decimal("5.00"),
        "flat_amount": Decimal(0),
    }
    assert scenario.plans[0]["pricing_model"] == "per_unit"
    assert scenario.subscriptions[0]["items"] == [{"plan_id": "price_seats", "quantity": 7}]


@pytest.mark.parametrize(
    ("extras", "items", "expected"),
    [
        (
            [{**TIERED, "tiers": [{"up_to": 5, "unit_amount": "1"}]}],
            None,
            "plans[2] (stripe price_seats).tiers: tier 1: only the last tier has no up_to",
        ),
        (
            [{**TIERED, "pricing_model": "per_unit"}],
            None,
            "plans[2] (stripe price_seats).tiers: are required exactly with pricing_model",
        ),
        (
            [{"plan_id": "price_fee", "pricing_model": "flat_fee"}],
            None,
            "plans[2] (stripe price_fee).pricing_model: a stripe plan is priced per_unit, package",
        ),
        (
            [{"plan_id": "price_addon", "kind": "addon"}],
            None,
            "plans[2] (stripe price_addon).kind: addon is not sold on stripe",
        ),
        (
            [{**TIERED, "currency": "JPY", "unit_amount": "0"}],
            [{"plan_id": "price_seats"}],
            "subscriptions[0] (stripe sub_1).items[1].plan_id: has no price in the subscription's currency USD",
        ),
        (
            [{**TIERED, "interval": "year"}],
            [{"plan_id": "price_seats"}],
            "subscriptions[0] (stripe sub_1).items[1].plan_id: bills on another period",
        ),
        (
            [],
            [{"plan_id": "price_m"}],
            "subscriptions[0] (stripe sub_1).items[1].plan_id: 'price_m' is on the subscription twice",
        ),
        (
            [],
            [{"plan_id": "price_none", "quantity": 0}],
            "subscriptions[0] (stripe sub_1).items[1].quantity: must be >= 1",
        ),
    ],
)
def test_broken_items_and_tiers_are_named(extras, items, expected):
    problems = problems_of(_with_extras(*extras, items=items))
    assert any(p.startswith(expected) for p in problems), problems


def test_what_recurly_cannot_spell_is_refused():
    doc = copy.deepcopy(BASE)
    recurly = {**doc["plans"][1], "currency": "USD", "unit_amount": "0"}
    doc["fx_rates"]["USD"] = "1"
    doc["plans"] += [
        {**recurly, "plan_id": "second-plan", "unit_amount": "5"},
        {
            **recurly,
            "plan_id": "steps",
            "kind": "addon",
            "pricing_model": "stairstep",
            "tiers": [{"up_to": 5, "unit_amount": "1", "flat_amount": "10"}, {"up_to": None}],
        },
        {
            **recurly,
            "plan_id": "graduated",
            "kind": "addon",
            "pricing_model": "tiered",
            "tiers": [{"up_to": 5, "unit_amount": "1", "flat_amount": "10"}, {"up_to": None}],
        },
    ]
    problems = problems_of(doc)
    assert (
        "plans[3] (recurly steps).tiers[1].unit_amount: must be 0: a step's price is its flat_amount"
        in problems
    )
    assert (
        "plans[4] (recurly graduated).tiers[1].flat_amount: must be 0: a Recurly tier has one per-unit price"
        in problems
    )


def test_a_chargebee_tier_has_one_price():
    doc = copy.deepcopy(BASE)
    doc["plans"].append(
        {
            **doc["plans"][0],
            "billing_system": "chargebee",
            "plan_id": "Seats",
            "unit_amount": "0",
            "pricing_model": "volume",
            "tiers": [{"up_to": 5, "unit_amount": "1", "flat_amount": "10"}, {"up_to": None}],
        }
    )
    assert (
        "plans[2] (chargebee Seats).tiers[1]: a Chargebee tier has one price: per unit or flat, not both"
        in problems_of(doc)
    )


def _varied(
    plan: dict | None = None,
    customer: dict | None = None,
    sub: dict | None = None,
    invoice: dict | None = None,
) -> dict:
    """BASE with fields of its first plan, customer, subscription and invoice replaced."""
    doc = copy.deepcopy(BASE)
    for section, change in (
        ("plans", plan),
        ("customers", customer),
        ("subscriptions", sub),
        ("invoices", invoice),
    ):
        doc[section][0].update(change or {})
    return doc


def test_the_variety_of_real_accounts_parses():
    doc = _varied(
        plan={"currency_options": {"JPY": "7000"}, "archived_at": "2026-01-01T00:00:00Z"},
        customer={"coupon_id": "SAVE50"},
        sub={"currency": "JPY", "pending_plan_id": "price_m", "pending_quantity": 2},
        invoice={"status": "uncollectible", "paid_at": None},
    )
    doc["coupons"].append({**doc["coupons"][0], "coupon_id": "MORE", "deleted_at": None})
    doc["subscriptions"][0]["extra_coupon_ids"] = ["MORE"]
    scenario = validate_scenario(doc)
    sub = scenario.subscriptions[0]
    assert scenario.plans[0]["currency_options"] == {"JPY": Decimal(7000)}
    assert (sub["currency"], sub["extra_coupon_ids"], sub["pending_quantity"]) == (
        "JPY",
        ["MORE"],
        2,
    )
    assert scenario.invoices[0]["kind"] == "charge"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"sub": {"currency": "JPY"}},
            "subscriptions[0] (stripe sub_1).currency: 'price_m' has no price in JPY",
        ),
        (
            {"plan": {"currency_options": {"GBP": "40.00"}}},
            "plans[0] (stripe price_m).currency_options.GBP: GBP has no rate in fx_rates",
        ),
        (
            {"plan": {"currency_options": {"JPY": "70.5"}}},
            "plans[0] (stripe price_m).currency_options.JPY: 70.5 has more decimals than JPY",
        ),
        (
            {"plan": {"archived_at": "2027-01-01T00:00:00Z"}},
            "plans[0] (stripe price_m).archived_at: is after as_of",
        ),
        (
            {"sub": {"extra_coupon_ids": ["SAVE50"]}},
            "subscriptions[0] (stripe sub_1).extra_coupon_ids[1]: is coupon_id again",
        ),
        (
            {"sub": {"extra_coupon_ids": ["NOPE"]}},
            "subscriptions[0] (stripe sub_1).extra_coupon_ids[1]: unknown coupon 'NOPE'",
        ),
        (
            {"sub": {"term_cycles": 12}},
            "subscriptions[0] (stripe sub_1).term_cycles: Stripe has no multi-cycle terms",
        ),
        (
            {"sub": {"transferred_at": "2026-01-01T00:00:00Z"}},
            "subscriptions[0] (stripe sub_1).transferred_at: is Chargebee only",
        ),
        (
            {"sub": {"pending_plan_id": "pro-jpy"}},
            "subscriptions[0] (stripe sub_1).pending_plan_id: unknown plan 'pro-jpy'",
        ),
        (
            {"sub": {"pending_quantity": 3}},
            "subscriptions[0] (stripe sub_1).pending_quantity: needs pending_plan_id",
        ),
        (
            {"customer": {"deleted_at": "2026-01-01T00:00:00Z"}},
            "customers[0] (stripe cus_1).deleted_at: every subscription of a deleted customer",
        ),
        (
            {"invoice": {"kind": "credit"}},
            "invoices[0] (stripe in_1).kind: credit invoices are Recurly's",
        ),
        (
            {"invoice": {"status": "past_due"}},
            "invoices[0] (stripe in_1).paid_at: must be set exactly when status is paid",
        ),
    ],
)
def test_broken_variety_is_named(change, expected):
    problems = problems_of(_varied(**change))
    assert any(p.startswith(expected) for p in problems), problems


def test_a_recurly_credit_invoice_is_open_paid_or_void():
    doc = copy.deepcopy(BASE)
    doc["invoices"].append(
        {
            **doc["invoices"][0],
            "billing_system": "recurly",
            "invoice_id": "1001",
            "customer_id": "acct-1",
            "subscription_id": None,
            "currency": "JPY",
            "total": "500",
            "kind": "credit",
            "status": "past_due",
            "paid_at": None,
        }
    )
    assert "invoices[1] (recurly 1001).status: a credit invoice is open, paid" in "".join(
        problems_of(doc)
    )
