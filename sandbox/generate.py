"""Deterministic scenario generator: realistic billing history plus exit sessions that
exercise every rule of docs/spec/validation.md.

Bulk work is columnar (numpy draws, polars frames, epoch seconds as Int64) so that
100,000 customers take seconds and 1,000,000 fit in memory; the only row-wise step is
polars' own JSON writer. The same seed and as_of always give the same file.

Shape of the history (shares are of subscriptions unless said otherwise):
customers spread 50/25/25 over Stripe/Recurly/Chargebee, 1-3 subscriptions each; plans
monthly, yearly, weekly and quarterly (interval_count 3) in USD, EUR, GBP and JPY;
15% trials, 10% coupons, 25% ended (a fifth of them expired without a cancel request),
6% scheduled to cancel, 5% paused, Stripe 5% in dunning (past_due/unpaid), Recurly and
Chargebee 2% future; invoices for the last 12 billing periods (3% void, open while in
dunning). Exit sessions come from profiles, each aimed at one validation outcome
(see `_session_profiles`), with repeat visits 10, 29, 30, 31 and 45 days apart,
customer-id billing ids, unknown billing ids and a `holdout` page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import polars as pl

from sandbox.billing import SUBSCRIPTION_TIME_FIELDS
from sandbox.scenario import SCHEMA, ZERO_DECIMAL_CURRENCIES, format_ts

DAY = 86_400
HISTORY_DAYS = 3 * 365
SESSION_DAYS = 150
INVOICE_PERIODS = 12
SYSTEM_SHARES = {"stripe": 0.5, "recurly": 0.25, "chargebee": 0.25}
FX_RATES = {"USD": "1", "EUR": "1.08", "GBP": "1.27", "JPY": "0.0067"}

# (plan suffix, product id, product name, currency, unit amount in minor units,
#  interval, interval_count, weight)
_CATALOG = [
    ("basic_monthly_usd", "basic", "Basic", "USD", 1900, "month", 1, 30),
    ("pro_monthly_usd", "pro", "Pro", "USD", 4900, "month", 1, 25),
    ("pro_yearly_usd", "pro", "Pro", "USD", 49000, "year", 1, 12),
    ("pro_monthly_eur", "pro", "Pro", "EUR", 4500, "month", 1, 10),
    ("team_quarterly_gbp", "team", "Team", "GBP", 12000, "month", 3, 8),
    ("pro_monthly_jpy", "pro", "Pro", "JPY", 4900, "month", 1, 10),
    ("digest_weekly_usd", "digest", "Digest", "USD", 500, "week", 1, 5),
]
# Items sold beside a plan (scenario `subscriptions[].items`), all monthly in USD:
# (suffix, product, name, kind, usage_type, pricing_model, unit amount in minor units,
#  package_size, tiers as (up_to, unit minor, flat minor), quantities drawn from).
# Each system gets those its API can express (sandbox.scenario.SYSTEM_PRICING).
_EXTRAS = {
    "stripe": [
        (
            "seats_graduated",
            "seats",
            "Seats",
            "plan",
            "licensed",
            "tiered",
            0,
            None,
            ((5, 1000, 0), (20, 800, 0), (None, 500, 0)),
            (2, 30),
        ),
        (
            "support_volume",
            "support",
            "Support",
            "plan",
            "licensed",
            "volume",
            0,
            None,
            ((10, 300, 500), (None, 200, 1000)),
            (1, 25),
        ),
        (
            "storage_packs",
            "storage",
            "Storage",
            "plan",
            "licensed",
            "package",
            500,
            10,
            None,
            (1, 45),
        ),
        ("api_calls", "api", "API calls", "plan", "metered", "per_unit", 1, None, None, (1, 1)),
    ],
    "recurly": [
        (
            "extra-seats",
            "extra-seats",
            "Extra seats",
            "addon",
            "licensed",
            "per_unit",
            700,
            None,
            None,
            (1, 10),
        ),
        (
            "seats-graduated",
            "seats-graduated",
            "Seats",
            "addon",
            "licensed",
            "tiered",
            0,
            None,
            ((5, 1000, 0), (None, 600, 0)),
            (2, 30),
        ),
        (
            "storage-steps",
            "storage-steps",
            "Storage",
            "addon",
            "licensed",
            "stairstep",
            0,
            None,
            ((10, 0, 1500), (50, 0, 4000), (None, 0, 9000)),
            (1, 80),
        ),
        (
            "api-usage",
            "api-usage",
            "API usage",
            "addon",
            "metered",
            "per_unit",
            1,
            None,
            None,
            (1, 1),
        ),
    ],
    "chargebee": [
        (
            "priority-support",
            "priority-support",
            "Priority support",
            "addon",
            "licensed",
            "flat_fee",
            1500,
            None,
            None,
            (1, 3),
        ),
        (
            "seats-volume",
            "seats-volume",
            "Seats",
            "addon",
            "licensed",
            "volume",
            0,
            None,
            ((10, 900, 0), (None, 700, 0)),
            (1, 40),
        ),
        (
            "storage-steps",
            "storage-steps",
            "Storage",
            "addon",
            "licensed",
            "stairstep",
            0,
            None,
            ((10, 0, 1500), (None, 0, 5000)),
            (1, 30),
        ),
        (
            "setup-fee",
            "setup-fee",
            "Setup fee",
            "charge",
            "licensed",
            "flat_fee",
            5000,
            None,
            None,
            (1, 1),
        ),
        (
            "api-calls",
            "api-calls",
            "API calls",
            "addon",
            "metered",
            "per_unit",
            1,
            None,
            None,
            (1, 1),
        ),
    ],
}
# Systems whose emulator renders items and tiers; the others get plans only.
_RENDERS_ITEMS = {
    "stripe": True,
    "recurly": True,
    "chargebee": True,
}
VARIETY_SYSTEMS = frozenset(system for system, on in _RENDERS_ITEMS.items() if on)
# Share of subscriptions on a monthly USD plan that carry extra items.
ITEMS_SHARE = 0.3
_PLAN_ID = {
    "stripe": lambda s: f"price_{s}",
    "recurly": lambda s: s.replace("_", "-"),
    "chargebee": lambda s: "-".join(w.capitalize() for w in s.split("_")),
}
_PRODUCT_ID = {"stripe": "prod_{}", "recurly": "{}", "chargebee": "{}"}
_COUPONS = [
    ("SAVE50", "50% off for 3 months", "50", "repeating", 3),
    ("LOYAL20", "20% off forever", "20", "forever", None),
    ("WELCOME10", "10% off once", "10", "once", None),
]
# (prefix, zero-padded width, first number) per kind and system; Recurly invoice ids are
# invoice numbers, so plain integers.
_ID_FORMATS = {
    "customer": {
        "stripe": ("cus_", 7, 0),
        "recurly": ("acct-", 7, 0),
        "chargebee": ("cb-cust-", 7, 0),
    },
    "subscription": {
        "stripe": ("sub_", 7, 0),
        "recurly": ("rs", 10, 0),
        "chargebee": ("cb-sub-", 7, 0),
    },
    "invoice": {
        "stripe": ("in_", 8, 0),
        "recurly": ("", 0, 100_000),
        "chargebee": ("cb-inv-", 8, 0),
    },
}
OFFERS = [
    ("pause_1m", "pause"),
    ("save50", "discount"),
    ("extend_14d", "extension"),
    ("downgrade_basic", "plan_change"),
    ("survey_gift", "custom"),
]
PAGES = ["page_a", "page_b", "holdout"]
CANCEL_REASONS = ["too_expensive", "not_using", "missing_feature", "switching", "other"]


@dataclass(frozen=True)
class GenerateOptions:
    customers: int
    seed: int
    as_of: datetime


# --------------------------------------------------------------------------- helpers


def _ids(kind: str, systems: pl.Expr, numbers: pl.Expr) -> pl.Expr:
    """Native-looking ids per system from running numbers."""
    expr = pl.lit(None, dtype=pl.String)
    for system, (prefix, width, first) in _ID_FORMATS[kind].items():
        text = (numbers + first).cast(pl.String).str.zfill(width)
        expr = pl.when(systems == system).then(pl.lit(prefix) + text).otherwise(expr)
    return expr


def _ts(col: str) -> pl.Expr:
    """Epoch seconds to the scenario's ISO-8601 'Z' text."""
    return pl.from_epoch(pl.col(col), time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias(col)


def _money(minor: pl.Expr, currency: pl.Expr) -> pl.Expr:
    """Minor units to the scenario's major-unit decimal string (JPY without decimals)."""
    cents = (minor % 100).cast(pl.String).str.zfill(2)
    two_places = (minor // 100).cast(pl.String) + "." + cents
    return (
        pl.when(currency.is_in(list(ZERO_DECIMAL_CURRENCIES)))
        .then(minor.cast(pl.String))
        .otherwise(two_places)
    )


def _text(values: np.ndarray) -> pl.Series:
    """A nullable string column from a numpy object array (None = null)."""
    return pl.Series(values.tolist(), dtype=pl.String)


def _pick(rng: np.random.Generator, n: int, shares: dict) -> np.ndarray:
    keys = list(shares)
    p = np.array([shares[k] for k in keys], dtype=float)
    return np.array(keys, dtype=object)[rng.choice(len(keys), size=n, p=p / p.sum())]


def _uniform(rng: np.random.Generator, low, high, size: int) -> np.ndarray:
    """`size` integers (seconds) drawn uniformly from [low, high]; bounds are scalars or
    arrays of that size."""
    low = np.broadcast_to(np.asarray(low, dtype=np.int64), size)
    high = np.maximum(np.broadcast_to(np.asarray(high, dtype=np.int64), size), low)
    return low + (rng.random(size) * (high - low + 1)).astype(np.int64)


# --------------------------------------------------------------------------- catalog


def plans_frame() -> pl.DataFrame:
    """The plans subscriptions are sold on (weight > 0), then the extras sold beside them
    (weight 0) for the systems in VARIETY_SYSTEMS."""
    rows = []
    for system, plan_id in _PLAN_ID.items():
        for suffix, product, name, currency, amount, interval, count, weight in _CATALOG:
            rows.append(
                _plan_row(system, plan_id(suffix), product, name, currency, amount, interval, count)
                | {"weight": weight}
            )
        for extra in _EXTRAS[system] if system in VARIETY_SYSTEMS else ():
            suffix, product, name, kind, usage, model, amount, package, tiers, _ = extra
            rows.append(
                _plan_row(system, plan_id(suffix + "_monthly_usd"), product, name, "USD", amount)
                | {
                    "weight": 0,
                    "kind": kind,
                    "usage_type": usage,
                    "pricing_model": model,
                    "package_size": package,
                    "tiers": _tiers(tiers),
                }
            )
    return pl.DataFrame(rows, infer_schema_length=None)


def _plan_row(
    system: str,
    plan_id: str,
    product: str,
    name: str,
    currency: str,
    amount: int,
    interval: str = "month",
    count: int = 1,
) -> dict:
    return {
        "billing_system": system,
        "plan_id": plan_id,
        "product_id": _PRODUCT_ID[system].format(product),
        "product_name": name,
        "currency": currency,
        "unit_minor": amount,
        "interval": interval,
        "interval_count": count,
        "kind": "plan",
        "usage_type": "licensed",
        "pricing_model": "per_unit",
        "package_size": None,
        "tiers": None,
    }


def _tiers(tiers) -> list[dict] | None:
    """Tiers in minor units as the scenario's money strings (USD: hundredths)."""
    if tiers is None:
        return None
    return [
        {"up_to": up_to, "unit_amount": f"{unit / 100:.2f}", "flat_amount": f"{flat / 100:.2f}"}
        for up_to, unit, flat in tiers
    ]


def coupons_frame() -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "billing_system": system,
                "coupon_id": code,
                "name": name,
                "percent_off": pct,
                "amount_off": None,
                "currency": None,
                "duration": duration,
                "duration_in_months": months,
                # Recurly redeems at account level by default; one coupon in three is
                # subscription level, so both kinds are served.
                "redemption_resource": (
                    ("subscription" if code == "SAVE50" else "account")
                    if system == "recurly"
                    else None
                ),
            }
            for system in SYSTEM_SHARES
            for code, name, pct, duration, months in _COUPONS
        ],
        schema_overrides={
            "amount_off": pl.String,
            "currency": pl.String,
            "redemption_resource": pl.String,
        },
    )


