"""validation.md computed directly from a scenario's facts, in plain Python.

An independent reference for tests: it reads the neutral scenario (not the APIs, not the
warehouse) and applies the rules one episode at a time, so the marts built from native
API data can be compared with it, and the generator can be shown to cover every rule.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

from sandbox.billing import (
    current_period,
    is_future,
    item_amount,
    neutral_status,
    plan_in_currency,
    subscription_currency,
)
from sandbox.scenario import Scenario

MONTHS_FACTOR = {
    "month": Decimal(1),
    "year": Decimal(1) / 12,
    "week": Decimal(52) / 12,
    "day": Decimal(365) / 12,
}


Plans = dict[tuple[str, str], dict]


def amount(plan: dict, quantity: int) -> Decimal | None:
    """What an item bills per period at `quantity`, by its pricing model (metered: unknown
    until usage is reported)."""
    return None if plan["usage_type"] == "metered" else item_amount(plan, quantity)


def items(sub: dict, plans: Plans) -> list[tuple[dict, int]]:
    """(plan, quantity) of every item: the subscription's plan first, then `items`, each
    priced in the subscription's currency."""
    system, currency = sub["billing_system"], subscription_currency(sub, plans)
    pairs = [(sub["plan_id"], sub["quantity"])]
    pairs += [(i["plan_id"], i["quantity"]) for i in sub["items"] or []]
    return [(plan_in_currency(plans[(system, plan_id)], currency), n) for plan_id, n in pairs]


def plan_item(sub: dict, plans: Plans) -> tuple[dict, int]:
    """The plan: of the licensed `plan` items, the one that bills most (the subscription's
    own plan on a tie)."""
    candidates = [
        (plan, quantity)
        for plan, quantity in items(sub, plans)
        if plan["kind"] == "plan" and plan["usage_type"] == "licensed"
    ]
    return max(candidates, key=lambda item: amount(*item))  # max keeps the first of equals


def mrr(sub: dict, plans: Plans, rates: dict[str, Decimal]) -> Decimal:
    """List-price MRR in the reporting currency (validation.md §1): what the licensed plan
    and add-on items bill per period, per month."""
    plan, _ = plan_item(sub, plans)
    local = sum(
        amount(item, quantity)
        for item, quantity in items(sub, plans)
        if item["kind"] != "charge" and item["usage_type"] == "licensed"
    )
    return (
        local * MONTHS_FACTOR[plan["interval"]] / plan["interval_count"] * rates[plan["currency"]]
    )


def subscription_facts(scenario: Scenario) -> dict[tuple[str, str], dict]:
    """marts.dim_subscriptions' fields per (system, subscription id), from the facts: the
    plan and its terms, MRR (§1), the current period at as_of (none before the start), the
    coupon, and whether the subscription or its customer was deleted."""
    plans = {(p["billing_system"], p["plan_id"]): p for p in scenario.plans}
    customers = {(c["billing_system"], c["customer_id"]): c for c in scenario.customers}
    facts = {}
    for sub in scenario.subscriptions:
        customer = customers[(sub["billing_system"], sub["customer_id"])]
        plan, quantity = plan_item(sub, plans)
        start, end = (
            (None, None)
            if is_future(sub, scenario.as_of)
            else current_period(sub, plan, scenario.as_of)
        )
        facts[(sub["billing_system"], sub["subscription_id"])] = {
            "plan_id": plan["plan_id"],
            "currency": plan["currency"],
            "unit_amount_local": None if plan["tiers"] else plan["unit_amount"],
            "quantity": quantity,
            "interval": plan["interval"],
            "interval_count": plan["interval_count"],
            "mrr": mrr(sub, plans, scenario.fx_rates),
            "current_period_start": start,
            "current_period_end": end,
            "coupon_id": coupon_of(sub, customer),
            "is_deleted": sub["deleted_at"] is not None,
            "customer_is_deleted": customer["deleted_at"] is not None,
        }
    return facts


def coupon_of(sub: dict, customer: dict) -> str | None:
    """The subscription's first discount; without one, a Stripe customer-level discount
    (which Stripe applies to the subscription's invoices)."""
    return sub["coupon_id"] or customer.get("coupon_id")


