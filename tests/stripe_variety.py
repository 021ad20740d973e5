"""A small hand-written Stripe account with the variety real accounts have, shared by the
Stripe variety tests: a subscription billed in a price's `currency_options` currency (EUR
and JPY), an archived price with a subscription that goes on, several discounts (one of a
deleted coupon), a customer-level discount that applies to one subscription and not to
another with its own, a customer deleted within Stripe's 30-day event window and one
deleted long before, a scheduled plan change, a two-item subscription, one with more
items than an invoice embeds lines (EXTRAS), and an invoice in each status. The other systems keep the one-subscription base, so every model builds.
"""

from __future__ import annotations

from tests.small_scenarios import one_subscription_per_system


def _plan(plan_id: str, amount: str, **extra) -> dict:
    return {
        "billing_system": "stripe",
        "plan_id": plan_id,
        "product_id": "prod_" + plan_id.removeprefix("price_"),
        "product_name": plan_id.removeprefix("price_").title(),
        "currency": "USD",
        "unit_amount": amount,
        "interval": "month",
        "interval_count": 1,
        **extra,
    }


def _customer(customer_id: str, **extra) -> dict:
    return {
        "billing_system": "stripe",
        "customer_id": customer_id,
        "email": f"{customer_id}@example.com",
        "created_at": "2026-01-02T00:00:00Z",
        **extra,
    }


def _subscription(subscription_id: str, customer_id: str, plan_id: str, **extra) -> dict:
    return {
        "billing_system": "stripe",
        "subscription_id": subscription_id,
        "customer_id": customer_id,
        "plan_id": plan_id,
        "quantity": 1,
        "created_at": "2026-01-10T00:00:00Z",
        "activated_at": "2026-01-10T00:00:00Z",
        **extra,
    }


def _invoice(invoice_id: str, status: str, subscription_id: str, **extra) -> dict:
    return {
        "billing_system": "stripe",
        "invoice_id": invoice_id,
        "customer_id": "cus_one",
        "subscription_id": subscription_id,
        "currency": "USD",
        "total": "10.00",
        "status": status,
        "created_at": "2026-06-10T00:00:00Z",
        "paid_at": "2026-06-10T01:00:00Z" if status == "paid" else None,
        **extra,
    }


# Further prices of `sub_many`: with its plan, more lines than an invoice embeds (10).
EXTRAS = [f"price_extra_{n}" for n in range(1, 12)]
# The neutral invoice status of each invoice of the scenario.
INVOICE_STATUSES = {
    "in_draft": "draft",
    "in_open": "open",
    "in_past_due": "past_due",
    "in_paid": "paid",
    "in_uncollectible": "uncollectible",
    "in_void": "void",
}


def stripe_variety() -> dict:
    """The scenario document (as_of 2026-06-30)."""
    doc = one_subscription_per_system()
    doc["fx_rates"] = {"USD": "1", "EUR": "1.08", "JPY": "0.0067"}  # the seed's rates
    doc["plans"] += [
        _plan("price_basic", "10.00", currency_options={"EUR": "9.00", "JPY": "1500"}),
        _plan("price_legacy", "20.00", archived_at="2026-03-01T00:00:00Z"),
        _plan("price_pro", "30.00"),
        _plan("price_seats", "50.00", pricing_model="package", package_size=5),
        *(_plan(price_id, "1.00") for price_id in EXTRAS),
    ]
    doc["coupons"] = [
        {"billing_system": "stripe", "coupon_id": c, "percent_off": p, "duration": "forever"}
        | extra
        for c, p, extra in (
            ("TEN", "10", {}),
            ("LOYAL", "15", {}),
            ("GONE", "20", {"deleted_at": "2026-06-20T00:00:00Z"}),
        )
    ]
    doc["customers"] += [
        _customer("cus_one"),
        _customer("cus_eur"),
        _customer("cus_loyal", coupon_id="LOYAL"),
        _customer("cus_left", deleted_at="2026-06-25T00:00:00Z"),
        _customer("cus_long_gone", deleted_at="2026-03-01T00:00:00Z"),
    ]
    ended = {"canceled_at": "2026-06-20T00:00:00Z", "ended_at": "2026-06-20T00:00:00Z"}
    doc["subscriptions"] += [
        _subscription(
            "sub_eur",
            "cus_eur",
            "price_basic",
            currency="EUR",
            quantity=2,
            coupon_id="TEN",
            extra_coupon_ids=["GONE"],
        ),
        _subscription("sub_jpy", "cus_one", "price_basic", currency="JPY"),
        _subscription("sub_legacy", "cus_one", "price_legacy"),
        _subscription("sub_pending", "cus_one", "price_basic", pending_plan_id="price_pro"),
        _subscription(
            "sub_two_items",
            "cus_one",
            "price_basic",
            quantity=3,
            items=[{"plan_id": "price_seats", "quantity": 12}],
        ),
        _subscription("sub_many", "cus_one", "price_pro", items=[{"plan_id": p} for p in EXTRAS]),
        _subscription("sub_loyal", "cus_loyal", "price_basic"),
        _subscription("sub_loyal_own", "cus_loyal", "price_pro", coupon_id="TEN"),
        _subscription("sub_left", "cus_left", "price_basic", **ended),
        _subscription(
            "sub_long_gone",
            "cus_long_gone",
            "price_basic",
            canceled_at="2026-02-20T00:00:00Z",
            ended_at="2026-02-20T00:00:00Z",
        ),
    ]
    doc["invoices"] = [
        _invoice(invoice_id, status, "sub_jpy" if status == "draft" else "sub_legacy")
        for invoice_id, status in INVOICE_STATUSES.items()
    ]
    doc["invoices"].append(_invoice("in_two_items", "paid", "sub_two_items", total="150.00"))
    doc["invoices"].append(_invoice("in_many", "paid", "sub_many", total="41.00"))
    return doc