# --------------------------------------------------------------------------- customers


def customers_frame(rng: np.random.Generator, n: int, as_of: int) -> pl.DataFrame:
    created = _uniform(rng, as_of - HISTORY_DAYS * DAY, as_of - 7 * DAY, n)
    systems = _pick(rng, n, SYSTEM_SHARES)
    return pl.DataFrame(
        {"n": np.arange(n), "billing_system": systems.astype(str), "created_at": created}
    ).with_columns(
        customer_id=_ids("customer", pl.col("billing_system"), pl.col("n")),
        email=pl.format("customer{}@example.com", pl.col("n")),
        name=pl.format("Customer {}", pl.col("n")),
    )


# --------------------------------------------------------------------------- subscriptions


def subscriptions_frame(
    rng: np.random.Generator, customers: pl.DataFrame, plans: pl.DataFrame, as_of: int
) -> pl.DataFrame:
    per_customer = rng.choice([1, 2, 3], size=customers.height, p=[0.85, 0.12, 0.03])
    owner = np.repeat(np.arange(customers.height), per_customer)
    subs = customers.select("billing_system", "customer_id", "email", "created_at")[owner]
    subs = subs.with_columns(
        n=pl.int_range(pl.len()),
        first=pl.col("customer_id").is_first_distinct(),
        subs_of_customer=pl.len().over("customer_id"),
    )
    m = subs.height
    created = np.where(
        subs["first"].to_numpy(),
        subs["created_at"].to_numpy(),
        _uniform(rng, subs["created_at"].to_numpy(), as_of - DAY, m),
    )
    systems = subs["billing_system"].to_numpy()
    kind = _lifecycle(rng, systems)
    future = kind == "future"
    created = np.where(future, as_of - _uniform(rng, 0, 10 * DAY, m), created)
    activated = np.where(future, as_of + _uniform(rng, DAY, 30 * DAY, m), created)
    trial = (rng.random(m) < 0.15) & ~future
    # Trials in progress at as_of: a few subscriptions started within the last 13 days.
    new_trial = trial & (rng.random(m) < 0.2) & (kind == "active")
    created = np.where(
        new_trial,
        np.maximum(subs["created_at"].to_numpy(), as_of - _uniform(rng, 3600, 13 * DAY, m)),
        created,
    )
    activated = np.where(new_trial, created, activated)
    trial_end = np.where(trial, activated + 14 * DAY, 0)
    paid_start = np.where(trial, trial_end, activated)

    ended_kind = (kind == "ended") & (paid_start < as_of - DAY)
    kind = np.where((kind == "ended") & ~ended_kind, "active", kind)
    ended = np.where(ended_kind, _uniform(rng, paid_start + DAY, as_of - 1, m), 0)
    cancel_requested = ended_kind & (rng.random(m) < 0.8)
    canceled = np.where(
        cancel_requested, np.maximum(activated, ended - _uniform(rng, 0, 20 * DAY, m)), 0
    )
    scheduled = kind == "scheduled"
    canceled = np.where(
        scheduled, np.maximum(activated, as_of - _uniform(rng, 0, 25 * DAY, m)), canceled
    )
    ended = np.where(scheduled, as_of + _uniform(rng, DAY, 28 * DAY, m), ended)

    paused = kind == "paused"
    paused_at = np.where(paused, np.maximum(paid_start, as_of - _uniform(rng, DAY, 60 * DAY, m)), 0)
    resumes = np.where(
        paused & (rng.random(m) < 0.7), paused_at + _uniform(rng, 30 * DAY, 120 * DAY, m), 0
    )
    dunning = np.where(kind == "dunning", np.where(rng.random(m) < 0.8, "past_due", "unpaid"), None)
    coupon = np.where(rng.random(m) < 0.1, rng.choice([c[0] for c in _COUPONS], size=m), None)
    quantity = np.where(rng.random(m) < 0.9, 1, rng.integers(2, 6, size=m))

    subs = subs.with_columns(
        subscription_id=_ids("subscription", pl.col("billing_system"), pl.col("n")),
        plan_id=_plan_choice(rng, plans, systems),
        quantity=pl.Series(quantity),
        coupon_id=_text(coupon),
        created_at=pl.Series(created),
        activated_at=pl.Series(activated),
        trial_start=pl.Series(np.where(trial, activated, 0)),
        trial_end=pl.Series(trial_end),
        canceled_at=pl.Series(canceled),
        ended_at=pl.Series(ended),
        paused_at=pl.Series(paused_at),
        resumes_at=pl.Series(resumes),
        dunning=_text(dunning),
        kind=pl.Series(kind.astype(str)),
    )
    zero_is_null = SUBSCRIPTION_TIME_FIELDS[2:]  # all but created_at and activated_at
    subs = subs.with_columns(pl.when(pl.col(c) > 0).then(pl.col(c)).alias(c) for c in zero_is_null)
    # Most scheduled cancels take effect at the end of the current period (Stripe's
    # cancel_at_period_end); the rest at a chosen date (cancel_at).
    at_period_end = (kind == "scheduled") & (rng.random(m) < 0.8)
    return _end_at_period_end(subs, plans, as_of, pl.Series(at_period_end))


