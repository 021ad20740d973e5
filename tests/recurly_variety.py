"""A small hand-written Recurly site with the variety a five-year-old account has, shared by
the Recurly variety tests: a plan priced in three currencies (`currencies[]`) with
subscriptions billed in EUR and GBP, a retired (inactive) plan whose subscription goes on,
an expired coupon, a closed account, several coupons on one subscription at both levels
(the first applied is an account-level one on one subscription, a subscription-level one
on another) and two subscriptions of one account with account-level coupons each,
multi-cycle terms (4 quarters, 12 months), a plan change pending for the renewal, charge
invoices in every state and credit invoices. The other systems keep the
one-subscription base, so every model builds.
"""

from __future__ import annotations

from tests.small_scenarios import one_subscription_per_system

RECURLY = "recurly"
# Each invoice's neutral status and kind, and what stg_recurly__invoices reads back:
# Recurly has no drafts (a draft is `pending`, as an open invoice is), so it reads open.
INVOICES = {
    "1001": ("draft", "charge", "open"),
    "1002": ("open", "charge", "open"),
    "1003": ("past_due", "charge", "past_due"),
    "1004": ("paid", "charge", "paid"),
    "1005": ("uncollectible", "charge", "uncollectible"),
    "1006": ("void", "charge", "void"),
    "1007": ("open", "credit", "open"),
    "1008": ("paid", "credit", "paid"),
    "1009": ("void", "credit", "void"),
}


def _plan(plan_id: str, amount: str, interval_count: int = 1, **extra) -> dict:
    return {
        "billing_system": RECURLY,
        "plan_id": plan_id,
        "product_id": plan_id,
        "product_name": plan_id.title(),
        "currency": "USD",
        "unit_amount": amount,
        "interval": "month",
        "interval_count": interval_count,
        **extra,
    }


def _coupon(coupon_id: str, percent: str, **extra) -> dict:
    return {
        "billing_system": RECURLY,
        "coupon_id": coupon_id,
        "name": coupon_id.title(),
        "percent_off": percent,
        "duration": "forever",
        **extra,
    }


def _customer(customer_id: str, **extra) -> dict:
    return {
        "billing_system": RECURLY,
        "customer_id": customer_id,
        "email": f"{customer_id}@example.com",
        "name": "Ada Lovelace",
        "created_at": "2025-06-01T00:00:00Z",
        **extra,
    }


def _subscription(
    subscription_id: str, customer_id: str, plan_id: str, created: str, **extra
) -> dict:
    return {
        "billing_system": RECURLY,
        "subscription_id": subscription_id,
        "customer_id": customer_id,
        "plan_id": plan_id,
        "quantity": 1,
        "created_at": created,
        "activated_at": created,
        **extra,
    }


def _invoice(invoice_id: str, status: str, kind: str) -> dict:
    paid = status == "paid"
    return {
        "billing_system": RECURLY,
        "invoice_id": invoice_id,
        "customer_id": "acct-eur",
        "subscription_id": "rs-eur",
        "currency": "EUR",
        "total": "90.00",
        "status": status,
        "kind": kind,
        "created_at": "2026-06-05T00:00:00Z",
        "paid_at": "2026-06-05T01:00:00Z" if paid else None,
    }


def recurly_variety() -> dict:
    doc = one_subscription_per_system()
    doc["fx_rates"] = {"USD": "1", "EUR": "1.08", "GBP": "1.27"}  # the seed's rates
    doc["plans"] += [
        _plan("multi-m", "49.00", currency_options={"EUR": "45.00", "GBP": "39.00"}),
        _plan("basic-m", "19.00"),
        _plan("legacy-m", "29.00", archived_at="2025-12-01T00:00:00Z"),
        _plan("pro-q", "129.00", interval_count=3),
    ]
    doc["coupons"] = [
        _coupon("TEN", "10"),  # account level: Recurly's default
        _coupon("WELCOME", "15"),
        _coupon("SUB5", "5", redemption_resource="subscription"),
        _coupon("GONE", "20", deleted_at="2026-03-01T00:00:00Z"),
    ]
    doc["customers"] += [
        _customer("acct-eur"),
        _customer("acct-gbp"),
        _customer("acct-closed", deleted_at="2026-05-01T00:00:00Z"),
        _customer("acct-two"),
        _customer("acct-term"),
        _customer("acct-pending"),
        _customer("acct-legacy"),
    ]
    doc["subscriptions"] += [
        _subscription(
            "rs-eur",
            "acct-eur",
            "multi-m",
            "2026-01-10T00:00:00Z",
            currency="EUR",
            quantity=2,
            coupon_id="TEN",
            extra_coupon_ids=["SUB5"],
        ),
        _subscription(
            "rs-gbp",
            "acct-gbp",
            "multi-m",
            "2026-02-10T00:00:00Z",
            currency="GBP",
            coupon_id="SUB5",
            extra_coupon_ids=["TEN", "GONE"],
        ),
        _subscription(
            "rs-closed",
            "acct-closed",
            "basic-m",
            "2025-10-01T00:00:00Z",
            coupon_id="GONE",
            canceled_at="2026-03-15T00:00:00Z",
            ended_at="2026-04-01T00:00:00Z",
        ),
        _subscription("rs-two-a", "acct-two", "basic-m", "2026-02-01T00:00:00Z", coupon_id="TEN"),
        _subscription(
            "rs-two-b", "acct-two", "multi-m", "2026-04-01T00:00:00Z", coupon_id="WELCOME"
        ),
        _subscription("rs-term-q", "acct-term", "pro-q", "2026-01-10T00:00:00Z", term_cycles=4),
        _subscription("rs-term-m", "acct-term", "basic-m", "2026-03-20T00:00:00Z", term_cycles=12),
        _subscription(
            "rs-pending",
            "acct-pending",
            "multi-m",
            "2026-02-15T00:00:00Z",
            quantity=3,
            pending_plan_id="basic-m",
            pending_quantity=2,
        ),
        _subscription("rs-legacy", "acct-legacy", "legacy-m", "2025-06-01T00:00:00Z"),
    ]
    doc["invoices"] = [
        _invoice(number, status, kind) for number, (status, kind, _) in INVOICES.items()
    ]
    # Stripe staging reads raw_stripe.invoices, which dlt creates only once one is loaded.
    doc["invoices"].append(
        {
            "billing_system": "stripe",
            "invoice_id": "in_1",
            "customer_id": "cus_1",
            "subscription_id": "sub_1",
            "currency": "USD",
            "total": "10.00",
            "status": "paid",
            "created_at": "2026-06-05T00:00:00Z",
            "paid_at": "2026-06-05T01:00:00Z",
        }
    )
    return doc
