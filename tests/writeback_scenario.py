"""A small scenario with one customer per subscription state, in every billing system,
for the write-back tests: each action can be applied to a live subscription and tried
on ended, scheduled-to-cancel, paused and discounted ones.

Ids follow each system's generated style only loosely; what matters is that each system
has two plans in one currency (for plan changes), a coupon, and these subscriptions
(suffixes): `live` (active, monthly), `live2` (a second live one of the same customer),
`trial` (trialing), `ended` (expired), `ending` (set to cancel at period end),
`paused` (paused), `coupon` (active with the coupon). Clock: AS_OF.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sandbox.generate import FX_RATES

AS_OF = datetime(2026, 6, 30, 12, tzinfo=UTC)
SYSTEMS = ("stripe", "recurly", "chargebee")
PLANS = {
    "stripe": ("price_pro", "price_basic"),
    "recurly": ("pro", "basic"),
    "chargebee": ("Pro-USD", "Basic-USD"),
}
COUPON = "SAVE50"
STATES = ("live", "live2", "trial", "ended", "ending", "paused", "coupon")
# Offer parameters as the runner resolves them at AS_OF (the live subscription renews
# monthly on the 5th); each system's tests add its cancel options and plan.
OFFER_PARAMETERS = {
    "pause": {
        "resumes_at": "2026-08-30T12:00:00+00:00",
        "duration": 2,
        "interval": "month",
        "cycles": 2,
    },
    "discount": {"coupon": COUPON},
    "extension": {"until": "2026-08-05T00:00:00+00:00", "days": 31},
}


def _iso(text: str) -> str:
    return text if text.endswith("Z") else text + "T00:00:00Z"


def subscription_id(system: str, state: str) -> str:
    return f"{system[:2]}-sub-{state}"


def customer_id(system: str, state: str) -> str:
    """`live` and `live2` share one customer (for cancels of every subscription)."""
    return f"{system[:2]}-cus-{'live' if state == 'live2' else state}"


def _facts(state: str) -> dict:
    facts = {
        "trial_start": None,
        "trial_end": None,
        "canceled_at": None,
        "ended_at": None,
        "paused_at": None,
        "resumes_at": None,
    }
    if state == "trial":
        facts.update(trial_start=_iso("2026-06-20"), trial_end=_iso("2026-07-04"))
    elif state == "ended":
        facts.update(canceled_at=_iso("2026-05-01"), ended_at=_iso("2026-05-15"))
    elif state == "ending":
        facts.update(canceled_at=_iso("2026-06-20"), ended_at=_iso("2026-07-15"))
    elif state == "paused":
        facts.update(paused_at=_iso("2026-06-15"), resumes_at=_iso("2026-08-15"))
    return facts


def scenario(systems: tuple[str, ...] = SYSTEMS) -> dict:
    doc: dict = {
        "as_of": AS_OF.isoformat().replace("+00:00", "Z"),
        "reporting_currency": "USD",
        "fx_rates": FX_RATES,
        "plans": [],
        "coupons": [],
        "customers": [],
        "subscriptions": [],
        "invoices": [],
        "exit_sessions": [],
    }
    for system in systems:
        for plan_id, amount in zip(PLANS[system], ("49.00", "19.00"), strict=True):
            doc["plans"].append(
                {
                    "billing_system": system,
                    "plan_id": plan_id,
                    "product_id": plan_id.split("_")[-1].split("-")[0].lower(),
                    "product_name": plan_id,
                    "currency": "USD",
                    "unit_amount": amount,
                    "interval": "month",
                    "interval_count": 1,
                }
            )
        doc["coupons"].append(
            {
                "billing_system": system,
                "coupon_id": COUPON,
                "name": "50% off",
                "percent_off": "50",
                "amount_off": None,
                "currency": None,
                "duration": "repeating",
                "duration_in_months": 3,
            }
        )
        for state in STATES:
            if state != "live2":
                doc["customers"].append(
                    {
                        "billing_system": system,
                        "customer_id": customer_id(system, state),
                        "email": f"{system}-{state}@example.com",
                        "name": f"Customer {state.title()}",
                        "created_at": _iso("2026-01-05"),
                    }
                )
            doc["subscriptions"].append(
                {
                    "billing_system": system,
                    "subscription_id": subscription_id(system, state),
                    "customer_id": customer_id(system, state),
                    "plan_id": PLANS[system][0],
                    "quantity": 1,
                    "coupon_id": COUPON if state == "coupon" else None,
                    "created_at": _iso("2026-01-05"),
                    "activated_at": _iso("2026-06-20" if state == "trial" else "2026-01-05"),
                    **_facts(state),
                }
            )
    return doc