def with_items(rng: np.random.Generator, subs: pl.DataFrame, plans: pl.DataFrame) -> pl.DataFrame:
    """`items`: on ITEMS_SHARE of the subscriptions to a monthly USD plan of a system in
    VARIETY_SYSTEMS, one or two of its extras, each with a quantity from its range."""
    monthly_usd = plans.filter(
        (pl.col("weight") > 0)
        & (pl.col("currency") == "USD")
        & (pl.col("interval") == "month")
        & (pl.col("interval_count") == 1)
    ).select("billing_system", "plan_id")
    eligible = (
        subs.select("billing_system", "plan_id")
        .join(
            monthly_usd.with_columns(ok=pl.lit(True)), on=["billing_system", "plan_id"], how="left"
        )["ok"]
        .fill_null(False)
        .to_numpy()
    )
    systems = subs["billing_system"].to_numpy()
    chosen = (
        eligible & np.isin(systems, list(VARIETY_SYSTEMS)) & (rng.random(subs.height) < ITEMS_SHARE)
    )
    items: list[list[dict] | None] = [None] * subs.height
    for row in np.flatnonzero(chosen):
        extras = _EXTRAS[systems[row]]
        picks = rng.choice(len(extras), size=rng.integers(1, 3), replace=False)
        items[row] = [
            {
                "plan_id": _PLAN_ID[systems[row]](extras[k][0] + "_monthly_usd"),
                "quantity": int(rng.integers(extras[k][9][0], extras[k][9][1] + 1)),
            }
            for k in sorted(picks)
        ]
    dtype = pl.List(pl.Struct({"plan_id": pl.String, "quantity": pl.Int64}))
    return subs.with_columns(items=pl.Series("items", items, dtype=dtype))


