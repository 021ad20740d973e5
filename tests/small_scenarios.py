"""Small hand-written scenarios that several tests share."""

from __future__ import annotations


def one_subscription_per_system(**subscription: str) -> dict:
    """One customer with one monthly $10 subscription on each billing system (sub_1,
    rsub1, cb-sub-1), created 2026-01-05, at as_of 2026-06-30; `subscription` adds fields
    (e.g. canceled_at, ended_at) to all three."""
    doc = {"as_of": "2026-06-30T00:00:00Z", "reporting_currency": "USD", "fx_rates": {"USD": "1"}}
    doc["plans"], doc["customers"], doc["subscriptions"] = [], [], []
    for system, plan, customer, sub in (
        ("stripe", "price_m", "cus_1", "sub_1"),
        ("recurly", "pro-m", "acct-1", "rsub1"),
        ("chargebee", "Pro-USD-Monthly", "cb-cust-1", "cb-sub-1"),
    ):
        doc["plans"].append(
            {
                "billing_system": system,
                "plan_id": plan,
                "product_id": "pro",
                "product_name": "Pro",
                "currency": "USD",
                "unit_amount": "10.00",
                "interval": "month",
                "interval_count": 1,
            }
        )
        doc["customers"].append(
            {
                "billing_system": system,
                "customer_id": customer,
                "created_at": "2026-01-05T00:00:00Z",
            }
        )
        doc["subscriptions"].append(
            {
                "billing_system": system,
                "subscription_id": sub,
                "customer_id": customer,
                "plan_id": plan,
                "quantity": 1,
                "created_at": "2026-01-05T00:00:00Z",
                "activated_at": "2026-01-05T00:00:00Z",
                **subscription,
            }
        )
    return doc
