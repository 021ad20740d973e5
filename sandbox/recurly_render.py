"""Neutral records spelled as Recurly v2021-02-25 objects (field names from the OpenAPI file).

Recurly shows money as decimals in major units, times as ISO-8601 with `Z` at second
precision (the SDK parses them with `%Y-%m-%dT%H:%M:%S%z`, so fractions would crash it),
and gives every object a short opaque `id` beside its natural key (`code`, `number`).
The scenario only has the natural keys, so the ids are derived from them by hashing:
stable across restarts, and reversible through `IdIndex`.

Scenario `addon` records are Recurly add-ons, which belong to plans: each is offered by
every plan of its currency and billing period (one add-on id per plan and add-on), never
listed as a plan; a subscription's `items` are its `add_ons` (SubscriptionAddOn) and its
`subtotal` counts the fixed ones. A Recurly tier has one price (`unit_amount`): per unit
for tiered and volume, the whole step's for stairstep, which is the scenario tier's
`flat_amount` (Recurly tiers have no flat part besides).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from sandbox.billing import (
    add_interval,
    current_period,
    is_ended,
    neutral_status,
    plan_in_currency,
)
from sandbox.scenario import TIER_MODELS, currency_exponent
from sandbox.store import SystemStore

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_ID_LENGTH = 12
_DURATIONS = {"once": "single_use", "repeating": "temporal", "forever": "forever"}
# Neutral invoice statuses in Recurly's words (InvoiceStateEnum). A charge invoice is
# pending until collected (Recurly has no drafts: a draft is pending too), past_due after
# its due date, paid, failed (collection given up: uncollectible) or voided. A credit
# invoice is open while credit remains, closed once fully applied (paid), or voided.
_INVOICE_STATES = {
    "charge": {
        "draft": "pending",
        "open": "pending",
        "past_due": "past_due",
        "paid": "paid",
        "uncollectible": "failed",
        "void": "voided",
    },
    "credit": {"open": "open", "paid": "closed", "void": "voided"},
}
# Recurly's ceiling for a tier's `ending_quantity`: the last tier shows it (no bound).
LAST_TIER_ENDING = 999999999
# Recurly plans bill in days or months only; weeks and years are folded into those.
_INTERVAL_UNITS = {
    "day": ("days", 1),
    "week": ("days", 7),
    "month": ("months", 1),
    "year": ("months", 12),
}


# --------------------------------------------------------------------------- scalars


def ts(value: datetime | None) -> str | None:
    """Recurly's timestamp spelling (second precision, `Z`); isoformat is the fast path
    (values are aware UTC datetimes, so the first 19 characters are the UTC time)."""
    return value.isoformat(timespec="seconds")[:19] + "Z" if value is not None else None


# Rendering runs once per object per page: the pure helpers below are memoised so that a
# 100,000-subscription listing spends its time on I/O, not on hashing and rounding.
@functools.lru_cache(maxsize=4096)
def money(amount: Decimal, currency: str) -> int | float:
    """A decimal amount as a JSON number in major units (JPY as a whole number)."""
    exponent = currency_exponent(currency)
    quantized = amount.quantize(Decimal(1).scaleb(-exponent))
    return int(quantized) if exponent == 0 else float(quantized)


@functools.lru_cache(maxsize=1 << 18)
def derived_id(kind: str, natural_key: str) -> str:
    """A Recurly-looking 12-character base-36 id, a pure function of the natural key."""
    number = int.from_bytes(hashlib.sha1(f"{kind}:{natural_key}".encode()).digest()[:8], "big")
    chars = []
    for _ in range(_ID_LENGTH):
        number, digit = divmod(number, 36)
        chars.append(_BASE36[digit])
    return "".join(chars)


@functools.lru_cache(maxsize=1 << 18)
def derived_uuid(kind: str, natural_key: str) -> str:
    """The 32-hex `uuid` Recurly gives subscriptions, invoices and redemptions."""
    return hashlib.md5(f"{kind}:{natural_key}".encode()).hexdigest()


class IdIndex:
    """Derived id -> natural key for one kind of record, so paths can name records by the
    ids the API shows; rebuilt lazily when the number of records changes."""

    def __init__(self, store: SystemStore, kind: str, derive: Callable[[str], str]):
        self.store, self.kind, self.derive = store, kind, derive
        self._index: dict[str, str] = {}

    def natural_key(self, derived: str) -> str | None:
        records = self.store.records[self.kind]
        if len(self._index) != len(records):
            self._index = {self.derive(key): key for key in records}
        return self._index.get(derived)


def split_name(name: str | None) -> tuple[str | None, str | None]:
    """Recurly keeps first and last name apart; the scenario has one full name."""
    if not name:
        return None, None
    first, _, last = name.strip().partition(" ")
    return first, last.strip() or None


# --------------------------------------------------------------------------- states


def subscription_state(sub: dict, now: datetime) -> str:
    """scenario.md's precedence in Recurly's words; a future subscription canceled before
    it started ended before activation, which Recurly calls `failed`."""
    status = neutral_status(sub, now)
    if status == "canceled" and sub["ended_at"] < sub["activated_at"]:
        return "failed"
    return _STATES.get(status, "active")  # trials and dunning are `active` in Recurly


_STATES = {
    "canceled": "expired",
    "future": "future",
    "non_renewing": "canceled",
    "paused": "paused",
}


def in_trial(sub: dict, now: datetime) -> bool:
    """The `state=in_trial` filter's rule: trial started before now and ends after now."""
    start = sub["trial_start"] or sub["activated_at"]
    return sub["trial_end"] is not None and start < now < sub["trial_end"]