def _with_period_math(frame: pl.DataFrame, plans: pl.DataFrame) -> pl.DataFrame:
    """Join each subscription's plan and add `months` (month/year plans) or `days`
    (day/week plans) per period, and `anchor`, the start of paid periods."""
    return frame.join(
        plans.select(
            "billing_system", "plan_id", "interval", "interval_count", "unit_minor", "currency"
        ),
        on=["billing_system", "plan_id"],
    ).with_columns(
        anchor=pl.coalesce("trial_end", "activated_at"),
        months=pl.when(pl.col("interval") == "year")
        .then(12 * pl.col("interval_count"))
        .when(pl.col("interval") == "month")
        .then(pl.col("interval_count")),
        days=pl.when(pl.col("interval") == "week")
        .then(7 * pl.col("interval_count"))
        .when(pl.col("interval") == "day")
        .then(pl.col("interval_count")),
    )


def _period_start(k: pl.Expr) -> pl.Expr:
    """Epoch seconds of the start of period k from `anchor` (months clamp to month end)."""
    anchor = pl.from_epoch("anchor", time_unit="s")
    return (
        pl.when(pl.col("months").is_not_null())
        .then(anchor.dt.offset_by(pl.format("{}mo", k * pl.col("months"))))
        .otherwise(anchor + pl.duration(days=k * pl.col("days")))
        .dt.epoch("s")
    )


