"""Neutral records rendered as Chargebee API v2 objects, on Product Catalog 2.0 or 1.0.

Field names follow the official SDK's models (`chargebee/models/<resource>/responses.py`).
Chargebee leaves unset attributes out of its JSON instead of sending null, so every
object is built as a flat dict and stripped of None values; nothing is deep-copied, which
keeps a 100-entry list page cheap to render.

Mapping choices that the neutral scenario does not state directly:

- Product Catalog 2.0: products become items (`item.id` = product_id) and plans item prices
  (`item_price.id` = plan_id, `name` = plan_id because Chargebee needs a unique name,
  `external_name` = product name); a subscription lists its plan in `subscription_items`.
- Product Catalog 1.0: plans are `plan` objects (`plan.id` = plan_id); a subscription
  carries `plan_id`, `plan_quantity`, `plan_unit_price`, `plan_amount`; coupons state
  `plan_constraint`/`addon_constraint` instead of `item_constraints`; invoice lines name
  the `plan`.
- Scenario plans of kind addon and charge: on 2.0 items of that `type` (`metered` for a
  metered one) whose item prices a subscription lists among its `subscription_items` with
  their `item_type`; a charge is listed as charged once on the subscription's creation
  (`charge_on_event`, `charge_once`). On 1.0 add-ons (`/addons`): recurring ones in the
  subscription's `addons`, charges (`charge_type` non_recurring) in its
  `event_based_addons`. 1.0 has no metered add-on: under its metered billing, usage is
  added to the renewal invoice as a non-recurring add-on, so a metered add-on is a
  non-recurring `/addons` entry that no subscription lists.
- Pricing: the API's `pricing_model` is flat_fee, per_unit, tiered, volume or stairstep;
  tiers run from `starting_unit` to the inclusive `ending_unit` (absent on the last) and
  carry one `price`: per unit (`pricing_type` per_unit), the tier's fixed amount
  (`pricing_type` flat_fee), or, on stairstep, the step's price. A scenario package price
  is a tiered price of one `package` tier (`package_size` units per `price`), the only way
  the API states packages.
- A subscription's neutral `activated_at` (start of paid or trial service) is Chargebee's
  `started_at`, or `start_date` while it is `future`; Chargebee's own `activated_at` is when
  it became active (the trial end, if there was a trial).
- `resource_version` is the update time in milliseconds plus the number of writes, so it
  still increases when two writes land in the same millisecond of a frozen clock.
- The variety of old accounts: an archived price is `status` archived (`archived_at`); a
  deleted coupon `status` deleted; a deleted customer or subscription `deleted: true`; a
  transferred subscription `status` transferred without `cancelled_at` (the object has no
  transfer time); several coupons are `coupons[]` in the order applied; a multi-cycle term
  is `remaining_billing_cycles` (and the 2.0 plan item's `billing_cycles`); a scheduled plan
  change is `has_scheduled_changes`/`changes_scheduled_at` while the items stay current.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sandbox.billing import add_interval, current_period, is_ended, item_amount, neutral_status
from sandbox.scenario import to_minor_units
from sandbox.store import SystemStore

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SUBSCRIPTION_STATUS = {
    "future": "future",
    "trialing": "in_trial",
    "active": "active",
    "paused": "paused",
    "non_renewing": "non_renewing",
    "canceled": "cancelled",
    # Dunning states are Stripe-only in scenarios; Chargebee keeps such a subscription active.
    "past_due": "active",
    "unpaid": "active",
}
# The 1.0 add-on `type` of each pricing model.
ADDON_TYPE = {
    "per_unit": "quantity",
    "flat_fee": "on_off",
    "package": "tiered",
    "tiered": "tiered",
    "volume": "volume",
    "stairstep": "stairstep",
}
TIER_MODELS = ("tiered", "volume", "stairstep")
# A one-time charge is charged when the subscription is created, once.
CHARGE_EVENT = "subscription_creation"
# Neutral invoice status -> Chargebee's: a draft is `pending` (not yet closed), an issued
# invoice not yet due `posted`, one past its due date `payment_due` (being retried), one
# given up on `not_paid` (every retry failed).
INVOICE_STATUS = {
    "draft": "pending",
    "open": "posted",
    "past_due": "payment_due",
    "paid": "paid",
    "uncollectible": "not_paid",
    "void": "voided",
}
UNPAID = ("open", "past_due", "uncollectible")  # invoices with an amount due
COUPON_DURATION = {"once": "one_time", "forever": "forever", "repeating": "limited_period"}
# Billing periods per month, to normalise a price to monthly recurring revenue.
_PERIODS_PER_MONTH = {
    "day": Decimal(365) / 12,
    "week": Decimal(52) / 12,
    "month": Decimal(1),
    "year": Decimal(1) / 12,
}


def epoch(value: datetime | None) -> int | None:
    """Whole epoch seconds (floored), the unit of every Chargebee timestamp."""
    return None if value is None else (value - EPOCH) // timedelta(seconds=1)


def from_epoch(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def minor_units(amount: Decimal, currency: str) -> int:
    """An amount as Chargebee sends it: its own zero-decimal list, hundredths otherwise."""
    return to_minor_units(amount, currency, "chargebee")


def compact(fields: dict) -> dict:
    """Chargebee omits unset attributes rather than sending null."""
    return {key: value for key, value in fields.items() if value is not None}


def subscription_status(sub: dict, now: datetime) -> str:
    """Chargebee's status: the neutral one, but `transferred` once the subscription has
    moved to another business entity (its service here ended then)."""
    if sub["transferred_at"] is not None and sub["transferred_at"] <= now:
        return "transferred"
    return SUBSCRIPTION_STATUS[neutral_status(sub, now)]


def is_recurring(plan: dict) -> bool:
    """Billed every period on the subscription: a licensed plan or add-on (a metered
    price bills usage, a charge bills once)."""
    return plan["kind"] != "charge" and plan["usage_type"] == "licensed"


def pricing(plan: dict) -> dict:
    """`pricing_model` with `price` or `tiers`, as item prices, plans and add-ons state them."""
    model, currency = plan["pricing_model"], plan["currency"]
    if model == "package":
        tier = {
            "starting_unit": 1,
            "price": minor_units(plan["unit_amount"], currency),
            "pricing_type": "package",
            "package_size": plan["package_size"],
        }
        return {"pricing_model": "tiered", "tiers": [tier]}
    if model not in TIER_MODELS:
        return {"pricing_model": model, "price": minor_units(plan["unit_amount"], currency)}
    return {"pricing_model": model, "tiers": _tiers(plan)}


def _tiers(plan: dict) -> list[dict]:
    """Tiers from unit 1 up; a tier has one price, so a scenario tier with both a unit and
    a flat amount has no Chargebee equivalent (the scenario is refused loudly)."""
    tiers, start, stairstep = [], 1, plan["pricing_model"] == "stairstep"
    for tier in plan["tiers"]:
        unit, flat = tier["unit_amount"], tier["flat_amount"]
        if stairstep:
            price, pricing_type = flat, None
        elif unit and flat:
            raise ValueError(f"{plan['plan_id']}: a Chargebee tier has a unit or a flat price")
        else:
            price, pricing_type = (flat, "flat_fee") if flat else (unit, "per_unit")
        tiers.append(
            compact(
                {
                    "starting_unit": start,
                    "ending_unit": tier["up_to"],
                    "price": minor_units(price, plan["currency"]),
                    "pricing_type": pricing_type,
                }
            )
        )
        start = (tier["up_to"] or 0) + 1
    return tiers


class ChargebeeRenderer:
    """Renders one store's neutral records as Chargebee objects at a given time.

    `legacy_cutoff`: a record whose last change is older than this and that was never
    written through the API is shown without `updated_at`/`resource_version`, as old
    Chargebee records are (see `ChargebeeEmulator.legacy_updated_at_days`).
    """

    def __init__(self, store: SystemStore, legacy_cutoff: datetime, catalog: str = "2.0"):
        self.store = store
        self.legacy_cutoff = legacy_cutoff
        self.catalog = catalog
        self._items_source: list | None = None
        self._items: dict[str, dict] = {}

    # -- shared stamps -------------------------------------------------------------
    def updated_at(self, record: dict) -> datetime | None:
        """The record's `updated_at` as the API shows it: None for a legacy record.

        The store bumps `version` on every write, so version 1 means "as loaded"."""
        value = record["updated_at"]
        if value is None or (record["version"] == 1 and value < self.legacy_cutoff):
            return None
        return value

    def _stamps(self, record: dict) -> dict:
        updated = self.updated_at(record)
        if updated is None:
            return {}
        millis = (updated - EPOCH) // timedelta(milliseconds=1)
        return {"updated_at": epoch(updated), "resource_version": millis + record["version"] - 1}

    # -- catalog -------------------------------------------------------------------
    def items(self) -> dict[str, dict]:
        """Chargebee items are the scenario's products, derived from its plans: one per
        product_id with the earliest created_at, latest updated_at and highest version of
        its prices. Rebuilt only when the store's plan view changes."""
        source, _ = self.store.ordered("plans", "created_at")
        if source is not self._items_source:
            items: dict[str, dict] = {}
            for plan in source:  # ascending created_at: the first plan seen is the oldest
                item = items.setdefault(
                    plan["product_id"],
                    {
                        "item_id": plan["product_id"],
                        "name": plan["product_name"],
                        "type": plan["kind"],
                        "metered": plan["usage_type"] == "metered",
                        "created_at": plan["created_at"],
                        "updated_at": plan["updated_at"],
                        "version": plan["version"],
                    },
                )
                item["updated_at"] = max(item["updated_at"], plan["updated_at"])
                item["version"] = max(item["version"], plan["version"])
            self._items_source, self._items = source, items
        return self._items

    def item(self, item: dict) -> dict:
        return {
            "id": item["item_id"],
            "object": "item",
            "name": item["name"],
            "external_name": item["name"],
            "status": "active",
            "type": item["type"],
            "item_family_id": "default",
            "is_shippable": False,
            "is_giftable": False,
            "enabled_for_checkout": True,
            "enabled_in_portal": True,
            "item_applicability": "all",
            "metered": item["metered"],
            "channel": "web",
            "deleted": False,
            **self._stamps(item),
        }

    def item_price(self, plan: dict) -> dict:
        """A charge's price has no billing period: it is charged once."""
        charge = plan["kind"] == "charge"
        return {
            "id": plan["plan_id"],
            "object": "item_price",
            "name": plan["plan_id"],
            "external_name": plan["product_name"],
            "item_family_id": "default",
            "item_id": plan["product_id"],
            "item_type": plan["kind"],
            **self._catalog_status(plan),
            **pricing(plan),
            "currency_code": plan["currency"],
            **(
                {}
                if charge
                else {"period": plan["interval_count"], "period_unit": plan["interval"]}
            ),
            "free_quantity": 0,
            "is_taxable": True,
            "channel": "web",
            "created_at": epoch(plan["created_at"]),
            "deleted": False,
            **self._stamps(plan),
        }

    def plan(self, plan: dict) -> dict:
        """The Product Catalog 1.0 view of a plan, for readers still on `/plans`."""
        return {
            "id": plan["plan_id"],
            "object": "plan",
            "name": plan["product_name"],
            "invoice_name": plan["product_name"],
            **pricing(plan),
            "charge_model": pricing(plan)["pricing_model"],
            "currency_code": plan["currency"],
            "period": plan["interval_count"],
            "period_unit": plan["interval"],
            "free_quantity": 0,
            **self._catalog_status(plan),
            "enabled_in_hosted_pages": True,
            "enabled_in_portal": True,
            "addon_applicability": "all",
            "is_shippable": False,
            "giftable": False,
            "taxable": True,
            **self._stamps(plan),
        }

    def addon(self, plan: dict) -> dict:
        """The Product Catalog 1.0 view of an add-on or charge (`/addons`): recurring when
        billed every period, else non_recurring (a charge, or metered usage)."""
        recurring = is_recurring(plan)
        return {
            "id": plan["plan_id"],
            "object": "addon",
            "name": plan["product_name"],
            "invoice_name": plan["product_name"],
            "type": ADDON_TYPE[plan["pricing_model"]],
            "charge_type": "recurring" if recurring else "non_recurring",
            **pricing(plan),
            "currency_code": plan["currency"],
            **(
                {"period": plan["interval_count"], "period_unit": plan["interval"]}
                if recurring
                else {"period_unit": "not_applicable"}
            ),
            **self._catalog_status(plan),
            "enabled_in_portal": True,
            "is_shippable": False,
            "taxable": True,
            "channel": "web",
            **self._stamps(plan),
        }

    @staticmethod
    def _catalog_status(plan: dict) -> dict:
        """An archived price (item price, plan, add-on) sells no more; its subscriptions go
        on. Chargebee states it as `status` archived with `archived_at`."""
        if plan["archived_at"] is None:
            return {"status": "active"}
        return {"status": "archived", "archived_at": epoch(plan["archived_at"])}

    def coupon(self, coupon: dict) -> dict:
        percent, amount = coupon["percent_off"], coupon["amount_off"]
        repeating = coupon["duration"] == "repeating"
        return compact(
            {
                "id": coupon["coupon_id"],
                "object": "coupon",
                "name": coupon["name"] or coupon["coupon_id"],
                "discount_type": "percentage" if percent is not None else "fixed_amount",
                "discount_percentage": float(percent) if percent is not None else None,
                "discount_amount": (
                    minor_units(amount, coupon["currency"]) if amount is not None else None
                ),
                "currency_code": coupon["currency"],
                "duration_type": COUPON_DURATION[coupon["duration"]],
                "period": coupon["duration_in_months"] if repeating else None,
                "period_unit": "month" if repeating else None,
                "duration_month": coupon["duration_in_months"] if repeating else None,
                "status": "active" if coupon["deleted_at"] is None else "deleted",
                "apply_on": "invoice_amount",
                "apply_discount_on": "not_applicable",  # a PC1 attribute, always sent
                **self._coupon_constraints(),
                "created_at": epoch(coupon["created_at"]),
                "deleted": False,  # a deleted coupon is a `status`: it stays retrievable
                **self._stamps(coupon),
            }
        )

    def _coupon_constraints(self) -> dict:
        """Which plans a coupon applies to, in the site's catalog's terms: all of them."""
        if self.catalog == "1.0":
            return {"plan_constraint": "all", "addon_constraint": "all"}
        return {"item_constraints": [{"item_type": "plan", "constraint": "all"}]}

    # -- customers -----------------------------------------------------------------
    def customer(self, customer: dict) -> dict:
        first, _, last = (customer["name"] or "").strip().partition(" ")
        return compact(
            {
                "id": customer["customer_id"],
                "object": "customer",
                "first_name": first or None,
                "last_name": last.strip() or None,
                "email": customer["email"],
                "auto_collection": "on",
                "net_term_days": 0,
                "allow_direct_debit": False,
                "taxability": "taxable",
                "pii_cleared": "active",
                "channel": "web",
                "card_status": "no_card",
                "promotional_credits": 0,
                "refundable_credits": 0,
                "excess_payments": 0,
                "unbilled_charges": 0,
                "created_at": epoch(customer["created_at"]),
                "deleted": customer["deleted_at"] is not None,
                **self._stamps(customer),
            }
        )

    # -- subscriptions -------------------------------------------------------------
    def subscription(self, sub: dict, now: datetime, scheduled: bool = False) -> dict:
        """The subscription as listed and retrieved, or with `scheduled` as
        `retrieve_with_scheduled_changes` answers: with its pending plan change applied."""
        if scheduled and sub["pending_plan_id"] is not None:
            sub = sub | {
                "plan_id": sub["pending_plan_id"],
                "quantity": sub["pending_quantity"] or sub["quantity"],
            }
        plan = self.store.get("plans", sub["plan_id"])
        status = subscription_status(sub, now)
        future = status == "future"
        term_start, term_end = current_period(sub, plan, now)
        ends = status in ("cancelled", "non_renewing")
        pause_date, resume_date = self._pause_window(sub, now)
        pending = sub["pending_plan_id"] is not None and not is_ended(sub, now)
        return compact(
            {
                "id": sub["subscription_id"],
                "object": "subscription",
                "customer_id": sub["customer_id"],
                "status": status,
                "currency_code": plan["currency"],
                "billing_period": plan["interval_count"],
                "billing_period_unit": plan["interval"],
                **self._item_fields(sub, future),
                "coupons": self._applied_coupons(sub, future),
                "auto_collection": "on",
                "channel": "web",
                "has_scheduled_changes": pending,
                "changes_scheduled_at": epoch(term_end) if pending else None,
                "remaining_billing_cycles": self._remaining_cycles(sub, plan, status, term_start),
                "has_scheduled_advance_invoices": False,
                "decommissioned": False,
                "created_at": epoch(sub["created_at"]),
                "start_date": epoch(sub["activated_at"]) if future else None,
                "started_at": None if future else epoch(sub["activated_at"]),
                "activated_at": epoch(self._became_active_at(sub, status, now)),
                "trial_start": epoch(sub["trial_start"]),
                "trial_end": epoch(sub["trial_end"]),
                "current_term_start": None if future else epoch(term_start),
                "current_term_end": None if future else epoch(term_end),
                "next_billing_at": epoch(self._next_billing_at(sub, status, term_end, resume_date)),
                "cancelled_at": epoch(sub["ended_at"]) if ends else None,
                "cancel_schedule_created_at": epoch(self._cancel_requested_at(sub, status)),
                "pause_date": epoch(pause_date),
                "resume_date": epoch(resume_date),
                "mrr": self._mrr(sub, plan, status, now),
                **self._dues(sub),
                "deleted": sub["deleted_at"] is not None,
                **self._stamps(sub),
            }
        )

    def _lines(self, sub: dict) -> list[tuple[dict, int]]:
        """(price, quantity) of everything the subscription holds: its plan, then `items`."""
        extra = [(self.store.get("plans", i["plan_id"]), i["quantity"]) for i in sub["items"] or ()]
        return [(self.store.get("plans", sub["plan_id"]), sub["quantity"]), *extra]

    def _item_fields(self, sub: dict, future: bool) -> dict:
        """What the subscription holds, in its catalog's terms: 2.0 `subscription_items`
        (plan first) and the tiers that price them (`item_tiers`); 1.0 the `plan_*`
        attributes, `addons` and `event_based_addons`."""
        (plan, quantity), *extra = self._lines(sub)
        if self.catalog == "2.0":
            items = [self._subscription_item(p, q) for p, q in self._lines(sub)]
            if sub["term_cycles"] is not None:  # the plan item's term, in billing cycles
                items[0]["billing_cycles"] = sub["term_cycles"]
            charged = [
                {"item_price_id": p["plan_id"], "last_charged_at": epoch(sub["created_at"])}
                for p, _ in extra
                if p["kind"] == "charge" and not future
            ]
            return {
                "subscription_items": items,
                "item_tiers": self._item_tiers(self._lines(sub)) or None,
                "charged_items": charged or None,
            }
        unit_price = minor_units(plan["unit_amount"], plan["currency"])
        fields = {
            "plan_id": plan["plan_id"],
            "plan_quantity": quantity,
            "plan_unit_price": unit_price,
            "plan_amount": unit_price * quantity,
            "plan_free_quantity": 0,
        }
        addons = [self._attached_addon(p, q) for p, q in extra if is_recurring(p)]
        charges = [self._event_based_addon(p, q) for p, q in extra if p["kind"] == "charge"]
        charged = [
            {"id": p["plan_id"], "last_charged_at": epoch(sub["created_at"])}
            for p, _ in extra
            if p["kind"] == "charge" and not future
        ]
        return fields | {
            "addons": addons or None,
            "event_based_addons": charges or None,
            "charged_event_based_addons": charged or None,
        }

    @staticmethod
    def _item_tiers(lines: list[tuple[dict, int]]) -> list[dict]:
        """A 2.0 subscription states the tiers of each of its tiered items (copied from
        the item price when the subscription was created; a merchant may override them per
        subscription, which scenarios do not)."""
        return [
            {**tier, "item_price_id": plan["plan_id"], "index": index, "object": "item_tier"}
            for plan, _ in lines
            for index, tier in enumerate(pricing(plan).get("tiers") or (), start=1)
        ]

    @staticmethod
    def _priced(plan: dict, quantity: int) -> dict:
        """quantity, unit_price and amount of a licensed item, as the API states them: a
        flat fee has no quantity, a tier model no unit price (its tiers price it)."""
        currency, model = plan["currency"], plan["pricing_model"]
        amount = minor_units(item_amount(plan, quantity), currency)
        if model in TIER_MODELS or model == "package":
            return {"quantity": quantity, "amount": amount}
        unit_price = minor_units(plan["unit_amount"], currency)
        if model == "flat_fee":
            return {"unit_price": unit_price, "amount": amount}
        return {"quantity": quantity, "unit_price": unit_price, "amount": amount}

    def _subscription_item(self, plan: dict, quantity: int) -> dict:
        """One 2.0 subscription item: a metered one states its unit price only (its amount
        comes from usage); a charge is charged on the subscription's creation, once."""
        if plan["usage_type"] == "metered":
            priced = {"unit_price": minor_units(plan["unit_amount"], plan["currency"])}
        else:
            priced = self._priced(plan, quantity)
        if plan["kind"] == "charge":
            priced |= {
                "charge_on_option": "on_event",
                "charge_on_event": CHARGE_EVENT,
                "charge_once": True,
            }
        return {
            "item_price_id": plan["plan_id"],
            "item_type": plan["kind"],
            **priced,
            "free_quantity": 0,
            "object": "subscription_item",
        }

    def _attached_addon(self, plan: dict, quantity: int) -> dict:
        return {"id": plan["plan_id"], **self._priced(plan, quantity), "object": "addon"}

    @staticmethod
    def _event_based_addon(plan: dict, quantity: int) -> dict:
        return {
            "id": plan["plan_id"],
            "quantity": quantity,
            "unit_price": minor_units(plan["unit_amount"], plan["currency"]),
            "on_event": CHARGE_EVENT,
            "charge_once": True,
            "object": "event_based_addon",
        }

    @staticmethod
    def _became_active_at(sub: dict, status: str, now: datetime) -> datetime | None:
        """Chargebee's `activated_at`: when the subscription turned active, i.e. the end of
        its trial if it had one; absent while future or in trial, or if it ended in trial."""
        if status in ("future", "in_trial"):
            return None
        until = min(now, sub["ended_at"]) if sub["ended_at"] is not None else now
        trial_end = sub["trial_end"]
        if trial_end is None:
            return sub["activated_at"]
        return trial_end if trial_end <= until else None

    @staticmethod
    def _next_billing_at(
        sub: dict, status: str, term_end: datetime, resume_date: datetime | None
    ) -> datetime | None:
        if status in ("active", "in_trial"):
            return term_end
        if status == "future":
            return sub["activated_at"]
        if status == "paused":
            return resume_date
        return None  # cancelled, or non_renewing: it will not bill again

    @staticmethod
    def _cancel_requested_at(sub: dict, status: str) -> datetime | None:
        """When a cancel at a later date was scheduled; an immediate cancel has none."""
        canceled_at = sub["canceled_at"]
        if canceled_at is None:
            return None
        if status == "non_renewing" or canceled_at < sub["ended_at"]:
            return canceled_at
        return None

    @staticmethod
    def _pause_window(sub: dict, now: datetime) -> tuple[datetime | None, datetime | None]:
        """pause_date/resume_date while a pause is current or scheduled; cleared once the
        subscription has resumed or ended, as Chargebee does."""
        paused_at, resumes_at = sub["paused_at"], sub["resumes_at"]
        ended = sub["ended_at"] is not None and sub["ended_at"] <= now
        if paused_at is None or ended or (resumes_at is not None and resumes_at <= now):
            return None, None
        return paused_at, resumes_at

    def _coupons(self, sub: dict) -> list[dict]:
        """The subscription's coupons in the order they were applied."""
        ids = [sub["coupon_id"], *(sub["extra_coupon_ids"] or ())] if sub["coupon_id"] else []
        return [self.store.get("coupons", coupon_id) for coupon_id in ids]

    def _applied_coupons(self, sub: dict, future: bool) -> list[dict] | None:
        """`coupons[]` in the order applied (a deleted coupon stays on the subscriptions
        that had it)."""
        applied = []
        for coupon in self._coupons(sub):
            apply_till = None
            if coupon["duration"] == "repeating":
                months = coupon["duration_in_months"]
                apply_till = add_interval(sub["activated_at"], "month", months)
            applied.append(
                compact(
                    {
                        "coupon_id": coupon["coupon_id"],
                        "applied_count": 0 if future else 1,
                        "apply_till": epoch(apply_till),
                        "object": "coupon",
                    }
                )
            )
        return applied or None

    @staticmethod
    def _remaining_cycles(sub: dict, plan: dict, status: str, term_start: datetime) -> int | None:
        """Billing cycles left in a multi-cycle term after the current one; the term renews
        when none are left. Only while the subscription bills (not future, not ended)."""
        cycles = sub["term_cycles"]
        if cycles is None or status in ("future", "cancelled", "transferred"):
            return None
        anchor, elapsed = sub["trial_end"] or sub["activated_at"], 0
        while anchor < term_start:
            elapsed += 1
            anchor = add_interval(
                sub["trial_end"] or sub["activated_at"],
                plan["interval"],
                plan["interval_count"] * elapsed,
            )
        return cycles - 1 - elapsed % cycles

    def _mrr(self, sub: dict, plan: dict, status: str, now: datetime) -> int:
        """Monthly recurring revenue in minor units: what an active or non-renewing
        subscription's plan and recurring add-ons bring per month after a lasting discount
        (metered usage and one-time charges are not recurring revenue); 0 otherwise."""
        if status not in ("active", "non_renewing"):
            return 0  # in trial, paused, future, cancelled or transferred
        recurring = sum(item_amount(p, q) for p, q in self._lines(sub) if is_recurring(p))
        per_period = Decimal(minor_units(recurring, plan["currency"]))
        for coupon in self._coupons(sub):  # each lasting discount, in the order applied
            if not self._discount_applies(coupon, sub, now):
                continue
            if coupon["percent_off"] is not None:
                per_period *= 1 - coupon["percent_off"] / 100
            elif coupon["currency"] == plan["currency"]:
                off = minor_units(coupon["amount_off"], coupon["currency"])
                per_period = max(Decimal(0), per_period - off)
        monthly = per_period * _PERIODS_PER_MONTH[plan["interval"]] / plan["interval_count"]
        return int(monthly.to_integral_value())

    @staticmethod
    def _discount_applies(coupon: dict, sub: dict, now: datetime) -> bool:
        if coupon["duration"] == "forever":
            return True
        if coupon["duration"] == "repeating":
            months = coupon["duration_in_months"]
            return now < add_interval(sub["activated_at"], "month", months)
        return False  # a one-time discount does not recur

    def _dues(self, sub: dict) -> dict:
        """due_invoices_count, total_dues and due_since from the subscription's open invoices."""
        due = [
            invoice
            for invoice in self.store.by_customer["invoices"].get(sub["customer_id"], ())
            if invoice["subscription_id"] == sub["subscription_id"] and invoice["status"] in UNPAID
        ]
        if not due:
            return {"due_invoices_count": 0}
        return {
            "due_invoices_count": len(due),
            "total_dues": sum(minor_units(i["total"], i["currency"]) for i in due),
            "due_since": epoch(min(i["created_at"] for i in due)),
        }

    # -- invoices ------------------------------------------------------------------
    def invoice(self, invoice: dict) -> dict:
        total = minor_units(invoice["total"], invoice["currency"])
        status = invoice["status"]
        return compact(
            {
                "id": invoice["invoice_id"],
                "object": "invoice",
                "customer_id": invoice["customer_id"],
                "subscription_id": invoice["subscription_id"],
                "recurring": invoice["subscription_id"] is not None,
                "status": INVOICE_STATUS[status],
                "price_type": "tax_exclusive",
                "date": epoch(invoice["created_at"]),
                "due_date": epoch(invoice["created_at"]),
                "net_term_days": 0,
                "currency_code": invoice["currency"],
                "exchange_rate": 1.0,
                "sub_total": total,
                "tax": 0,
                "total": total,
                "amount_paid": total if status == "paid" else 0,
                "amount_adjusted": 0,
                "write_off_amount": 0,
                "credits_applied": 0,
                "amount_due": total if status in UNPAID else 0,
                "amount_to_collect": total if status in UNPAID else 0,
                "round_off_amount": 0,
                "paid_at": epoch(invoice["paid_at"]),
                "term_finalized": True,
                "is_gifted": False,
                "has_advance_charges": False,
                "line_items": [self._line_item(invoice, total)],
                "channel": "web",
                "deleted": False,
                **self._stamps(invoice),
            }
        )

    def _line_item(self, invoice: dict, total: int) -> dict:
        """One line: the subscription's plan for the period the invoice falls in (the plan
        price × quantity when that is the total), or a single charge without one."""
        date = invoice["created_at"]
        line = {
            "id": f"li_{invoice['invoice_id']}",
            "object": "line_item",
            "customer_id": invoice["customer_id"],
            "subscription_id": invoice["subscription_id"],
            "date_from": epoch(date),
            "date_to": epoch(date),
            "unit_amount": total,
            "quantity": 1,
            "amount": total,
            "pricing_model": "per_unit",
            "is_taxed": False,
            "tax_amount": 0,
            "discount_amount": 0,
            "item_level_discount_amount": 0,
            "entity_type": "adhoc",
            "description": "Charge",
        }
        sub = self.store.get("subscriptions", invoice["subscription_id"] or "")
        if sub is None:
            return line
        plan = self.store.get("plans", sub["plan_id"])
        start, end = current_period(sub, plan, date)
        unit = minor_units(plan["unit_amount"], plan["currency"])
        if unit * sub["quantity"] == total:
            line.update(unit_amount=unit, quantity=sub["quantity"])
        line.update(
            date_from=epoch(start),
            date_to=epoch(end),
            entity_type="plan" if self.catalog == "1.0" else "plan_item_price",
            entity_id=plan["plan_id"],
            description=plan["product_name"],
        )
        return line