def invoice_state(invoice: dict) -> str:
    return _INVOICE_STATES[invoice["kind"]][invoice["status"]]


def happened(at: datetime | None, now: datetime) -> datetime | None:
    """A stated time (an archiving, a deletion) once the clock has reached it."""
    return at if at is not None and at <= now else None


def billing_currency(sub: dict, plan: dict) -> str:
    """The subscription's own currency, else its plan's (see sandbox.billing)."""
    return sub.get("currency") or plan["currency"]


def priced(plan: dict, currency: str) -> dict:
    """The plan or add-on as sold in `currency`; the scenario checks that it is."""
    view = plan_in_currency(plan, currency)
    if view is None:
        raise ValueError(f"{plan['plan_id']} has no price in {currency}")
    return view


def plan_currencies(plan: dict) -> list[str]:
    """Every currency a plan (or add-on) is priced in, its own first (`currencies[]`)."""
    return [plan["currency"], *(plan.get("currency_options") or {})]


def pause_pending_or_running(sub: dict, now: datetime) -> bool:
    """Recurly shows pause fields only while a pause is scheduled or under way."""
    return sub["paused_at"] is not None and (sub["resumes_at"] is None or sub["resumes_at"] > now)


def pause_cycle_start(sub: dict, plan: dict, now: datetime) -> datetime:
    """Where the remaining pause cycles are counted from: the pause start while it is
    pending, else the current billing period (or the pause start within it)."""
    if sub["paused_at"] > now:
        return sub["paused_at"]
    return max(sub["paused_at"], current_period(sub, plan, now)[0])


def term_cycles(sub: dict) -> int:
    """Billing periods per term: the scenario's `term_cycles` (a multi-cycle term that
    renews, Recurly `total_billing_cycles`), else 1 (every period renews)."""
    return sub.get("term_cycles") or 1


