"""Stripe API objects rendered from the neutral records, and the history Stripe would have kept.

Objects follow exactly the shape of the API version the installed SDK pins
(2026-10-28.endive), as its typed classes declare it (tests/integration/test_conformance_stripe.py
checks every object): plan, price, quantity and periods live on the subscription's items,
coupons on `discounts` (a Discount names its coupon in `source.coupon`), an invoice's
subscription in `parent.subscription_details`, a line's price in `pricing.price_details`.
No legacy field is sent: a reader that still wants one must fail here as it would on Stripe.
Everything is derived at request time from the neutral record and the clock: a write changes
one record and every later read, expansion and event shows it.

Prices, plans, products and coupons never change through the API, so their rendered dicts
are cached and shared between responses; expansion therefore copies on write and never
mutates a rendered dict in place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from sandbox.billing import (
    add_interval,
    current_period,
    is_ended,
    is_paused,
    is_trialing,
    plan_in_currency,
    subscription_currency,
)
from sandbox.scenario import to_minor_units
from sandbox.server import ApiError
from sandbox.store import SystemStore

API_VERSION = "2026-10-28.endive"  # the version stripe 16.1.0 pins; events carry it
EVENT_RETENTION = timedelta(days=30)  # Stripe lists and retrieves events for 30 days
_JUST_BEFORE = timedelta(microseconds=1)


def ts(value: datetime | None) -> int | None:
    """Stripe timestamps are integer epoch seconds."""
    return None if value is None else int(value.timestamp())


def discount_id(owner_id: str, coupon_id: str, start: datetime) -> str:
    """Stable `di_` id: the same application of a coupon (to a subscription or a
    customer) always has the same id."""
    digest = hashlib.blake2b(f"{owner_id}|{coupon_id}|{start}".encode(), digest_size=8)
    return "di_" + digest.hexdigest()


def schedule_id(subscription_id: str) -> str:
    """The SubscriptionSchedule that holds a subscription's scheduled change."""
    return "sub_sched_" + hashlib.blake2b(subscription_id.encode(), digest_size=8).hexdigest()


def is_gone(record: dict, now: datetime) -> bool:
    """A customer or coupon deleted by `now`: Stripe lists it no more."""
    return record.get("deleted_at") is not None and record["deleted_at"] <= now


def sub_currency(sub: dict, plan: dict) -> str:
    """The currency the subscription bills in (its own, else its plan's)."""
    return subscription_currency(sub, {(sub["billing_system"], sub["plan_id"]): plan})


def item_id(subscription_id: str, price_id: str | None = None) -> str:
    """A subscription item's id, derived so writes can name it: the plan's item is
    `si_<subscription>` (as before items), every further price's a digest of both ids."""
    if price_id is None:
        return "si_" + subscription_id
    digest = hashlib.blake2b(f"{subscription_id}|{price_id}".encode(), digest_size=8)
    return "si_" + digest.hexdigest()


def extra_item_id(sub: dict, extra: dict) -> str:
    """The id of one of the subscription's further items: derived, or the one it kept when
    a write changed its price."""
    return extra.get("item_id") or item_id(sub["subscription_id"], extra["plan_id"])


def meter_id(price_id: str) -> str:
    """The Billing Meter a metered price reports usage to: since 2025-03-31.basil every
    metered price has one (`recurring.meter`); one per price here."""
    return "mtr_" + hashlib.blake2b(price_id.encode(), digest_size=8).hexdigest()


_TIERS_MODE = {"tiered": "graduated", "volume": "volume"}  # scenario model -> Stripe's


def _minor(amount, currency: str) -> tuple[int, str]:
    """An amount as Stripe sends it: integer minor units and its decimal string."""
    minor = to_minor_units(amount, currency)
    return minor, str(minor)


# Invoice fields Stripe sends that this sandbox has no facts for (no tax, shipping, invoice
# numbering, hosted pages or Connect): sent as a real invoice without them sends them.
_INVOICE_CONSTANTS = {
    "account_country": None,
    "account_name": None,
    "account_tax_ids": None,
    "application": None,
    "automatically_finalizes_at": None,
    "custom_fields": None,
    "customer_account": None,
    "customer_address": None,
    "customer_phone": None,
    "customer_shipping": None,
    "customer_tax_exempt": "none",
    "customer_tax_ids": [],
    "default_payment_method": None,
    "default_source": None,
    "description": None,
    "due_date": None,
    "ending_balance": 0,
    "footer": None,
    "from_invoice": None,
    "hosted_invoice_url": None,
    "invoice_pdf": None,
    "last_finalization_error": None,
    "latest_revision": None,
    "number": None,
    "on_behalf_of": None,
    "receipt_number": None,
    "rendering": None,
    "shipping_cost": None,
    "shipping_details": None,
    "statement_descriptor": None,
    "test_clock": None,
    "total_discount_amounts": [],
    "total_pretax_credit_amounts": [],
    "total_taxes": [],
}
# Scenario invoice status -> Stripe's: a past-due invoice is still `open` (collection was
# attempted and failed; Stripe retries it later).
INVOICE_STATUS = {
    "draft": "draft",
    "open": "open",
    "past_due": "open",
    "paid": "paid",
    "uncollectible": "uncollectible",
    "void": "void",
}
# When Stripe next tries to collect an unpaid invoice, after its creation (seconds): an hour
# after finalizing, then Smart Retries days later.
_RETRY_AFTER = {"open": 3600, "past_due": 3 * 24 * 3600}
# A schedule's settings when it sets none of its own (the subscription's, as created from it).
_SCHEDULE_DEFAULT_SETTINGS = {
    "application_fee_percent": None,
    "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
    "billing_cycle_anchor": "automatic",
    "billing_thresholds": None,
    "collection_method": "charge_automatically",
    "default_payment_method": None,
    "description": None,
    "invoice_settings": {
        "account_tax_ids": None,
        "custom_fields": None,
        "days_until_due": None,
        "description": None,
        "footer": None,
        "issuer": {"type": "self"},
    },
    "on_behalf_of": None,
    "transfer_data": None,
}
EMBEDDED_LINES = 10  # an invoice embeds its first 10 lines (a list's default page)
MAX_EXPAND_DEPTH = 4  # Stripe: "Expansions have a maximum depth of four levels"


