"""Billing facts every emulator derives the same way: status and current period at a time.

The scenario states timestamps, not statuses; each emulator asks these functions what a
subscription looks like at the sandbox clock's `now`, then spells it in its own API's
vocabulary. Keeping the derivation in one place is what makes the three systems agree.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from decimal import Decimal

NEUTRAL_STATUSES = (
    "future",
    "trialing",
    "active",
    "paused",
    "past_due",
    "unpaid",
    "non_renewing",
    "canceled",
)


def is_ended(sub: dict, now: datetime) -> bool:
    return sub["ended_at"] is not None and sub["ended_at"] <= now


def is_future(sub: dict, now: datetime) -> bool:
    return sub["activated_at"] > now


def is_scheduled_to_cancel(sub: dict, now: datetime) -> bool:
    """A cancel is requested and service has not ended yet."""
    return sub["canceled_at"] is not None and not is_ended(sub, now)


def is_paused(sub: dict, now: datetime) -> bool:
    paused_at, resumes_at = sub["paused_at"], sub["resumes_at"]
    return paused_at is not None and paused_at <= now and (resumes_at is None or now < resumes_at)


def is_trialing(sub: dict, now: datetime) -> bool:
    return sub["trial_end"] is not None and sub["trial_end"] > now and not is_future(sub, now)


def neutral_status(sub: dict, now: datetime) -> str:
    """The normalised status of validation.md §1, by the precedence of scenario.md."""
    if is_ended(sub, now):
        return "canceled"
    if is_future(sub, now):
        return "future"
    if is_scheduled_to_cancel(sub, now):
        return "non_renewing"
    if is_paused(sub, now):
        return "paused"
    if is_trialing(sub, now):
        return "trialing"
    if sub.get("dunning"):
        return sub["dunning"]
    return "active"


def add_interval(start: datetime, interval: str, count: int) -> datetime:
    """`start` moved by `count` intervals; months clamp to the month's last day, as billing
    systems anchor a 31st to the 30th/28th."""
    if interval == "day":
        return start + timedelta(days=count)
    if interval == "week":
        return start + timedelta(weeks=count)
    months = count * (12 if interval == "year" else 1)
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def _period_containing(anchor: datetime, at: datetime, interval: str, count: int):
    """The billing period [start, end) from `anchor` that contains `at` (at >= anchor)."""
    if interval in ("day", "week"):
        length = timedelta(days=count * (7 if interval == "week" else 1))
        start = anchor + length * ((at - anchor) // length)
        return start, start + length
    months = count * (12 if interval == "year" else 1)
    elapsed = (at.year - anchor.year) * 12 + at.month - anchor.month
    k = max(0, elapsed // months)
    start = add_interval(anchor, "month", k * months)
    while start > at and k > 0:
        k -= 1
        start = add_interval(anchor, "month", k * months)
    end = add_interval(anchor, "month", (k + 1) * months)
    while end <= at:
        k += 1
        start, end = end, add_interval(anchor, "month", (k + 1) * months)
    return start, end


def current_period(sub: dict, plan: dict, now: datetime) -> tuple[datetime, datetime]:
    """Current period start/end as the billing system shows it at `now`.

    A trial is its own period; paid periods are anchored at the trial end (or activation).
    An extension (`term_end`, set by a write) stretches the current term to that date and
    later periods follow from it. An ended subscription shows its last period.
    """
    at = min(now, sub["ended_at"]) if sub["ended_at"] is not None else now
    if is_future(sub, at):
        return sub["activated_at"], add_interval(
            sub["activated_at"], plan["interval"], plan["interval_count"]
        )
    term_end = sub.get("term_end")
    if term_end is not None and at < term_end:
        return sub.get("term_start") or sub["activated_at"], term_end
    trial_end = sub["trial_end"]
    if trial_end is not None and at < trial_end:
        return sub["trial_start"] or sub["activated_at"], trial_end
    anchor = term_end or trial_end or sub["activated_at"]
    if at == sub["ended_at"] and at > anchor:
        at = at - timedelta(microseconds=1)  # the period that the end closes
    return _period_containing(anchor, max(at, anchor), plan["interval"], plan["interval_count"])


def derived_updated_at(record: dict, now: datetime, fields: tuple[str, ...]) -> datetime | None:
    """Latest of a record's own timestamps that has happened by `now`: the scenario has no
    updated_at, and this is when a billing system would last have touched the record."""
    times = [record[f] for f in fields if record.get(f) is not None and record[f] <= now]
    return max(times) if times else None


SUBSCRIPTION_TIME_FIELDS = (
    "created_at",
    "activated_at",
    "trial_start",
    "trial_end",
    "canceled_at",
    "ended_at",
    "paused_at",
    "resumes_at",
)


def subscription_currency(sub: dict, plans: dict[tuple[str, str], dict]) -> str:
    """The currency a subscription bills in: its own, else its plan's."""
    if sub.get("currency"):
        return sub["currency"]
    return plans[(sub["billing_system"], sub["plan_id"])]["currency"]


def plan_in_currency(plan: dict, currency: str) -> dict | None:
    """The plan as sold in `currency` (its own or a `currency_options` price), None when it
    has no price there. Emulators render, and the oracle computes, from this one view."""
    if currency == plan["currency"]:
        return plan
    options = plan.get("currency_options") or {}
    if currency not in options:
        return None
    return {**plan, "currency": currency, "unit_amount": options[currency]}


def item_amount(plan: dict, quantity: int) -> Decimal:
    """What a licensed item bills per period at `quantity`, major units, by its pricing
    model (tiered: each tier's units at its price; volume/stairstep: the tier holding
    `quantity`)."""
    unit, model = plan["unit_amount"], plan["pricing_model"]
    if model == "per_unit":
        return unit * quantity
    if model == "flat_fee":
        return unit
    if model == "package":
        return unit * -(-quantity // plan["package_size"])
    total, above = Decimal(0), 0
    for tier in plan["tiers"]:
        up_to = tier["up_to"]
        if model == "tiered" and quantity > above:
            total += tier["unit_amount"] * (min(quantity, up_to or quantity) - above)
            total += tier["flat_amount"]
        elif quantity > above and (up_to is None or quantity <= up_to):
            return tier["unit_amount"] * quantity + tier["flat_amount"]
        above = up_to or above
    return total