def _end_at_period_end(
    subs: pl.DataFrame, plans: pl.DataFrame, as_of: int, chosen: pl.Series
) -> pl.DataFrame:
    """ended_at moved to the first period boundary after as_of where `chosen`."""
    math = _with_period_math(
        subs.select("billing_system", "plan_id", "trial_end", "activated_at"), plans
    )
    approx_len = pl.coalesce(pl.col("months") * 30 * DAY, pl.col("days") * DAY)
    k = ((as_of - pl.col("anchor")) // approx_len).clip(lower_bound=0)
    # The estimate is at most two periods short for month-based plans: step past as_of.
    ends = math.select(
        pl.min_horizontal(
            *(
                pl.when(_period_start(k + step) > as_of).then(_period_start(k + step))
                for step in range(0, 4)
            )
        ).alias("end")
    )["end"]
    return subs.with_columns(
        ended_at=pl.when(chosen).then(pl.max_horizontal(ends, as_of + 60)).otherwise("ended_at")
    )


def _lifecycle(rng: np.random.Generator, systems: np.ndarray) -> np.ndarray:
    roll = rng.random(len(systems))
    kind = np.full(len(systems), "active", dtype=object)
    bounds = [("ended", 0.25), ("scheduled", 0.06), ("paused", 0.05), ("special", 0.05)]
    low = 0.0
    for name, share in bounds:
        kind[(roll >= low) & (roll < low + share)] = name
        low += share
    special = kind == "special"
    kind[special & (systems == "stripe")] = "dunning"
    kind[special & (systems != "stripe")] = np.where(
        rng.random(int((special & (systems != "stripe")).sum())) < 0.4, "future", "active"
    )
    return kind.astype(str)


def _plan_choice(rng: np.random.Generator, plans: pl.DataFrame, systems: np.ndarray) -> pl.Series:
    out = np.empty(len(systems), dtype=object)
    for system in SYSTEM_SHARES:
        mine = plans.filter(pl.col("billing_system") == system)
        mine = mine.filter(pl.col("weight") > 0)
        weights = mine["weight"].to_numpy().astype(float)
        mask = systems == system
        out[mask] = mine["plan_id"].to_numpy()[
            rng.choice(mine.height, size=int(mask.sum()), p=weights / weights.sum())
        ]
    return pl.Series(out.astype(str))


# --------------------------------------------------------------------------- invoices


def invoices_frame(
    rng: np.random.Generator, subs: pl.DataFrame, plans: pl.DataFrame, as_of: int
) -> pl.DataFrame:
    """The last INVOICE_PERIODS billing periods of each subscription's paid service."""
    base = (
        _with_period_math(subs, plans)
        .with_columns(until=pl.min_horizontal(pl.col("ended_at").fill_null(as_of), pl.lit(as_of)))
        .filter(pl.col("anchor") < pl.col("until"))
        .with_columns(min_len=pl.coalesce(pl.col("months") * 28, pl.col("days")) * DAY)
        .with_columns(k_max=(pl.col("until") - pl.col("anchor")) // pl.col("min_len"))
        .with_columns(
            k=pl.int_ranges(pl.max_horizontal(0, pl.col("k_max") - 20), pl.col("k_max") + 1)
        )
        .explode("k")
    )
    periods = (
        base.with_columns(period_start=_period_start(pl.col("k")))
        .filter(pl.col("period_start") < pl.col("until"))
        .with_columns(
            rank=pl.col("period_start").rank("ordinal", descending=True).over("subscription_id")
        )
        .filter(pl.col("rank") <= INVOICE_PERIODS)
        .sort("billing_system", "subscription_id", "period_start")
    )
    n = periods.height
    latest = periods["rank"].to_numpy() == 1
    in_dunning = periods["dunning"].is_not_null().to_numpy()
    status = np.where(latest & in_dunning, "open", np.where(rng.random(n) < 0.03, "void", "paid"))
    # Paid within hours of issue, and never after as_of (the scenario's present).
    collected = np.minimum(
        periods["period_start"].to_numpy() + _uniform(rng, 60, 6 * 3600, n), as_of
    )
    paid_at = np.where(status == "paid", collected, 0)
    return periods.with_columns(
        n=pl.int_range(pl.len()),
        status=pl.Series(status.astype(str)),
        paid_at=pl.Series(paid_at),
        total_minor=pl.col("unit_minor") * pl.col("quantity"),
    ).select(
        "billing_system",
        invoice_id=_ids("invoice", pl.col("billing_system"), pl.col("n")),
        customer_id="customer_id",
        subscription_id="subscription_id",
        currency="currency",
        total=_money(pl.col("total_minor"), pl.col("currency")),
        status="status",
        created_at="period_start",
        paid_at=pl.when(pl.col("paid_at") > 0).then(pl.col("paid_at")),
    )


# --------------------------------------------------------------------------- variety

# What years-old accounts hold beside the plain case, each on a share of the records it
# can apply to (own random stream, so every other draw of a seed stays as it was).
# Further currencies of the two most sold USD plans, in minor units: Stripe and Recurly
# price one plan in several currencies; Chargebee sells one item price per currency.
_CURRENCY_OPTIONS = {
    "basic_monthly_usd": {"EUR": 1700, "GBP": 1500},
    "pro_monthly_usd": {"EUR": 4500, "GBP": 3900},
}
_CURRENCY_SYSTEMS = ("stripe", "recurly")
_ARCHIVED_PLAN = "digest_weekly_usd"  # retired, still billed to its subscribers
_DELETED_COUPON = "WELCOME10"
_CUSTOMER_COUPON = "LOYAL20"  # Stripe customer-level discount
_PENDING_PLAN = "basic_monthly_usd"  # where scheduled downgrades go
VARIETY_SHARES = {
    "currency": 0.3,  # subscriptions on a plan with currency options, without items
    "customer_coupon": 0.05,  # Stripe customers
    "deleted_customer": 0.2,  # customers whose every subscription has ended
    "extra_coupons": 0.3,  # subscriptions with a coupon
    "term": 0.1,  # Recurly and Chargebee subscriptions
    "pending": 0.05,  # USD subscriptions in service with no end and no items
    "deleted_subscription": 0.15,  # ended Chargebee subscriptions
    "transferred": 0.3,  # ended Chargebee subscriptions without a cancel request
    "draft": 0.03,  # latest paid invoices of subscriptions in service
    "overdue": 0.03,  # the same, left unpaid past their due date
    "past_due": 0.5,  # open invoices
    "uncollectible": 0.34,  # void invoices
    "credit": 0.05,  # Recurly customers with a paid invoice
}


def _plan_ids(suffix: str, systems=SYSTEM_SHARES) -> list[str]:
    return [_PLAN_ID[system](suffix) for system in systems]


def _roll(rng: np.random.Generator, mask: np.ndarray, share: str) -> np.ndarray:
    return mask & (rng.random(len(mask)) < VARIETY_SHARES[share])


def varied_plans(plans: pl.DataFrame, as_of: int) -> pl.DataFrame:
    """Currency options on two USD plans (Stripe, Recurly) and one archived plan."""
    options = pl.lit(None, dtype=pl.Struct({"EUR": pl.String, "GBP": pl.String}))
    for suffix, amounts in _CURRENCY_OPTIONS.items():
        struct = pl.struct(**{c: _money(pl.lit(m), pl.lit(c)) for c, m in amounts.items()})
        wanted = pl.col("plan_id").is_in(_plan_ids(suffix, _CURRENCY_SYSTEMS))
        options = pl.when(wanted).then(struct).otherwise(options)
    archived = pl.col("plan_id").is_in(_plan_ids(_ARCHIVED_PLAN))
    return plans.with_columns(
        currency_options=options,
        archived_at=pl.when(archived).then(pl.lit(as_of - 200 * DAY)),
    )


def varied_coupons(coupons: pl.DataFrame, as_of: int) -> pl.DataFrame:
    deleted = pl.col("coupon_id") == _DELETED_COUPON
    return coupons.with_columns(deleted_at=pl.when(deleted).then(pl.lit(as_of - 90 * DAY)))


def varied_subscriptions(
    rng: np.random.Generator, subs: pl.DataFrame, plans: pl.DataFrame, as_of: int
) -> pl.DataFrame:
    """Billing currencies, several coupons, terms, pending changes, Chargebee deletions
    and transfers."""
    m = subs.height
    systems = subs["billing_system"].to_numpy()
    no_items = subs["items"].is_null().to_numpy()
    optioned = subs["plan_id"].is_in(
        [p for suffix in _CURRENCY_OPTIONS for p in _plan_ids(suffix, _CURRENCY_SYSTEMS)]
    )
    in_other = _roll(rng, optioned.to_numpy() & no_items, "currency")
    currency = np.where(in_other, rng.choice(["EUR", "GBP"], size=m), None)

    coupons = [c[0] for c in _COUPONS]
    coupon = subs["coupon_id"].to_numpy()
    extra = _roll(rng, subs["coupon_id"].is_not_null().to_numpy(), "extra_coupons")
    extra_ids = [
        [coupons[(coupons.index(coupon[i]) + 1) % len(coupons)]] if extra[i] else None
        for i in range(m)
    ]

    months = subs.join(
        plans.select("billing_system", "plan_id", "interval", "interval_count"),
        on=["billing_system", "plan_id"],
        how="left",
        maintain_order="left",
    )
    monthly = (months["interval"] == "month") & (months["interval_count"] == 1)
    term = _roll(rng, systems != "stripe", "term")
    term_cycles = np.where(term, np.where(monthly.to_numpy(), 12, 2), 0)

    open_ended = (subs["canceled_at"].is_null() & subs["ended_at"].is_null()).to_numpy()
    in_service = open_ended & (subs["activated_at"].to_numpy() <= as_of)
    usd = (
        subs["plan_id"]
        .is_in(plans.filter(pl.col("currency") == "USD")["plan_id"].to_list())
        .to_numpy()
    )
    downgrade = ~subs["plan_id"].is_in(_plan_ids(_PENDING_PLAN)).to_numpy()
    pending = _roll(rng, in_service & usd & downgrade & no_items & ~in_other, "pending")
    pending_plan = np.array([_PLAN_ID[s](_PENDING_PLAN) for s in systems], dtype=object)

    ended = subs["ended_at"].fill_null(as_of).to_numpy()
    chargebee_ended = (systems == "chargebee") & (ended < as_of - 2 * DAY)
    deleted = _roll(rng, chargebee_ended, "deleted_subscription")
    no_request = subs["canceled_at"].is_null().to_numpy()
    transferred = _roll(rng, chargebee_ended & no_request & ~deleted, "transferred")
    return subs.with_columns(
        currency=_text(currency),
        extra_coupon_ids=pl.Series(extra_ids, dtype=pl.List(pl.String)),
        term_cycles=pl.Series(term_cycles).replace(0, None),
        pending_plan_id=_text(np.where(pending, pending_plan, None)),
        pending_quantity=pl.Series(np.where(pending & (rng.random(m) < 0.5), 2, 0)).replace(
            0, None
        ),
        deleted_at=pl.Series(np.where(deleted, ended + (as_of - ended) // 2, 0)).replace(0, None),
        transferred_at=pl.Series(np.where(transferred, ended, 0)).replace(0, None),
    )


def varied_customers(
    rng: np.random.Generator, customers: pl.DataFrame, subs: pl.DataFrame, as_of: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Stripe customer-level discounts and deleted customers (whose subscriptions had all
    ended; Chargebee deletes a customer's subscriptions with it)."""
    ends = subs.group_by("billing_system", "customer_id").agg(
        all_ended=(pl.col("ended_at").is_not_null() & (pl.col("ended_at") < as_of - DAY)).all(),
        last_end=pl.col("ended_at").max(),
    )
    customers = customers.join(
        ends, on=["billing_system", "customer_id"], how="left", maintain_order="left"
    )
    systems = customers["billing_system"].to_numpy()
    gone = _roll(rng, customers["all_ended"].fill_null(False).to_numpy(), "deleted_customer")
    last_end = customers["last_end"].fill_null(as_of).to_numpy()
    deleted_at = np.where(gone, last_end + (as_of - last_end) // 2, 0)
    discounted = _roll(rng, systems == "stripe", "customer_coupon")
    customers = customers.with_columns(
        coupon_id=_text(np.where(discounted, _CUSTOMER_COUPON, None)),
        deleted_at=pl.Series(deleted_at).replace(0, None),
    )
    chargebee_gone = customers.filter(
        (pl.col("billing_system") == "chargebee") & pl.col("deleted_at").is_not_null()
    ).select("billing_system", "customer_id", gone_at="deleted_at")
    subs = (
        subs.join(
            chargebee_gone, on=["billing_system", "customer_id"], how="left", maintain_order="left"
        )
        .with_columns(deleted_at=pl.coalesce("gone_at", "deleted_at"))
        .drop("gone_at")
    )
    return customers, subs


def varied_invoices(
    rng: np.random.Generator, invoices: pl.DataFrame, subs: pl.DataFrame, as_of: int
) -> pl.DataFrame:
    """Invoices in the subscription's billing currency, drafts, past-due and uncollectible
    invoices, and Recurly credit invoices."""
    billed = subs.filter(pl.col("currency").is_not_null()).select(
        "billing_system", "subscription_id", "plan_id", "quantity", billed_in="currency"
    )
    option_minor = pl.lit(None, dtype=pl.Int64)
    for suffix, amounts in _CURRENCY_OPTIONS.items():
        for code, minor in amounts.items():
            match = pl.col("plan_id").is_in(_plan_ids(suffix)) & (pl.col("billed_in") == code)
            option_minor = pl.when(match).then(pl.lit(minor)).otherwise(option_minor)
    invoices = (
        invoices.join(
            billed, on=["billing_system", "subscription_id"], how="left", maintain_order="left"
        )
        .with_columns(
            currency=pl.coalesce("billed_in", "currency"),
            total=pl.coalesce(
                _money(option_minor * pl.col("quantity"), pl.col("billed_in")), "total"
            ),
        )
        .drop("billed_in", "plan_id", "quantity")
    )
    status = invoices["status"].to_numpy().astype(object)
    latest = invoices["subscription_id"].is_last_distinct().to_numpy()
    serving = (
        invoices["subscription_id"]
        .is_in(
            subs.filter(
                pl.col("ended_at").is_null()
                & pl.col("canceled_at").is_null()
                & pl.col("dunning").is_null()
            )["subscription_id"].to_list()
        )
        .to_numpy()
    )
    status = np.where(_roll(rng, latest & serving & (status == "paid"), "draft"), "draft", status)
    status = np.where(
        _roll(rng, latest & serving & (status == "paid"), "overdue"), "past_due", status
    )
    status = np.where(_roll(rng, status == "open", "past_due"), "past_due", status)
    status = np.where(_roll(rng, status == "void", "uncollectible"), "uncollectible", status)
    invoices = invoices.with_columns(
        status=pl.Series(status.astype(str)),
        paid_at=pl.when(pl.Series(status == "paid")).then(pl.col("paid_at")),
        kind=pl.lit("charge"),
    )
    return pl.concat([invoices, _credit_invoices(rng, invoices, as_of)], how="diagonal_relaxed")


def _credit_invoices(rng: np.random.Generator, invoices: pl.DataFrame, as_of: int) -> pl.DataFrame:
    """Recurly credit invoices (a refund or a credit given), paid = fully applied."""
    payers = (
        invoices.filter((pl.col("billing_system") == "recurly") & (pl.col("status") == "paid"))
        .group_by("customer_id", maintain_order=True)
        .agg(pl.col("subscription_id").last(), pl.col("currency").last())
    )
    chosen = payers.filter(pl.Series(_roll(rng, np.ones(payers.height, bool), "credit")))
    k = chosen.height
    created = as_of - _uniform(rng, DAY, 60 * DAY, k)
    applied = rng.random(k) < 0.7
    return chosen.with_columns(
        billing_system=pl.lit("recurly"),
        invoice_id=(pl.int_range(pl.len()) + 900_000).cast(pl.String),
        total=_money(pl.lit(500), pl.col("currency")),
        status=pl.Series(np.where(applied, "paid", "open").astype(str)),
        created_at=pl.Series(created),
        paid_at=pl.Series(np.where(applied, np.minimum(created + 3600, as_of), 0)).replace(0, None),
        kind=pl.lit("credit"),
    )


# --------------------------------------------------------------------------- exit sessions


def _session_profiles(subs: pl.DataFrame, as_of: int) -> dict[str, pl.DataFrame]:
    """Subscriptions eligible for each session profile, each aimed at one outcome."""
    window_start = as_of - SESSION_DAYS * DAY
    recent_cancel = pl.col("canceled_at").is_between(window_start + 30 * DAY, as_of)
    open_ended = pl.col("ended_at").is_null() & pl.col("canceled_at").is_null()
    return {
        # Cancels completed on the page: billing canceled_at follows the page's action.
        "page_cancel": subs.filter(recent_cancel & (pl.col("n") % 5 < 3)),
        # Stayed on the page but canceled elsewhere within 30 days: invalid saves.
        "cancel_elsewhere": subs.filter(recent_cancel & (pl.col("n") % 5 >= 3)),
        "unpaid": subs.filter(pl.col("dunning") == "unpaid"),
        # In service, no cancel: valid saves (or watch list when recent).
        "in_service": subs.filter(
            open_ended & (pl.col("kind") != "future") & (pl.col("activated_at") < as_of - 2 * DAY)
        ),
        "after_end": subs.filter(pl.col("ended_at") < as_of - 10 * DAY),
        "scheduled": subs.filter(pl.col("kind") == "scheduled"),
        # Between a cancel request and the end of service: canceled before the visit.
        "cancel_pending": subs.filter(
            (pl.col("ended_at") - pl.col("canceled_at") > 2 * DAY)
            & (pl.col("ended_at") > window_start)
            & (pl.col("ended_at") < as_of)
        ),
        "future": subs.filter(pl.col("kind") == "future"),
        "recent_start": subs.filter(
            (pl.col("activated_at") > window_start + 5 * DAY)
            & (pl.col("activated_at") < as_of)
            & open_ended
        ),
    }


_PROFILE_SHARES = {  # share of eligible subscriptions visited, minimum visits
    "page_cancel": (0.6, 6),
    "cancel_elsewhere": (0.6, 6),
    "unpaid": (0.5, 2),
    "in_service": (0.1, 20),
    "after_end": (0.02, 4),
    "scheduled": (0.3, 4),
    "cancel_pending": (0.1, 4),
    "future": (0.3, 3),
    "recent_start": (0.05, 3),
}


def _sample(
    rng: np.random.Generator, frame: pl.DataFrame, share: float, minimum: int
) -> pl.DataFrame:
    if frame.height == 0:
        return frame
    k = min(frame.height, max(minimum, int(frame.height * share)))
    return frame[np.sort(rng.choice(frame.height, size=k, replace=False))]


def _visits(rng: np.random.Generator, profile: str, rows: pl.DataFrame, as_of: int) -> pl.DataFrame:
    """One landing per row, with the start time and action the profile calls for."""
    n = rows.height
    window_start = as_of - SESSION_DAYS * DAY
    act = rows["activated_at"].to_numpy()
    canceled = rows["canceled_at"].fill_null(0).to_numpy()
    ended = rows["ended_at"].fill_null(0).to_numpy()
    action = np.full(n, None, dtype=object)
    if profile == "page_cancel":
        started = canceled - _uniform(rng, 60, 900, n)
        action[:] = "canceled"
        action_at = canceled - 30
    elif profile == "cancel_elsewhere":
        started = np.maximum(act + 60, canceled - _uniform(rng, DAY, 25 * DAY, n))
        action_at = None
    elif profile == "after_end":
        started = np.minimum(ended + _uniform(rng, DAY, 60 * DAY, n), as_of - DAY)
        action_at = None
    elif profile == "scheduled":
        started = canceled + _uniform(rng, 3600, np.maximum(as_of - canceled - 3600, 3600), n)
        action_at = None
    elif profile == "cancel_pending":
        started = _uniform(rng, canceled + 3600, ended - 3600, n)
        action_at = None
    elif profile == "future":
        started = as_of - _uniform(rng, DAY, 10 * DAY, n)
        action_at = None
    elif profile == "recent_start":
        started = act - _uniform(rng, DAY, 5 * DAY, n)
        action_at = None
    else:  # in_service, unpaid
        started = _uniform(rng, np.maximum(act + DAY, window_start), as_of - 3600, n)
        action_at = None
    started = np.clip(started, window_start, as_of - 120)
    if action_at is None:
        action = rng.choice(
            np.array(["offer_accepted", "deflected", None], dtype=object),
            size=n,
            p=[0.5, 0.25, 0.25],
        )
        if profile in ("after_end", "scheduled", "cancel_pending"):
            action = np.where(rng.random(n) < 0.5, "canceled", None).astype(object)
        action_at = started + _uniform(rng, 20, 600, n)
    else:
        action_at = np.maximum(action_at, started)
    return pl.DataFrame(
        {
            "billing_system": rows["billing_system"],
            "n": rows["n"],
            "subscription_id": rows["subscription_id"],
            "customer_id": rows["customer_id"],
            "email": rows["email"],
            "single_sub": rows["subs_of_customer"] == 1,
            "started_at": started,
            "action": _text(action),
            "action_at": np.minimum(action_at, as_of - 1),
            "profile": [profile] * n,
        }
    )


def _repeat_visits(rng: np.random.Generator, first: pl.DataFrame, as_of: int) -> pl.DataFrame:
    """Later visits by the same billing id: inside the 30-day window, on its edge and past it."""
    gaps = np.array([10, 29, 30, 31, 45]) * DAY
    repeat = first.filter(pl.col("profile") == "in_service")
    repeat = repeat[: max(len(gaps), repeat.height // 4)]
    gap = gaps[np.arange(repeat.height) % len(gaps)]
    started = repeat["started_at"].to_numpy() + gap
    action = rng.choice(
        np.array(["canceled", "deflected", "offer_accepted", None], dtype=object),
        size=repeat.height,
    )
    return repeat.with_columns(
        started_at=pl.Series(started),
        action=_text(action),
        action_at=pl.Series(started + _uniform(rng, 20, 600, repeat.height)),
        profile=pl.lit("repeat"),
    ).filter(pl.col("started_at") < as_of - 600)


def _unknown_visits(rng: np.random.Generator, n: int, as_of: int) -> pl.DataFrame:
    systems = _pick(rng, n, SYSTEM_SHARES).astype(str)
    started = as_of - _uniform(rng, DAY, SESSION_DAYS * DAY, n)
    return pl.DataFrame(
        {
            "billing_system": systems,
            "n": np.arange(n),
            "subscription_id": [f"sub_unknown_{i}" for i in range(n)],
            "customer_id": [f"cus_unknown_{i}" for i in range(n)],
            "email": [None] * n,
            "single_sub": [True] * n,
            "started_at": started,
            "action": _text(np.where(np.arange(n) % 2 == 0, "canceled", None)),
            "action_at": started + 60,
            "profile": ["unknown"] * n,
        },
        schema_overrides={"email": pl.String},
    )


def exit_sessions_frame(rng: np.random.Generator, subs: pl.DataFrame, as_of: int) -> pl.DataFrame:
    profiles = _session_profiles(subs, as_of)
    first = pl.concat(
        [
            _visits(rng, name, _sample(rng, frame, *_PROFILE_SHARES[name]), as_of)
            for name, frame in profiles.items()
        ]
    )
    visits = pl.concat(
        [
            first,
            _repeat_visits(rng, first, as_of),
            _unknown_visits(rng, max(4, first.height // 50), as_of),
        ]
    ).sort("started_at", "subscription_id")
    n = visits.height
    # A customer id as billing id for 30% of single-subscription customers and 5% of the
    # others (matching then picks the one in service), decided per subscription so that
    # repeat visits keep their billing id.
    number = visits["n"].to_numpy()
    use_customer = (visits["single_sub"].to_numpy() & (number % 10 < 3)) | (number % 20 == 7)
    # Pages are A/B-assigned per subscriber (40/40/20), so a repeat visit sees the same one.
    page = np.array(PAGES)[np.array([0, 0, 1, 1, 2])[number % 5]]
    offer_index = rng.integers(0, len(OFFERS), size=n)
    # The holdout page shows no offers: an accepted offer there becomes a deflection.
    action = visits["action"].to_numpy().astype(object)
    action = _text(
        np.where((page == "holdout") & (action == "offer_accepted"), "deflected", action)
    )
    accepted = action == "offer_accepted"
    reasons = rng.choice(CANCEL_REASONS, size=n)
    seats = rng.integers(1, 20, size=n)
    custom = [
        {"seats": int(s)} if r < 0.3 else None for s, r in zip(seats, rng.random(n), strict=True)
    ]
    billing_id = np.where(
        use_customer, visits["customer_id"].to_numpy(), visits["subscription_id"].to_numpy()
    )
    return visits.with_columns(
        session_id=pl.format("es_{}", pl.int_range(pl.len()).cast(pl.String).str.zfill(8)),
        app_id=pl.lit("app_main"),
        billing_id=pl.Series(billing_id),
        email=pl.when(pl.Series(rng.random(n) < 0.9)).then(pl.col("email")),
        action=action,
        action_at=pl.when(action.is_not_null()).then(pl.col("action_at")),
        offer_id=pl.when(accepted).then(pl.Series([OFFERS[i][0] for i in offer_index])),
        offer_type=pl.when(accepted).then(pl.Series([OFFERS[i][1] for i in offer_index])),
        page_id=pl.Series(page),
        cancel_reason=pl.when(action == "canceled").then(pl.Series(reasons)),
        custom=pl.Series(custom, dtype=pl.Struct({"seats": pl.Int64})),
    )


# --------------------------------------------------------------------------- assemble


def generate(options: GenerateOptions) -> dict[str, pl.DataFrame]:
    """Every section as a frame whose columns are the scenario fields, in schema order."""
    rng = np.random.default_rng(options.seed)
    as_of = int(options.as_of.timestamp())
    plans = plans_frame()
    customers = customers_frame(rng, options.customers, as_of)
    subs = subscriptions_frame(rng, customers, plans, as_of)
    # Its own stream: drawing items leaves every other draw of a seed as it was.
    subs = with_items(np.random.default_rng((options.seed, 1)), subs, plans)
    variety = np.random.default_rng((options.seed, 2))
    subs = varied_subscriptions(variety, subs, plans, as_of)
    customers, subs = varied_customers(variety, customers, subs, as_of)
    billed = invoices_frame(rng, subs.drop("currency"), plans, as_of)  # in the plan's currency
    invoices = varied_invoices(variety, billed, subs, as_of)
    sessions = exit_sessions_frame(rng, subs, as_of)
    plans = varied_plans(plans, as_of)
    frames = {
        "plans": plans.with_columns(unit_amount=_money(pl.col("unit_minor"), pl.col("currency"))),
        "coupons": varied_coupons(coupons_frame(), as_of),
        "customers": customers,
        "subscriptions": subs,
        "invoices": invoices,
        "exit_sessions": sessions,
    }
    out = {}
    for section, frame in frames.items():
        columns = [f.name for f in SCHEMA[section]]
        times = [f.name for f in SCHEMA[section] if f.kind == "ts"]
        # A field this generator does not draw is left out (null), as a scenario may.
        frame = frame.with_columns(pl.lit(None).alias(c) for c in columns if c not in frame.columns)
        out[section] = frame.with_columns(
            _ts(c) for c in times if frame[c].dtype not in (pl.String, pl.Null)
        ).select(columns)
    return out


def write_scenario(options: GenerateOptions, path: str | Path) -> dict[str, int]:
    """Generate and write one scenario JSON document; returns rows per section."""
    frames = generate(options)
    header = {
        "as_of": format_ts(options.as_of),
        "reporting_currency": "USD",
        "fx_rates": FX_RATES,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(orjson.dumps(header)[:-1])
        for section, frame in frames.items():
            out.write(f',"{section}":'.encode())
            frame.write_json(out)
        out.write(b"}")
    return {section: frame.height for section, frame in frames.items()}