def current_term(sub: dict, plan: dict, now: datetime) -> tuple[datetime, datetime, int]:
    """The current term's start and end and the billing cycles left in it after the
    current period. Terms count from the first paid period (a trial is a term of its
    own); a next bill date moved past the term's end takes the term end with it."""
    start, end = current_period(sub, plan, now)
    cycles = term_cycles(sub)
    first_paid = sub["trial_end"] or sub["activated_at"]
    if cycles == 1 or start < first_paid:
        return start, end, 0
    elapsed = periods_until(first_paid, start, plan)
    step = plan["interval_count"] * cycles
    term_start = add_interval(first_paid, plan["interval"], step * (elapsed // cycles))
    term_end = add_interval(term_start, plan["interval"], step)
    return term_start, max(term_end, end), cycles - 1 - elapsed % cycles


def periods_until(start: datetime, end: datetime, plan: dict) -> int:
    """Whole billing periods from `start` needed to reach `end` (rounded up)."""
    cycles = 0
    while add_interval(start, plan["interval"], plan["interval_count"] * cycles) < end:
        cycles += 1
    return cycles


def redemption_resource(coupon: dict) -> str:
    """Where Recurly redeems the coupon: the account unless the coupon says otherwise."""
    return coupon.get("redemption_resource") or "account"


def coupon_codes(sub: dict) -> list[str]:
    """The subscription's coupons in the order they were applied: `coupon_id` first."""
    first = [sub["coupon_id"]] if sub["coupon_id"] is not None else []
    return first + list(sub.get("extra_coupon_ids") or ())


def redemptions_of(customer: dict, subs, store: SystemStore, now: datetime) -> list[dict]:
    """Redemptions behind the neutral records' coupons, in creation order: one per coupon
    of each subscription, redeemed with its purchase (the neutral record keeps no
    redemption time: the n-th coupon applied is stamped n seconds after the subscription's
    creation, so the first applied is the earliest) and removed when it ends. An
    account-level coupon's redemption names no subscription: Recurly lists it under the
    account only."""
    records = []
    for sub in subs:
        currency = billing_currency(sub, store.get("plans", sub["plan_id"]))
        removed = sub["ended_at"] if is_ended(sub, now) else None
        for n, code in enumerate(coupon_codes(sub)):
            coupon = store.get("coupons", code)
            on_account = redemption_resource(coupon) == "account"
            created = sub["created_at"] + timedelta(seconds=n)
            records.append(
                {
                    "redemption_id": derived_id(
                        "coupon_redemptions", f"{sub['subscription_id']}:{code}"
                    ),
                    "customer": customer,
                    "coupon": coupon,
                    "subscription": None if on_account else sub,
                    "carrier": sub,
                    "currency": currency,
                    "created_at": created,
                    "removed_at": removed,
                    "updated_at": removed or created,  # the list sorts on both
                }
            )
    return sorted(records, key=lambda r: (r["created_at"], r["redemption_id"]))


def _cycles_or_none(sub: dict) -> int | None:
    """`total_billing_cycles` as Recurly shows it: null when every cycle renews."""
    cycles = term_cycles(sub)
    return cycles if cycles > 1 else None


def is_plan(plan: dict) -> bool:
    """Scenario add-on records are add-ons of Recurly plans, never plans of their own."""
    return plan["kind"] == "plan"


def add_on_amount(addon: dict, quantity: int) -> Decimal:
    """What a fixed add-on bills per period at `quantity` (Recurly's tier types: flat per
    unit; tiered graduated; volume the one tier the quantity falls in, per unit; stairstep
    that tier's `unit_amount`, which is the step's price: the scenario's flat_amount).
    A tier's bounds are inclusive, the last open."""
    model = addon["pricing_model"]
    if model not in TIER_MODELS:
        return addon["unit_amount"] * quantity
    total, above = Decimal(0), 0
    for tier in addon["tiers"]:
        up_to = tier["up_to"]
        if model == "tiered" and quantity > above:
            total += tier["unit_amount"] * (min(quantity, up_to or quantity) - above)
        elif model != "tiered" and (up_to is None or quantity <= up_to):
            return tier["flat_amount"] if model == "stairstep" else tier["unit_amount"] * quantity
        above = up_to or above
    return total


def _tier_price(addon: dict, tier: dict) -> Decimal:
    """A Recurly tier has one price: per unit, or for a stairstep the whole step's."""
    return tier["flat_amount"] if addon["pricing_model"] == "stairstep" else tier["unit_amount"]


def _ending_quantity(tier: dict) -> int:
    return tier["up_to"] if tier["up_to"] is not None else LAST_TIER_ENDING


# --------------------------------------------------------------------------- objects


class RecurlyRenderer:
    """Renders one store's neutral records as Recurly JSON objects at a given time."""

    def __init__(self, store: SystemStore):
        self.store = store

    def _now(self) -> datetime:
        """The sandbox clock, for catalog records (an archived plan, an expired coupon),
        whose renders take no time of their own."""
        return self.store.clock.now()

    # -- accounts -------------------------------------------------------------------
    def account_mini(self, customer: dict) -> dict:
        first, last = split_name(customer["name"])
        return {
            "id": derived_id("customers", customer["customer_id"]),
            "object": "account",
            "code": customer["customer_id"],
            "email": customer["email"],
            "first_name": first,
            "last_name": last,
            "company": None,
            "parent_account_id": None,
            "bill_to": "self",
        }

    def account(self, customer: dict, now: datetime) -> dict:
        """`Account`: a closed account is `inactive`, `deleted_at` when it was closed."""
        states = {
            subscription_state(sub, now)
            for sub in self.store.by_customer["subscriptions"].get(customer["customer_id"], ())
        }
        invoices = self.store.by_customer["invoices"].get(customer["customer_id"], ())
        deleted = happened(customer.get("deleted_at"), now)
        return {
            **self.account_mini(customer),
            "state": "inactive" if deleted else "active",
            "username": None,
            "preferred_locale": None,
            "cc_emails": None,
            "tax_exempt": False,
            "has_live_subscription": bool(states & {"active", "canceled", "future", "paused"}),
            "has_active_subscription": "active" in states,
            "has_future_subscription": "future" in states,
            "has_canceled_subscription": "canceled" in states,
            "has_paused_subscription": "paused" in states,
            "has_past_due_invoice": any(invoice_state(i) == "past_due" for i in invoices),
            "shipping_addresses": [],
            "custom_fields": [],
            "created_at": ts(customer["created_at"]),
            "updated_at": ts(customer["updated_at"]),
            "deleted_at": ts(deleted),
        }

    # -- plans ----------------------------------------------------------------------
    def plan_mini(self, plan: dict) -> dict:
        return {
            "id": derived_id("plans", plan["plan_id"]),
            "object": "plan",
            "code": plan["plan_id"],
            "name": plan["product_name"],
        }

    def plan(self, plan: dict) -> dict:
        """`Plan`: its price in each currency (`currencies`, its own first); an archived
        plan is `inactive` with `deleted_at` (its subscriptions go on)."""
        unit, factor = _INTERVAL_UNITS[plan["interval"]]
        archived = happened(plan.get("archived_at"), self._now())
        return {
            **self.plan_mini(plan),
            "state": "inactive" if archived else "active",
            "pricing_model": "fixed",
            "currencies": [
                {
                    "currency": currency,
                    "setup_fee": money(Decimal(0), currency),
                    "unit_amount": money(priced(plan, currency)["unit_amount"], currency),
                    "tax_inclusive": False,
                }
                for currency in plan_currencies(plan)
            ],
            "setup_fees": [],
            "interval_unit": unit,
            "interval_length": plan["interval_count"] * factor,
            "description": None,
            "trial_unit": "days",
            "trial_length": 0,
            "trial_requires_billing_info": True,
            "total_billing_cycles": None,  # terms are the subscription's (`term_cycles`)
            "auto_renew": True,
            "tax_exempt": False,
            "custom_fields": [],
            "created_at": ts(plan["created_at"]),
            "updated_at": ts(plan["updated_at"]),
            "deleted_at": ts(archived),
        }

    # -- add-ons --------------------------------------------------------------------
    def add_ons_of(self, plan: dict) -> list[dict]:
        """The add-on records a plan offers: every scenario add-on on the plan's billing
        period priced in one of the plan's currencies (Recurly add-ons belong to a plan
        and bill on its period)."""
        period = (plan["interval"], plan["interval_count"])
        currencies = set(plan_currencies(plan))
        return [
            addon
            for addon in self.store.records["plans"].values()
            if addon["kind"] == "addon"
            and (addon["interval"], addon["interval_count"]) == period
            and currencies & set(plan_currencies(addon))
        ]

    def add_on_mini(self, plan: dict, addon: dict) -> dict:
        """`AddOnMini`: the add-on's id is its plan's (one add-on record per plan)."""
        usage = addon["usage_type"] == "metered"
        return {
            "id": derived_id("add_ons", f"{plan['plan_id']}:{addon['plan_id']}"),
            "object": "add_on",
            "code": addon["plan_id"],
            "name": addon["product_name"],
            "add_on_type": "usage" if usage else "fixed",
            "usage_type": "price" if usage else None,
            "usage_percentage": None,
            "measured_unit_id": None,
            "item_id": None,
            "external_sku": None,
            "accounting_code": None,  # unset: invoices then use the add-on's code
        }

    def add_on(self, plan: dict, addon: dict) -> dict:
        """`AddOn`: a flat add-on prices per currency in `currencies`; a tiered, volume or
        stairstep one in `tiers` (each tier's `currencies`) and has no `currencies`."""
        currency = addon["currency"]
        tiered = addon["pricing_model"] in TIER_MODELS
        usage = addon["usage_type"] == "metered"
        offered_in = set(plan_currencies(plan))
        mini = self.add_on_mini(plan, addon)
        del mini["item_id"]  # `AddOn` names its item in `item` (none: a plan add-on)
        return {
            **mini,
            "item": None,
            "plan_id": derived_id("plans", plan["plan_id"]),
            "state": "active",
            "usage_calculation_type": "cumulative" if usage else None,
            "revenue_schedule_type": "evenly",
            "display_quantity": not usage,
            "default_quantity": 1,
            "optional": True,
            "currencies": []
            if tiered
            else [
                {
                    "currency": code,
                    "unit_amount": money(priced(addon, code)["unit_amount"], code),
                    "tax_inclusive": False,
                }
                for code in plan_currencies(addon)
                if code in offered_in
            ],
            "tier_type": addon["pricing_model"] if tiered else "flat",
            "usage_timeframe": "billing_period",
            "tiers": [
                {
                    "ending_quantity": _ending_quantity(tier),
                    "currencies": [
                        {
                            "currency": currency,
                            "unit_amount": money(_tier_price(addon, tier), currency),
                        }
                    ],
                }
                for tier in addon["tiers"] or ()
            ],
            "percentage_tiers": [],
            "created_at": ts(max(addon["created_at"], plan["created_at"])),
            "updated_at": ts(max(addon["updated_at"], plan["updated_at"])),
            "deleted_at": None,
        }

    def plan_add_ons(self, plan: dict) -> list[dict]:
        """The plan's add-ons as list records: their own id, times and the pair to render."""
        return [
            {
                "add_on_id": derived_id("add_ons", f"{plan['plan_id']}:{addon['plan_id']}"),
                "code": addon["plan_id"],
                "created_at": max(addon["created_at"], plan["created_at"]),
                "updated_at": max(addon["updated_at"], plan["updated_at"]),
                "plan": plan,
                "addon": addon,
            }
            for addon in self.add_ons_of(plan)
        ]

    def subscription_add_ons(self, sub: dict, plan: dict) -> list[tuple[dict, int]]:
        """The subscription's add-on items with their quantities: the scenario `items`
        that are add-ons its plan offers (Recurly sells no one-time charges as
        subscription items, and a subscription has one plan)."""
        offered = {addon["plan_id"] for addon in self.add_ons_of(plan)}
        return [
            (self.store.get("plans", item["plan_id"]), item["quantity"])
            for item in sub.get("items") or ()
            if item["plan_id"] in offered
        ]

    def subscription_add_on(self, sub: dict, plan: dict, addon: dict, quantity: int) -> dict:
        """`SubscriptionAddOn`: a flat add-on's `unit_amount`, or the tiers the
        subscription carries (its add-on's); a usage add-on bills usage at `unit_amount`;
        priced in the subscription's currency."""
        currency = billing_currency(sub, plan)
        addon = priced(addon, currency)
        tiered = addon["pricing_model"] in TIER_MODELS
        usage = addon["usage_type"] == "metered"
        return {
            "id": derived_id(
                "subscription_add_ons", f"{sub['subscription_id']}:{addon['plan_id']}"
            ),
            "object": "subscription_add_on",
            "subscription_id": sub["subscription_id"],
            "add_on": self.add_on_mini(plan, addon),
            "add_on_source": "plan_add_on",
            "quantity": quantity,
            "unit_amount": None if tiered else money(addon["unit_amount"], currency),
            "unit_amount_decimal": None,
            "revenue_schedule_type": "evenly",
            "tier_type": addon["pricing_model"] if tiered else "flat",
            "usage_calculation_type": "cumulative" if usage else None,
            "usage_timeframe": "billing_period",
            "tiers": [
                {
                    "ending_quantity": _ending_quantity(tier),
                    "unit_amount": money(_tier_price(addon, tier), currency),
                    "unit_amount_decimal": None,
                }
                for tier in addon["tiers"] or ()
            ],
            "percentage_tiers": [],
            "usage_percentage": None,
            "created_at": ts(sub["created_at"]),
            "updated_at": ts(sub["updated_at"] or sub["created_at"]),
            "expired_at": None,
        }

    def _add_ons(self, sub: dict, plan: dict) -> tuple[list[dict], Decimal]:
        """The subscription's `add_ons` and `add_ons_total`: fixed add-ons at their
        quantity (usage add-ons bill what is used, in arrears, so they add nothing)."""
        rendered, total = [], Decimal(0)
        currency = billing_currency(sub, plan)
        for addon, quantity in self.subscription_add_ons(sub, plan):
            rendered.append(self.subscription_add_on(sub, plan, addon, quantity))
            if addon["usage_type"] == "licensed":
                total += add_on_amount(priced(addon, currency), quantity)
        return rendered, total

    # -- coupons --------------------------------------------------------------------
    def coupon_mini(self, coupon: dict) -> dict:
        """A deleted coupon is `expired` (Recurly's "deactivate": no new redemptions,
        those made stay), with `expired_at` then; Coupon has no `deleted_at`."""
        expired = happened(coupon.get("deleted_at"), self._now())
        return {
            "id": derived_id("coupons", coupon["coupon_id"]),
            "object": "coupon",
            "code": coupon["coupon_id"],
            "name": coupon["name"] or coupon["coupon_id"],
            "state": "expired" if expired else "redeemable",
            "discount": self._discount(coupon),
            "coupon_type": "single_code",
            "expired_at": ts(expired),
        }

    def coupon(self, coupon: dict) -> dict:
        repeating = coupon["duration"] == "repeating"
        return {
            **self.coupon_mini(coupon),
            "duration": _DURATIONS[coupon["duration"]],
            "temporal_unit": "month" if repeating else None,
            "temporal_amount": coupon["duration_in_months"] if repeating else None,
            "max_redemptions": None,
            "max_redemptions_per_account": None,
            "applies_to_all_plans": True,
            "applies_to_non_plan_charges": False,
            "plans": None,
            "redemption_resource": redemption_resource(coupon),
            "created_at": ts(coupon["created_at"]),
            "updated_at": ts(coupon["updated_at"]),
        }

    @staticmethod
    def _discount(coupon: dict) -> dict:
        if coupon["percent_off"] is not None:
            percent = coupon["percent_off"]
            return {
                "type": "percent",
                "percent": int(percent) if percent % 1 == 0 else float(percent),
            }
        currency = coupon["currency"]
        return {
            "type": "fixed",
            "currencies": [{"currency": currency, "amount": money(coupon["amount_off"], currency)}],
        }

    def redemption_mini(self, redemption: dict) -> dict:
        return {
            "id": redemption["redemption_id"],
            "object": "coupon_redemption_mini",
            "coupon": self.coupon_mini(redemption["coupon"]),
            "state": "active" if redemption["removed_at"] is None else "inactive",
            "discounted": 0,
            "created_at": ts(redemption["created_at"]),
        }

    def redemption(self, redemption: dict) -> dict:
        """A `CouponRedemption`: account-level ones name no subscription."""
        sub = redemption["subscription"]
        return {
            **self.redemption_mini(redemption),
            "object": "coupon_redemption",
            "uuid": derived_uuid("coupon_redemptions", redemption["redemption_id"]),
            "account": self.account_mini(redemption["customer"]),
            "subscription_id": sub["subscription_id"] if sub is not None else None,
            "coupon": self.coupon(redemption["coupon"]),
            "currency": redemption["currency"],
            "updated_at": ts(redemption["updated_at"]),
            "removed_at": ts(redemption["removed_at"]),
        }

    def account_redemptions(self, customer: dict, now: datetime) -> list[dict]:
        """The account's redemptions as neutral records (see `redemptions_of`)."""
        subs = self.store.by_customer["subscriptions"].get(customer["customer_id"], ())
        return redemptions_of(customer, subs, self.store, now)

    # -- subscriptions --------------------------------------------------------------
    def subscription(self, sub: dict, now: datetime) -> dict:
        plan = self.store.get("plans", sub["plan_id"])
        customer = self.store.get("customers", sub["customer_id"])
        started, ends = (ts(t) for t in current_period(sub, plan, now))
        term_start, term_end, remaining = current_term(sub, plan, now)
        currency = billing_currency(sub, plan)
        amount = priced(plan, currency)["unit_amount"]
        add_ons, add_ons_total = self._add_ons(sub, plan)
        subtotal = money(amount * sub["quantity"] + add_ons_total, currency)
        cycles = _cycles_or_none(sub)
        return {
            "id": sub["subscription_id"],
            "object": "subscription",
            "uuid": derived_uuid("subscriptions", sub["subscription_id"]),
            "account": self.account_mini(customer),
            "plan": self.plan_mini(plan),
            "state": subscription_state(sub, now),
            "coupon_redemptions": self._redemptions(sub, now),
            "pending_change": self.pending_change(sub, plan, now),
            "current_period_started_at": started,
            "current_period_ends_at": ends,
            "current_term_started_at": ts(term_start),
            "current_term_ends_at": ts(term_end),
            "trial_started_at": ts(
                (sub["trial_start"] or sub["activated_at"]) if sub["trial_end"] else None
            ),
            "trial_ends_at": ts(sub["trial_end"]),
            "remaining_billing_cycles": remaining if cycles else None,
            "total_billing_cycles": cycles,
            "renewal_billing_cycles": cycles,
            "auto_renew": True,
            **self._pause_fields(sub, plan, now),
            "currency": currency,
            "unit_amount": money(amount, currency),
            "tax_inclusive": False,
            "quantity": sub["quantity"],
            "add_ons": add_ons,
            "add_ons_total": money(add_ons_total, currency),
            "subtotal": subtotal,
            "tax": money(Decimal(0), currency),
            "total": subtotal,
            "collection_method": "automatic",
            "net_terms": 0,
            "net_terms_type": "net",
            "custom_fields": [],
            "created_at": ts(sub["created_at"]),
            "updated_at": ts(sub["updated_at"] or sub["created_at"]),
            "activated_at": ts(sub["activated_at"]),
            "canceled_at": ts(sub["canceled_at"]),
            "expires_at": ts(sub["ended_at"]),
        }

    def _redemptions(self, sub: dict, now: datetime) -> list[dict]:
        """Only subscription-level redemptions: Recurly lists account-level ones under
        the account (`/accounts/{id}/coupon_redemptions`), never on the subscription."""
        customer = self.store.get("customers", sub["customer_id"])
        own = redemptions_of(customer, [sub], self.store, now)
        return [self.redemption_mini(r) for r in own if r["subscription"] is not None]

    @staticmethod
    def _pause_fields(sub: dict, plan: dict, now: datetime) -> dict:
        if not pause_pending_or_running(sub, now):
            return {"paused_at": None, "resume_at": None, "remaining_pause_cycles": None}
        resumes_at = sub["resumes_at"]
        remaining = (
            None
            if resumes_at is None
            else periods_until(pause_cycle_start(sub, plan, now), resumes_at, plan)
        )
        return {
            "paused_at": ts(sub["paused_at"]),
            "resume_at": ts(resumes_at),
            "remaining_pause_cycles": remaining,
        }

    def subscription_change(self, sub: dict, now: datetime) -> dict:
        """A change applied at once: the subscription already bills its plan."""
        plan = self.store.get("plans", sub["plan_id"])
        change_id = f"{sub['subscription_id']}:{sub['version']}"
        return self._change(change_id, sub, plan, sub["quantity"], now, now, activated=True)

    def pending_change(self, sub: dict, plan: dict, now: datetime) -> dict | None:
        """The plan change scheduled for the current period's end (`pending_change`), while
        the subscription is in service; the subscription's own fields stay the current
        plan's. The neutral record keeps no scheduling time: its last update stands in."""
        if sub.get("pending_plan_id") is None or is_ended(sub, now):
            return None
        target = self.store.get("plans", sub["pending_plan_id"])
        quantity = sub.get("pending_quantity") or sub["quantity"]
        renewal = current_period(sub, plan, now)[1]
        scheduled = sub["updated_at"] or sub["created_at"]
        change_id = f"{sub['subscription_id']}:pending:{target['plan_id']}"
        kept = {**sub, "currency": billing_currency(sub, plan)}  # add-ons in its currency
        return self._change(change_id, kept, target, quantity, renewal, scheduled, activated=False)

    def _change(
        self,
        change_id: str,
        sub: dict,
        plan: dict,
        quantity: int,
        activate_at: datetime,
        stamped: datetime,
        activated: bool,
    ) -> dict:
        """`SubscriptionChange` to `plan` at `quantity`, priced in the subscription's
        currency, with the add-ons the plan offers."""
        currency = billing_currency(sub, plan)
        return {
            "id": derived_id("subscription_changes", change_id),
            "object": "subscription_change",
            "subscription_id": sub["subscription_id"],
            "plan": self.plan_mini(plan),
            "add_ons": self._add_ons(sub, plan)[0],
            "unit_amount": money(priced(plan, currency)["unit_amount"], currency),
            "tax_inclusive": False,
            "quantity": quantity,
            "activate_at": ts(activate_at),
            "activated": activated,
            "custom_fields": [],
            "created_at": ts(stamped),
            "updated_at": ts(stamped),
            "deleted_at": None,
        }

    # -- invoices -------------------------------------------------------------------
    def invoice(self, invoice: dict) -> dict:
        """`Invoice`: a charge invoice, or a credit invoice (`type: credit`, origin
        `credit`), whose amounts Recurly shows negative. The balance is what is still
        owed (a charge not paid, voided or given up on) or, on a credit, still to apply."""
        currency = invoice["currency"]
        credit = invoice["kind"] == "credit"
        total = money(-invoice["total"] if credit else invoice["total"], currency)
        zero = money(Decimal(0), currency)
        state = invoice_state(invoice)
        customer = self.store.get("customers", invoice["customer_id"])
        subscription_id = invoice["subscription_id"]
        outstanding = state in ("pending", "past_due", "failed", "open")
        return {
            "id": derived_id("invoices", invoice["invoice_id"]),
            "uuid": derived_uuid("invoices", invoice["invoice_id"]),
            "object": "invoice",
            "type": invoice["kind"],
            "origin": "credit" if credit else "renewal",
            "state": state,
            "account": self.account_mini(customer),
            "subscription_ids": [subscription_id] if subscription_id else [],
            "previous_invoice_id": None,
            "number": invoice["invoice_id"],
            "collection_method": "automatic",
            "net_terms": 0,
            "net_terms_type": "net",
            "currency": currency,
            "discount": zero,
            "coupon_redemptions": [],
            "subtotal": total,
            "subtotal_after_discount": total,
            "tax": zero,
            "total": total,
            "refundable_amount": total if state == "paid" else zero,
            "paid": total if state == "paid" else zero,
            "balance": total if outstanding else zero,
            "line_items": [],
            "has_more_line_items": False,
            "transactions": [],
            "credit_payments": [],
            "custom_fields": [],
            "created_at": ts(invoice["created_at"]),
            "updated_at": ts(invoice["updated_at"] or invoice["created_at"]),
            "due_at": ts(invoice["created_at"]),
            "closed_at": ts(invoice["paid_at"]),
        }