def episodes(scenario: Scenario, window: timedelta = timedelta(days=30)) -> list[dict]:
    """Episodes of §2, each a dict with its sessions, S, E and page outcome."""
    by_id: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for session in scenario.exit_sessions:
        by_id[(session["billing_system"], session["billing_id"])].append(session)
    out = []
    for (system, billing_id), sessions in by_id.items():
        sessions.sort(key=lambda s: (s["started_at"], s["session_id"]))
        current: list[dict] = []
        for session in sessions:
            if current and session["started_at"] >= current[0]["started_at"] + window:
                out.append(_episode(system, billing_id, current, window, scenario.as_of))
                current = []
            current.append(session)
        out.append(_episode(system, billing_id, current, window, scenario.as_of))
    return out


def _episode(system: str, billing_id: str, sessions: list[dict], window, as_of) -> dict:
    start = sessions[0]["started_at"]
    cancels = [s["action_at"] for s in sessions if s["action"] == "canceled"]
    offers = sorted(
        (s for s in sessions if s["action"] == "offer_accepted"),
        key=lambda s: (s["action_at"], s["started_at"], s["session_id"]),
    )
    if cancels:
        outcome, outcome_at = "canceled", min(cancels)
    elif start + window > as_of:
        outcome, outcome_at = "watch_list", None
    else:
        outcome, outcome_at = "saved", start + window
    save_type = None
    if outcome != "canceled":
        if offers:
            save_type = "offer"
        elif any(s["action"] == "deflected" for s in sessions):
            save_type = "deflect"
        else:
            save_type = "passive"
    return {
        "episode_id": sessions[0]["session_id"],
        "billing_system": system,
        "billing_id": billing_id,
        "sessions": sessions,
        "first_landed_at": start,
        "save_event_at": start + window,
        "page_outcome": outcome,
        "outcome_at": outcome_at,
        "save_type": save_type,
        "offer_id": offers[-1]["offer_id"] if offers else None,
        "offer_type": offers[-1]["offer_type"] if offers else None,
        "page_id": sessions[0]["page_id"],
    }


class Matcher:
    """§3: billing id to subscription, by subscription id first, then customer id."""

    def __init__(self, scenario: Scenario):
        rates = scenario.fx_rates
        plans = {(p["billing_system"], p["plan_id"]): p for p in scenario.plans}
        self.subs = {(s["billing_system"], s["subscription_id"]): s for s in scenario.subscriptions}
        self.mrr = {key: mrr(s, plans, rates) for key, s in self.subs.items()}
        self.by_customer: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for s in scenario.subscriptions:
            self.by_customer[(s["billing_system"], s["customer_id"])].append(s)

    def match(self, system: str, billing_id: str, start: datetime) -> dict | None:
        sub = self.subs.get((system, billing_id))
        if sub is not None:
            return sub
        candidates = self.by_customer.get((system, billing_id), [])
        in_service = [
            s
            for s in candidates
            if s["activated_at"] <= start and (s["ended_at"] is None or s["ended_at"] > start)
        ]
        if in_service:
            return min(
                in_service,
                key=lambda s: (
                    -self.mrr[(system, s["subscription_id"])],
                    -s["activated_at"].timestamp(),
                    s["subscription_id"],
                ),
            )
        before = [s for s in candidates if s["activated_at"] <= start]
        if before:
            return min(before, key=lambda s: (-s["activated_at"].timestamp(), s["subscription_id"]))
        after = [s for s in candidates if s["activated_at"] > start]
        if after:
            return min(after, key=lambda s: (s["activated_at"], s["subscription_id"]))
        return None


def validate(scenario: Scenario, window: timedelta = timedelta(days=30)) -> list[dict]:
    """Every episode with its §4 status, validated outcome and §5 revenue."""
    matcher = Matcher(scenario)
    as_of = scenario.as_of
    out = []
    for ep in episodes(scenario, window):
        sub = matcher.match(ep["billing_system"], ep["billing_id"], ep["first_landed_at"])
        status, outcome = _status(ep, sub, as_of)
        value = matcher.mrr[(sub["billing_system"], sub["subscription_id"])] if sub else None
        ep.update(
            subscription_id=sub["subscription_id"] if sub else None,
            customer_id=sub["customer_id"] if sub else None,
            validation_status=status,
            validated_outcome=outcome,
            mrr=value,
            saved_mrr=value if outcome == "saved" else Decimal(0),
            lost_mrr=value if outcome == "canceled" and sub else Decimal(0),
        )
        out.append(ep)
    return out


