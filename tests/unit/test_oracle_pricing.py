"""The oracle prices items by the same worked examples as the dbt unit test of
int_subscription_items (models/intermediate/int_subscription_items.yml): two independent
implementations of one rule, checked against the same hand-computed numbers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.oracle import amount, mrr, plan_item

TIERS = [
    {"up_to": 10, "unit_amount": Decimal(2), "flat_amount": Decimal(5)},
    {"up_to": 20, "unit_amount": Decimal("1.5"), "flat_amount": Decimal(0)},
    {"up_to": None, "unit_amount": Decimal(1), "flat_amount": Decimal(0)},
]
STAIRS = [
    {"up_to": 5, "unit_amount": Decimal(0), "flat_amount": Decimal(50)},
    {"up_to": 10, "unit_amount": Decimal(0), "flat_amount": Decimal(80)},
    {"up_to": None, "unit_amount": Decimal(0), "flat_amount": Decimal(100)},
]


def plan(
    model="per_unit", unit="0", tiers=None, package=None, kind="plan", usage="licensed", **more
):
    return {
        "billing_system": "stripe",
        "plan_id": more.get("plan_id", model),
        "currency": "USD",
        "interval": "month",
        "interval_count": 1,
        "unit_amount": Decimal(unit),
        "pricing_model": model,
        "tiers": tiers,
        "package_size": package,
        "kind": kind,
        "usage_type": usage,
    }


@pytest.mark.parametrize(
    ("item", "quantity", "expected"),
    [
        (plan("per_unit", "5"), 4, 20),
        (plan("flat_fee", "30"), 3, 30),
        (plan("package", "10", package=5), 12, 30),
        (plan("tiered", tiers=TIERS), 25, 45),
        (plan("volume", tiers=TIERS), 15, Decimal("22.5")),
        (plan("volume", tiers=TIERS), 10, 25),
        (plan("stairstep", tiers=STAIRS), 7, 80),
        (plan("per_unit", "1", usage="metered"), 1, None),
    ],
)
def test_item_amounts(item, quantity, expected):
    assert amount(item, quantity) == expected


def test_mrr_counts_licensed_plan_and_add_on_items_and_the_plan_bills_most():
    plans = {
        ("stripe", p["plan_id"]): p
        for p in (
            plan("per_unit", "10", plan_id="small"),
            plan("per_unit", "20", plan_id="big"),
            plan("flat_fee", "50", kind="addon", plan_id="addon"),
            plan("flat_fee", "70", kind="charge", plan_id="setup"),
            plan("per_unit", "1", usage="metered", plan_id="usage"),
        )
    }
    sub = {
        "billing_system": "stripe",
        "plan_id": "small",
        "quantity": 1,
        "items": [
            {"plan_id": "big", "quantity": 1},
            {"plan_id": "addon", "quantity": 1},
            {"plan_id": "setup", "quantity": 1},
            {"plan_id": "usage", "quantity": 1},
        ],
    }
    assert plan_item(sub, plans)[0]["plan_id"] == "big"
    assert mrr(sub, plans, {"USD": Decimal(1)}) == 80  # 10 + 20 + 50