def cannot_expand(path: str) -> ApiError:
    return ApiError(400, "expand_invalid", f"This property cannot be expanded ({path}).")


def too_deep(path: str) -> ApiError:
    message = f"You cannot expand more than {MAX_EXPAND_DEPTH} levels of a property: {path}."
    return ApiError(400, "expand_invalid", message)


class StripeRenderer:
    """Renders one system's neutral records as Stripe objects and expands references."""

    def __init__(self, store: SystemStore):
        self.store = store
        self.products = self._products_from_plans()
        self.invoices_by_subscription = self._invoices_by_subscription()
        self._prices: dict[str, dict] = {}
        self._plans: dict[str, dict] = {}
        self._coupons: dict[str, dict] = {}
        # (object type, path inside it) -> loader(parent object, id, now): the expandable
        # references (`ExpandableField` in the SDK) this sandbox can resolve.
        self._expanders: dict[tuple[str, str], Callable[[dict, str, datetime], dict]] = {
            ("subscription", "customer"): self._load_customer,
            ("subscription", "latest_invoice"): self._load_invoice,
            ("subscription", "discounts"): self._load_discount,
            ("subscription_item", "discounts"): self._load_discount,
            ("price", "product"): self._load_product,
            ("plan", "product"): self._load_product,
            ("invoice", "customer"): self._load_customer,
            ("invoice", "parent.subscription_details.subscription"): self._load_subscription,
            ("discount", "customer"): self._load_customer,
            ("subscription", "schedule"): self._load_schedule,
            ("subscription_schedule", "customer"): self._load_customer,
            ("subscription_schedule", "subscription"): self._load_subscription,
            ("discount", "source.coupon"): self._load_coupon,
        }
        # Fields Stripe includes only when expanded (`expand[]=tiers` on a price).
        self._includable: dict[tuple[str, str], Callable[[dict], object]] = {
            ("price", "tiers"): self._price_tiers,
            ("price", "currency_options"): self._currency_options,
            ("plan", "tiers"): self._price_tiers,
        }
        # Expandable references this sandbox always leaves null (no such objects here).
        self._always_null = {
            ("subscription", "default_payment_method"),
            ("subscription", "default_source"),
            ("subscription", "schedule"),
            ("subscription_schedule", "test_clock"),
            ("subscription", "test_clock"),
            ("customer", "default_source"),
            ("customer", "test_clock"),
        }

    # -- indexes over records the API never changes ---------------------------------
    def _products_from_plans(self) -> dict[str, dict]:
        """Products are implied by plans: first plan's name, earliest plan's creation."""
        products: dict[str, dict] = {}
        for plan in self.store.all("plans"):
            product = products.setdefault(
                plan["product_id"],
                {
                    "product_id": plan["product_id"],
                    "name": plan["product_name"],
                    "created_at": plan["created_at"],
                },
            )
            product["created_at"] = min(product["created_at"], plan["created_at"])
        return products

    def _invoices_by_subscription(self) -> dict[str, list[dict]]:
        """Invoices of each subscription, oldest first (the last one is `latest_invoice`)."""
        index: dict[str, list[dict]] = {}
        for invoice in self.store.all("invoices"):
            if invoice["subscription_id"] is not None:
                index.setdefault(invoice["subscription_id"], []).append(invoice)
        for invoices in index.values():
            invoices.sort(key=lambda r: (r["created_at"], r["invoice_id"]))
        return index

    # -- catalogue objects (cached: immutable through the API) ----------------------
    def price(self, plan: dict) -> dict:
        """A Price: tiered and volume prices (`billing_scheme=tiered`) have no unit amount
        and send their `tiers` only when expanded; a package price divides the quantity
        (`transform_quantity`, rounded up); a metered one bills a meter's usage. An
        archived plan is an inactive price (`active: false`): no new sales, its
        subscriptions go on; its further currencies come only with
        `expand[]=currency_options`."""
        cached = self._prices.get(plan["plan_id"])
        if cached is None:
            tiered = plan["pricing_model"] in _TIERS_MODE
            amount, decimal = (
                (None, None) if tiered else _minor(plan["unit_amount"], plan["currency"])
            )
            metered = plan["usage_type"] == "metered"
            cached = self._prices[plan["plan_id"]] = {
                "id": plan["plan_id"],
                "object": "price",
                "active": plan["archived_at"] is None,
                "billing_scheme": "tiered" if tiered else "per_unit",
                "created": ts(plan["created_at"]),
                "currency": plan["currency"].lower(),
                "custom_unit_amount": None,
                "livemode": False,
                "lookup_key": None,
                "metadata": {},
                "nickname": None,
                "product": plan["product_id"],
                "recurring": {
                    "interval": plan["interval"],
                    "interval_count": plan["interval_count"],
                    "meter": meter_id(plan["plan_id"]) if metered else None,
                    "trial_period_days": None,
                    "usage_type": plan["usage_type"],
                },
                "tax_behavior": "unspecified",
                "tiers_mode": _TIERS_MODE.get(plan["pricing_model"]),
                "transform_quantity": _package(plan),
                "type": "recurring",
                "unit_amount": amount,
                "unit_amount_decimal": decimal,
            }
        return cached

    def plan(self, plan: dict) -> dict:
        """The Plan object each subscription item still carries (`item.plan`, beside `price`):
        the same terms under the Plan's names (`amount`, `transform_usage`)."""
        cached = self._plans.get(plan["plan_id"])
        if cached is None:
            price = self.price(plan)
            cached = self._plans[plan["plan_id"]] = {
                "id": plan["plan_id"],
                "object": "plan",
                "active": price["active"],
                "amount": price["unit_amount"],
                "amount_decimal": price["unit_amount_decimal"],
                "billing_scheme": price["billing_scheme"],
                "created": price["created"],
                "currency": price["currency"],
                "interval": plan["interval"],
                "interval_count": plan["interval_count"],
                "livemode": False,
                "metadata": {},
                "meter": price["recurring"]["meter"],
                "nickname": None,
                "product": plan["product_id"],
                "tiers_mode": price["tiers_mode"],
                "transform_usage": price["transform_quantity"],
                "trial_period_days": None,
                "usage_type": plan["usage_type"],
            }
        return cached

    def product(self, product: dict) -> dict:
        created = ts(product["created_at"])
        return {
            "id": product["product_id"],
            "object": "product",
            "active": True,
            "created": created,
            "default_price": None,
            "description": None,
            "images": [],
            "livemode": False,
            "marketing_features": [],
            "metadata": {},
            "name": product["name"],
            "package_dimensions": None,
            "shippable": None,
            "statement_descriptor": None,
            "tax_code": None,
            "type": "service",
            "unit_label": None,
            "updated": created,
            "url": None,
        }

    def coupon(self, coupon: dict) -> dict:
        cached = self._coupons.get(coupon["coupon_id"])
        if cached is None:
            amount_off = coupon["amount_off"]
            cached = self._coupons[coupon["coupon_id"]] = {
                "id": coupon["coupon_id"],
                "object": "coupon",
                "amount_off": None
                if amount_off is None
                else to_minor_units(amount_off, coupon["currency"]),
                "created": ts(coupon["created_at"]),
                "currency": coupon["currency"].lower() if coupon["currency"] else None,
                "duration": coupon["duration"],
                "duration_in_months": coupon["duration_in_months"],
                "livemode": False,
                "max_redemptions": None,
                "metadata": {},
                "name": coupon["name"],
                "percent_off": None
                if coupon["percent_off"] is None
                else float(coupon["percent_off"]),
                "redeem_by": None,
                "times_redeemed": self._redemptions(coupon["coupon_id"]),
                "valid": coupon["deleted_at"] is None,
            }
        return cached

    def _redemptions(self, coupon_id: str) -> int:
        """`times_redeemed`: subscriptions (any of their discounts) and customers of the
        scenario that carry the coupon."""
        subs = sum(coupon_id in applied_coupons(sub) for sub in self.store.all("subscriptions"))
        customers = sum(c["coupon_id"] == coupon_id for c in self.store.all("customers"))
        return subs + customers

    def _currency_options(self, price: dict) -> dict:
        """`currency_options` (on `expand[]=currency_options`): the price in each currency
        it is sold in, its own included, keyed by lower-case code."""
        plan = self.store.get("plans", price["id"])
        options = {}
        for code in (plan["currency"], *(plan["currency_options"] or {})):
            amount, decimal = price["unit_amount"], price["unit_amount_decimal"]
            if amount is not None:  # per unit (tiers in other currencies: none here)
                amount, decimal = _minor(plan_in_currency(plan, code)["unit_amount"], code)
            options[code.lower()] = {
                "custom_unit_amount": None,
                "tax_behavior": "unspecified",
                "unit_amount": amount,
                "unit_amount_decimal": decimal,
            }
        return options

    def _price_tiers(self, price: dict) -> list[dict] | None:
        """`tiers`, included only on `expand[]=tiers` (a Price's or a Plan's): ascending, the
        last one open (`up_to` null), amounts in minor units; null for per-unit prices."""
        plan = self.store.get("plans", price["id"])
        if not plan["tiers"]:
            return None
        tiers = []
        for tier in plan["tiers"]:
            flat, flat_decimal = _minor(tier["flat_amount"], plan["currency"])
            unit, unit_decimal = _minor(tier["unit_amount"], plan["currency"])
            tiers.append(
                {
                    "flat_amount": flat,
                    "flat_amount_decimal": flat_decimal,
                    "unit_amount": unit,
                    "unit_amount_decimal": unit_decimal,
                    "up_to": tier["up_to"],
                }
            )
        return tiers

    # -- customers, subscriptions, invoices (derived at `now`) ----------------------
    def customer(self, customer: dict, now: datetime) -> dict:
        """A Customer; its own coupon is a customer-level `discount` (embedded, not
        expandable), which Stripe applies to subscriptions without a discount of theirs."""
        subscriptions = self.store.by_customer["subscriptions"].get(customer["customer_id"], [])
        currency = None
        if subscriptions:
            first = subscriptions[0]
            currency = sub_currency(first, self.store.get("plans", first["plan_id"])).lower()
        return {
            "id": customer["customer_id"],
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": ts(customer["created_at"]),
            "currency": currency,
            "customer_account": None,
            "default_source": None,
            "delinquent": any(s["dunning"] and not is_ended(s, now) for s in subscriptions),
            "description": None,
            "discount": self.customer_discount(customer),
            "email": customer["email"],
            "invoice_prefix": None,
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": {},
            "name": customer["name"],
            "next_invoice_sequence": len(
                self.store.by_customer["invoices"].get(customer["customer_id"], [])
            )
            + 1,
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }

    def customer_or_stub(self, customer: dict, now: datetime) -> dict:
        """What a retrieve (or an expansion) answers: a deleted customer is a stub."""
        if is_gone(customer, now):
            return {"id": customer["customer_id"], "object": "customer", "deleted": True}
        return self.customer(customer, now)

    def status(self, sub: dict, now: datetime) -> str:
        """Stripe's status: a pending cancel stays active and a collection pause keeps the
        status, so only the end, a trial and dunning change it."""
        if is_ended(sub, now):
            return "canceled"
        if is_trialing(sub, now):
            return "trialing"
        return sub["dunning"] or "active"

    def subscription(self, sub: dict, now: datetime) -> dict:
        """A Subscription in its own currency (the items' prices keep theirs: Stripe bills
        a price's `currency_options` entry). A change scheduled for the period's end is a
        SubscriptionSchedule's next phase: the subscription names it in `schedule` and its
        items stay the current ones."""
        plan = self.store.get("plans", sub["plan_id"])
        period_start, period_end = current_period(sub, plan, now)
        ended = is_ended(sub, now)
        pending_end = sub["ended_at"] if sub["ended_at"] is not None and not ended else None
        invoices = self.invoices_by_subscription.get(sub["subscription_id"])
        return {
            "id": sub["subscription_id"],
            "object": "subscription",
            "application": None,
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": ts(
                sub.get("term_end") or sub["trial_end"] or sub["activated_at"]
            ),
            "billing_cycle_anchor_config": None,
            "billing_mode": {"type": "classic"},
            "billing_schedules": [],
            "billing_thresholds": None,
            "cancel_at": ts(pending_end),
            "cancel_at_period_end": pending_end is not None and pending_end == period_end,
            "canceled_at": ts(sub["canceled_at"] or (sub["ended_at"] if ended else None)),
            "cancellation_details": self._cancellation_details(sub),
            "collection_method": "charge_automatically",
            "created": ts(sub["created_at"]),
            "currency": sub_currency(sub, plan).lower(),
            "customer": sub["customer_id"],
            "customer_account": None,
            "days_until_due": None,
            "default_payment_method": None,
            "default_source": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": [discount["id"] for discount in self.discounts(sub)],
            "ended_at": ts(sub["ended_at"]) if ended else None,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "items": {
                "object": "list",
                "data": self.items(sub, period_start, period_end),
                "has_more": False,
                "url": f"/v1/subscription_items?subscription={sub['subscription_id']}",
            },
            "latest_invoice": invoices[-1]["invoice_id"] if invoices else None,
            "livemode": False,
            "managed_payments": None,
            "metadata": sub.get("metadata") or {},
            "next_pending_invoice_item_invoice": None,
            "on_behalf_of": None,
            "pause_collection": self._pause_collection(sub, now),
            "payment_settings": {
                "payment_method_options": None,
                "payment_method_types": None,
                "save_default_payment_method": "off",
            },
            "pending_invoice_item_interval": None,
            "pending_setup_intent": None,
            "pending_update": None,
            "schedule": schedule_id(sub["subscription_id"])
            if sub["pending_plan_id"] is not None and not ended
            else None,
            "start_date": ts(sub["activated_at"]),
            "status": self.status(sub, now),
            "test_clock": None,
            "transfer_data": None,
            "trial_end": ts(sub["trial_end"]),
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": ts(sub["trial_start"]),
        }

    def items(self, sub: dict, period_start: datetime, period_end: datetime) -> list[dict]:
        """The subscription's items: its plan's (`si_<subscription>`), then each further
        price of `items`, all on the subscription's period. A metered item has no
        `quantity` (Stripe leaves the key out: usage is reported to the price's meter)."""
        rendered = []
        for plan, ident, quantity in self.item_entries(sub):
            item = {
                "id": ident,
                "object": "subscription_item",
                "billing_thresholds": None,
                "created": ts(sub["created_at"]),
                "current_period_end": ts(period_end),
                "current_period_start": ts(period_start),
                "discounts": [],
                "metadata": {},
                "plan": self.plan(plan),
                "price": self.price(plan),
                "quantity": quantity,
                "subscription": sub["subscription_id"],
                "tax_rates": [],
            }
            if plan["usage_type"] == "metered":
                del item["quantity"]
            rendered.append(item)
        return rendered

    def _pause_collection(self, sub: dict, now: datetime) -> dict | None:
        if is_ended(sub, now) or not is_paused(sub, now):
            return None
        return {
            "behavior": sub.get("pause_behavior") or "void",
            "resumes_at": ts(sub["resumes_at"]),
        }

    def _cancellation_details(self, sub: dict) -> dict:
        details = sub.get("cancellation_details") or {}
        requested = sub["canceled_at"] is not None or sub["ended_at"] is not None
        return {
            "comment": details.get("comment"),
            "feedback": details.get("feedback"),
            "reason": "cancellation_requested" if requested else None,
        }

    def schedule(self, sub: dict, now: datetime) -> dict:
        """The SubscriptionSchedule of a scheduled change: the current phase (the items as
        they are, to the period's end), then the next with the pending price in place of
        the plan's (same quantity unless the change sets one) for one period; then the
        schedule releases the subscription, which bills on as the last phase left it."""
        plan = self.store.get("plans", sub["plan_id"])
        start, end = current_period(sub, plan, now)
        current = [(item["price"]["id"], item.get("quantity")) for item in self._items_of(sub, now)]
        pending = self.store.get("plans", sub["pending_plan_id"])
        quantity = sub["pending_quantity"] or sub["quantity"]
        following = [(pending["plan_id"], quantity), *current[1:]]
        next_end = add_interval(end, pending["interval"], pending["interval_count"])
        currency = sub_currency(sub, plan).lower()
        return {
            "id": schedule_id(sub["subscription_id"]),
            "object": "subscription_schedule",
            "application": None,
            "billing_mode": {"type": "classic"},
            "canceled_at": None,
            "completed_at": None,
            "created": ts(sub["created_at"]),
            "current_phase": {"start_date": ts(start), "end_date": ts(end)},
            "customer": sub["customer_id"],
            "customer_account": None,
            "default_settings": _SCHEDULE_DEFAULT_SETTINGS,
            "end_behavior": "release",
            "livemode": False,
            "metadata": {},
            "pause_schedules": [],
            "phases": [
                _phase(current, currency, start, end),
                _phase(following, currency, end, next_end),
            ],
            "released_at": None,
            "released_subscription": None,
            "status": "active",
            "subscription": sub["subscription_id"],
            "test_clock": None,
        }

    def _items_of(self, sub: dict, now: datetime) -> list[dict]:
        start, end = current_period(sub, self.store.get("plans", sub["plan_id"]), now)
        return self.items(sub, start, end)

    def discounts(self, sub: dict) -> list[dict]:
        """The applied coupons as Discounts, in the order they apply (`coupon_id` first,
        then `extra_coupon_ids`). The neutral record keeps only the coupons, so each
        discount starts when a write applied it (`coupon_applied_at`) or at activation."""
        start = sub.get("coupon_applied_at") or sub["activated_at"]
        return [
            self._discount(coupon_id, start, sub["customer_id"], sub["subscription_id"])
            for coupon_id in applied_coupons(sub)
        ]

    def customer_discount(self, customer: dict) -> dict | None:
        """The customer's own coupon as a Discount (no subscription), from its creation."""
        if customer["coupon_id"] is None:
            return None
        return self._discount(
            customer["coupon_id"], customer["created_at"], customer["customer_id"], None
        )

    def _discount(
        self, coupon_id: str, start: datetime, customer_id: str, subscription_id: str | None
    ) -> dict:
        """One Discount: a coupon (deleted or not: a discount keeps it) applied from
        `start`, to a subscription or (`subscription_id` None) to the whole customer."""
        coupon = self.store.get("coupons", coupon_id)
        end = None
        if coupon["duration"] == "repeating":
            end = add_interval(start, "month", coupon["duration_in_months"])
        return {
            "id": discount_id(subscription_id or customer_id, coupon_id, start),
            "object": "discount",
            "checkout_session": None,
            "customer": customer_id,
            "customer_account": None,
            "end": ts(end),
            "invoice": None,
            "invoice_item": None,
            "promotion_code": None,
            "source": {"type": "coupon", "coupon": coupon_id},
            "start": ts(start),
            "subscription": subscription_id,
            "subscription_item": None,
        }

    def invoice(self, invoice: dict) -> dict:
        """An Invoice in Stripe's status words (a past-due invoice is `open` after a
        failed automatic collection attempt: `attempted`, `attempt_count` > 0), with one
        line per subscription item, as Stripe bills each item on its own line."""
        customer = self.store.get("customers", invoice["customer_id"])
        total = to_minor_units(invoice["total"], invoice["currency"])
        neutral = invoice["status"]
        status = INVOICE_STATUS[neutral]
        period_start, period_end = self._invoice_period(invoice)
        created = ts(invoice["created_at"])
        sub_id = invoice["subscription_id"]
        attempted = neutral in ("past_due", "paid", "uncollectible")
        lines = self.invoice_lines(invoice)
        return {
            **_INVOICE_CONSTANTS,
            "id": invoice["invoice_id"],
            "object": "invoice",
            "amount_due": total,
            "amount_overpaid": 0,
            "amount_paid": total if status == "paid" else 0,
            "amount_remaining": 0 if status in ("paid", "void") else total,
            "amount_shipping": 0,
            "attempt_count": 1 if attempted else 0,
            "attempted": attempted,
            "auto_advance": status in ("draft", "open"),
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": False,
                "liability": None,
                "provider": None,
                "status": None,
            },
            "billing_reason": "subscription_cycle" if sub_id else "manual",
            "collection_method": "charge_automatically",
            "created": created,
            "currency": invoice["currency"].lower(),
            "customer": invoice["customer_id"],
            "customer_email": customer["email"],
            "customer_name": customer["name"],
            "default_tax_rates": [],
            "discounts": [],
            "effective_at": None if status == "draft" else created,
            "issuer": {"type": "self"},
            "lines": {  # the first page; the rest from the list's url
                "object": "list",
                "data": lines[:EMBEDDED_LINES],
                "has_more": len(lines) > EMBEDDED_LINES,
                "url": f"/v1/invoices/{invoice['invoice_id']}/lines",
            },
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": created + _RETRY_AFTER[neutral]
            if neutral in _RETRY_AFTER
            else None,
            "parent": {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {"metadata": {}, "subscription": sub_id},
            }
            if sub_id
            else None,
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "period_end": period_end,
            "period_start": period_start,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "starting_balance": 0,
            "status": status,
            "status_transitions": {
                "finalized_at": None if status == "draft" else created,
                "marked_uncollectible_at": created if status == "uncollectible" else None,
                "paid_at": ts(invoice["paid_at"]),
                "voided_at": created if status == "void" else None,
            },
            "subtotal": total,
            "subtotal_excluding_tax": total,
            "total": total,
            "total_excluding_tax": total,
            "webhooks_delivered_at": None if status == "draft" else created,
        }

    def invoice_lines(self, invoice: dict) -> list[dict]:
        """One line per item of the invoice's subscription (one line for an invoice
        without one). The scenario knows only the invoice's total: it is shared among
        the lines by each item's list price for a period (metered usage bills nothing
        here), the first line taking what rounding leaves."""
        total = to_minor_units(invoice["total"], invoice["currency"])
        period_start, period_end = self._invoice_period(invoice)
        sub = self.store.get("subscriptions", invoice["subscription_id"] or "")
        entries = [(None, None, 1)] if sub is None else self.item_entries(sub)
        weights = [
            0 if plan is None else _list_amount(plan, quantity, invoice["currency"])
            for plan, _ident, quantity in entries
        ]
        whole = sum(weights)
        amounts = [total * w // whole if whole else 0 for w in weights]
        amounts[0] += total - sum(amounts)
        lines = []
        for n, ((plan, ident, quantity), amount) in enumerate(zip(entries, amounts, strict=True)):
            metered = plan is not None and plan["usage_type"] == "metered"
            shown = 0 if metered else quantity
            lines.append(
                {
                    "id": "il_" + invoice["invoice_id"] + (f"_{n}" if n else ""),
                    "object": "line_item",
                    "amount": amount,
                    "currency": invoice["currency"].lower(),
                    "description": None,
                    "discount_amounts": [],
                    "discountable": True,
                    "discounts": [],
                    "invoice": invoice["invoice_id"],
                    "livemode": False,
                    "metadata": {},
                    "parent": _line_parent(invoice["subscription_id"], ident),
                    "period": {"start": period_start, "end": period_end},
                    "pretax_credit_amounts": [],
                    "pricing": None if plan is None else self._line_pricing(plan, invoice),
                    "quantity": shown,
                    "quantity_decimal": str(shown),
                    "subscription": invoice["subscription_id"],
                    "subtotal": amount,
                    "taxes": [],
                }
            )
        return lines

    def item_entries(self, sub: dict) -> list[tuple[dict, str, int]]:
        """(plan, item id, quantity) of each item of the subscription, the plan's first."""
        entries = [(sub["plan_id"], item_id(sub["subscription_id"]), sub["quantity"])]
        entries += [
            (extra["plan_id"], extra_item_id(sub, extra), extra["quantity"])
            for extra in sub.get("items") or []
        ]
        return [(self.store.get("plans", plan_id), ident, n) for plan_id, ident, n in entries]

    def _line_pricing(self, plan: dict, invoice: dict) -> dict:
        """A line's `pricing`: the price and its unit amount in the invoice's currency."""
        sold = plan_in_currency(plan, invoice["currency"]) or plan
        unit = (
            None if sold["unit_amount"] is None else _minor(sold["unit_amount"], sold["currency"])
        )
        return {
            "type": "price_details",
            "price_details": {"price": plan["plan_id"], "product": plan["product_id"]},
            "unit_amount_decimal": None if unit is None else unit[1],
        }

    def _invoice_period(self, invoice: dict) -> tuple[int | None, int | None]:
        """The billing period the invoice was issued for: the subscription's period at the
        invoice's creation (an invoice without a subscription covers just its creation)."""
        created = invoice["created_at"]
        sub = self.store.get("subscriptions", invoice["subscription_id"] or "")
        if sub is None:
            return ts(created), ts(created)
        plan = self.store.get("plans", sub["plan_id"])
        start, end = current_period(sub, plan, max(created, sub["activated_at"]))
        return ts(start), ts(end)

    # -- expansion ------------------------------------------------------------------
    def expand(self, obj: dict, paths: list[str], now: datetime) -> dict:
        """`expand[]` paths applied to a rendered object (or list envelope): ids become
        objects, expand-only fields appear. Paths Stripe refuses get its 400: unknown or
        not expandable (`invoice.subscription` is gone since 2025-03-31), or deeper than
        four levels (a list's `data.` counts as one)."""
        for path in paths:
            segments = path.split(".")
            if len(segments) > MAX_EXPAND_DEPTH:
                raise too_deep(path)
            obj = self._expand_node(obj, segments, path, now, None, ())
        return obj

    def _expand_node(
        self,
        node: object,
        segments: list[str],
        path: str,
        now: datetime,
        owner: str | None,
        inside: tuple[str, ...],
    ):
        """`owner` is the nearest enclosing API object's type and `inside` the path from
        it, so references nested in plain hashes (`parent.subscription_details.…`) resolve."""
        if isinstance(node, list):
            return [
                self._expand_node(element, segments, path, now, owner, inside) for element in node
            ]
        if not segments or not isinstance(node, dict):
            return node
        if node.get("object") not in (None, "list"):
            owner, inside = node["object"], ()
        head, rest = segments[0], segments[1:]
        key = (owner or "", ".".join((*inside, head)))
        if head not in node:
            include = self._includable.get(key)
            if include is None or rest:
                raise cannot_expand(path)
            return {**node, head: include(node)}
        value, loader = node[head], self._expanders.get(key)
        if isinstance(value, str) or (isinstance(value, list) and value and loader):
            if loader is None:
                raise cannot_expand(path)
            value = self._load(loader, node, value, now)
        elif value is None:
            if loader is None and key not in self._always_null:
                raise cannot_expand(path)
            return node
        elif not rest and loader is None:
            raise cannot_expand(path)  # a plain nested object is not a reference
        expanded = dict(node)  # copy on write: rendered dicts may be cached and shared
        expanded[head] = self._expand_node(value, rest, path, now, owner, (*inside, head))
        return expanded

    def _load(self, loader, node: dict, value, now: datetime):
        if isinstance(value, list):
            return [
                loader(node, ident, now) if isinstance(ident, str) else ident for ident in value
            ]
        return loader(node, value, now)

    def _load_schedule(self, parent: dict, _ident: str, now: datetime) -> dict:
        return self.schedule(self.store.get("subscriptions", parent["id"]), now)

    def _load_customer(self, _parent: dict, ident: str, now: datetime) -> dict:
        return self.customer_or_stub(self.store.get("customers", ident), now)

    def _load_invoice(self, _parent: dict, ident: str, _now: datetime) -> dict:
        return self.invoice(self.store.get("invoices", ident))

    def _load_subscription(self, _parent: dict, ident: str, now: datetime) -> dict:
        return self.subscription(self.store.get("subscriptions", ident), now)

    def _load_product(self, _parent: dict, ident: str, _now: datetime) -> dict:
        return self.product(self.products[ident])

    def _load_coupon(self, _parent: dict, ident: str, _now: datetime) -> dict:
        return self.coupon(self.store.get("coupons", ident))

    def _load_discount(self, parent: dict, ident: str, _now: datetime) -> dict:
        """One of the subscription's discounts, for the subscription or one of its items."""
        owner = parent["id"] if parent["object"] == "subscription" else parent["subscription"]
        discounts = self.discounts(self.store.get("subscriptions", owner))
        return next(discount for discount in discounts if discount["id"] == ident)

    # -- history Stripe would have recorded before the sandbox started ----------------
    def history(self, as_of: datetime) -> Iterator[tuple[datetime, str, dict, dict | None]]:
        """Events for the scenario's facts in the 30 days before `as_of`, oldest first:
        (time, type, object as it looked then, previous attributes for updates)."""
        since = as_of - EVENT_RETENTION
        facts: list[tuple[datetime, int, str, str, dict]] = []

        def happened(at: datetime | None) -> bool:
            return at is not None and since <= at <= as_of

        for customer in self.store.all("customers"):
            if happened(customer["created_at"]):
                facts.append((customer["created_at"], 0, "customer.created", "", customer))
            if happened(customer["deleted_at"]):  # after its subscriptions ended (rank 5)
                facts.append((customer["deleted_at"], 5, "customer.deleted", "", customer))
        for coupon in self.store.all("coupons"):
            if happened(coupon["deleted_at"]):
                facts.append((coupon["deleted_at"], 5, "coupon.deleted", "", coupon))
        for plan in self.store.all("plans"):
            if happened(plan["archived_at"]):
                facts.append((plan["archived_at"], 0, "price.updated", "", plan))
        for sub in self.store.all("subscriptions"):
            facts.extend(
                (at, rank, kind, sub["subscription_id"], sub)
                for at, rank, kind in _subscription_facts(sub)
                if happened(at)
            )
        for invoice in self.store.all("invoices"):
            if happened(invoice["paid_at"]):
                facts.append((invoice["paid_at"], 3, "invoice.paid", "", invoice))
        facts.sort(key=lambda f: (f[0], f[1], f[3]))
        for at, _rank, kind, _ident, record in facts:
            obj, previous = self._historic_object(kind, record, at)
            if previous != {}:  # an update that changed nothing visible is no event
                yield at, kind, obj, previous

    def _historic_object(self, kind: str, record: dict, at: datetime) -> tuple[dict, dict | None]:
        """The event's object: a deleted customer or coupon as it was when deleted (as
        Stripe's `*.deleted` events carry it), an archived price with its old `active`."""
        if kind in ("customer.created", "customer.deleted"):
            return self.customer(record, at), None
        if kind == "coupon.deleted":
            return self.coupon(record), None
        if kind == "price.updated":
            return self.price(record), {"active": True}
        if kind == "invoice.paid":
            return self.invoice(record), None
        after = self.subscription(known_at(record, at), at)
        if kind != "customer.subscription.updated":
            return after, None
        before_at = at - _JUST_BEFORE
        before = self.subscription(known_at(record, before_at), before_at)
        return after, changed_attributes(before, after)


def _phase(
    items: list[tuple[str, int | None]], currency: str, start: datetime, end: datetime
) -> dict:
    """One phase of a schedule: its prices and quantities (none for a metered price)."""
    return {
        "add_invoice_items": [],
        "application_fee_percent": None,
        "billing_cycle_anchor": None,
        "billing_thresholds": None,
        "collection_method": None,
        "currency": currency,
        "default_payment_method": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "end_date": ts(end),
        "invoice_settings": None,
        "items": [
            {
                "billing_thresholds": None,
                "discounts": [],
                "metadata": {},
                "plan": price_id,
                "price": price_id,
                "quantity": quantity,
                "tax_rates": [],
            }
            for price_id, quantity in items
        ],
        "metadata": {},
        "on_behalf_of": None,
        "proration_behavior": "create_prorations",
        "start_date": ts(start),
        "transfer_data": None,
        "trial_end": None,
    }


def applied_coupons(sub: dict) -> list[str]:
    """The subscription's coupons in the order they apply."""
    if sub["coupon_id"] is None:
        return []
    return [sub["coupon_id"], *(sub["extra_coupon_ids"] or [])]


def _package(plan: dict) -> dict | None:
    """`transform_quantity` of a package price: the quantity divided by the package size,
    whole packages billed (`round: up`)."""
    if plan["pricing_model"] != "package":
        return None
    return {"divide_by": plan["package_size"], "round": "up"}


def _list_amount(plan: dict, quantity: int | None, currency: str) -> int:
    """What an item bills for a period at list price, in minor units of `currency`: a
    weight to share an invoice's total among its lines (metered usage counts nothing)."""
    sold = plan_in_currency(plan, currency)
    if sold is None or plan["usage_type"] == "metered" or not quantity:
        return 0
    if sold["tiers"]:
        tier = next(t for t in sold["tiers"] if t["up_to"] is None or quantity <= t["up_to"])
        amount = tier["unit_amount"] * quantity + tier["flat_amount"]
    elif sold["pricing_model"] == "package":
        amount = sold["unit_amount"] * -(-quantity // sold["package_size"])
    else:
        amount = sold["unit_amount"] * quantity
    return to_minor_units(amount, currency)


def _line_parent(subscription_id: str | None, subscription_item: str | None) -> dict | None:
    """A subscription invoice's line comes from one of the subscription's items."""
    if subscription_id is None:
        return None
    return {
        "type": "subscription_item_details",
        "invoice_item_details": None,
        "subscription_item_details": {
            "invoice_item": None,
            "proration": False,
            "proration_details": None,
            "subscription": subscription_id,
            "subscription_item": subscription_item,
        },
    }


def _subscription_facts(sub: dict) -> list[tuple[datetime | None, int, str]]:
    """(time, rank within the same instant, event type) of a subscription's own facts."""
    ended_at = sub["ended_at"]
    changes = [sub["trial_end"], sub["paused_at"], sub["resumes_at"], sub["canceled_at"]]
    facts = [
        (at, 2, "customer.subscription.updated")
        for at in changes
        if at is not None and (ended_at is None or at < ended_at)  # an immediate cancel is
    ]  # only the deletion; nothing changes after the end
    facts.append((sub["created_at"], 1, "customer.subscription.created"))
    facts.append((ended_at, 4, "customer.subscription.deleted"))
    return facts


def known_at(sub: dict, at: datetime) -> dict:
    """The subscription as Stripe knew it at `at`: requests made later (a cancel, a pause)
    are not yet part of it."""
    view = dict(sub)
    if sub["canceled_at"] is not None and sub["canceled_at"] > at:
        view["canceled_at"] = view["ended_at"] = None
    if sub["paused_at"] is not None and sub["paused_at"] > at:
        view["paused_at"] = view["resumes_at"] = None
    return view


def changed_attributes(before: dict, after: dict) -> dict:
    """Stripe's `previous_attributes`: the old values of the top-level fields that changed."""
    return {key: value for key, value in before.items() if after.get(key) != value}