def _status(ep: dict, sub: dict | None, as_of: datetime) -> tuple[str, str]:
    start = ep["first_landed_at"]
    if ep["page_outcome"] == "canceled":
        if sub is None:
            return "no_match", "canceled"
        if sub["ended_at"] is not None and sub["ended_at"] <= start:
            return "expired_pre_session", "unknown"
        if sub["canceled_at"] is not None and sub["canceled_at"] < start:
            return "canceled_pre_session", "canceled"
        return "valid_cancel", "canceled"
    upto = ep["save_event_at"] if ep["page_outcome"] == "saved" else as_of
    if sub is None:
        return "no_match", "unknown"
    canceled, ended = sub["canceled_at"], sub["ended_at"]
    if ended is not None and ended <= start:
        return "expired_pre_session", "unknown"
    if canceled is not None and canceled < start:
        return "canceled_pre_session", "canceled"
    if sub["activated_at"] > start:
        return "activated_post_session", "unknown"
    if (
        (canceled is not None and start <= canceled <= upto)
        or (ended is not None and start < ended <= upto)
        or neutral_status(sub, as_of) == "unpaid"
    ):
        return "invalid_save", "canceled"
    return "valid_save", "saved" if ep["page_outcome"] == "saved" else "pending"


def _month_offset(start: datetime, stop: datetime) -> int:
    return (stop.year - start.year) * 12 + stop.month - start.month


def cohorts(scenario: Scenario, validated: list[dict]) -> dict[tuple, dict]:
    """§6 cells keyed by (cohort_month, page_outcome, validated_outcome, save_type,
    offer_type, page_id, month_offset), dense from offset 0 to the month of T = as_of."""
    rates = scenario.fx_rates
    paid: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    for invoice in scenario.invoices:
        if invoice["status"] == "paid" and invoice["kind"] == "charge":
            amount = invoice["total"] * rates[invoice["currency"]]
            key = (invoice["billing_system"], invoice["customer_id"])
            paid[key].append((invoice["paid_at"], invoice["invoice_id"], amount))
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for ep in validated:
        start = ep["first_landed_at"]
        dims = (
            start.date().replace(day=1),
            ep["page_outcome"],
            ep["validated_outcome"],
            ep["save_type"],
            ep["offer_type"],
            ep["page_id"],
        )
        payments = []
        if ep["customer_id"] is not None:
            payments = sorted(
                p for p in paid[(ep["billing_system"], ep["customer_id"])] if p[0] >= start
            )
        groups[dims].append({"start": start, "payments": payments})
    cells = {}
    for dims, members in groups.items():
        last = max(_month_offset(m["start"], scenario.as_of) for m in members)
        for offset in range(last + 1):
            cells[(*dims, offset)] = {
                "cohort_episodes": len(members),
                "repurchasing_episodes": 0,
                "first_repurchase_episodes": 0,
                "repurchase_revenue": Decimal(0),
                "first_repurchase_revenue": Decimal(0),
            }
        for member in members:
            offsets = set()
            for index, (paid_at, _, amount) in enumerate(member["payments"]):
                offset = _month_offset(member["start"], paid_at)
                cell = cells[(*dims, offset)]
                cell["repurchase_revenue"] += amount
                offsets.add(offset)
                if index == 0:
                    cell["first_repurchase_episodes"] += 1
                    cell["first_repurchase_revenue"] += amount
            for offset in offsets:
                cells[(*dims, offset)]["repurchasing_episodes"] += 1
        running = Decimal(0)
        for offset in range(last + 1):
            running += cells[(*dims, offset)]["repurchase_revenue"]
            cells[(*dims, offset)]["cumulative_repurchase_revenue"] = running
    return cells


# --------------------------------------------------------------------------- comparing

MONEY = Decimal("0.000001")  # the marts carry decimal(38, 10): money agrees to 1e-6


def same(got, want) -> bool:
    """A warehouse value equals a fact: money to MONEY, times as instants, the rest exactly."""
    if isinstance(want, Decimal) and got is not None:
        return abs(Decimal(str(got)) - want) < MONEY
    if hasattr(got, "astimezone") and want is not None:
        return got.astimezone(want.tzinfo) == want
    return got == want


def wrong_fields(got: dict, want: dict) -> list[tuple]:
    """(key, field, got, want) of every fact a row of `got` (keyed as `want`) misses."""
    return [
        (key, field, got[key][field], value)
        for key, facts in want.items()
        for field, value in facts.items()
        if not same(got[key][field], value)
    ]
