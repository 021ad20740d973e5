"""Stripe write-backs through the official SDK (`StripeClient.v1.subscriptions`).

- cancel: at period end `cancel_at_period_end=true`; immediately `DELETE` with the
  configured `prorate` / `invoice_now`. Stripe refuses to change the cancel of a
  subscription a SubscriptionSchedule manages (a scheduled change): the schedule is
  released first (`POST /v1/subscription_schedules/{id}/release`; the pending change is
  dropped, the subscription goes on as it is), then the cancel is set;
- pause: `pause_collection[behavior]=void` with `resumes_at`;
- discount: the coupon added after the discounts the subscription has (`discounts[]`
  replaces the whole list, so the ones in place are passed back by id, `discounts[n]
  [discount]`); a subscription without any keeps its customer's discount the same way
  (Stripe lets a subscription reuse its customer's discount; once a subscription has one
  of its own, the customer's no longer applies to it). The coupon counts as already
  applied when any of those discounts is of it;
- extension: by default `pause_collection[behavior]=mark_uncollectible` with `resumes_at`
  at the new end, as the cancel-page product we replace does: service goes on, the status
  stays `active`, and the invoices Stripe issues until then are marked uncollectible (so
  the free time is the billing periods invoiced before the new end). With the offer's
  `method: trial_end` (catalog), `trial_end` at the new end with `proration_behavior=none`
  instead: the subscription turns `trialing` until then, and BI reads that status;
- plan change: the subscription's plan item moved to the target price. A subscription may
  hold several prices (each an item; Stripe has no add-on notion): the plan item is the
  licensed one that bills most at its quantity (the rule staging applies), read with its
  price's tiers expanded; a metered item is never the plan. A schedule that manages the
  subscription is released first, as for a cancel: its next phase would otherwise put the
  scheduled price back at the period's end, undoing the offer.

Every write carries the action's `Idempotency-Key`. Stripe honours it on POST only: a
repeated key replays the first answer (for 24 hours) without applying again. The cancel
`DELETE` ignores it, and a second one on the canceled subscription answers 404 `No such
subscription`; the runner reads the subscription first, so the canceled status is seen
and the cancel is not sent again.

Reads follow the API version the SDK pins (2026-10-28.endive): the subscription has no
`discount` nor top-level `current_period_end` any more, so coupons are checked on
`discounts` (expanded on read) and the period end on the subscription's items (the
latest, as staging takes it).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import stripe

from billing_clients.sdk import stripe_client
from billing_clients.stripe import CLASSIFIER
from writebacks.systems.base import Action, BillingWriter, WriteRequest, from_unix

ITEM_PLACEHOLDER = "<the subscription's item id>"
RELEASE_THEN_UPDATE = "release_schedule_then_update"
_RELEASE_FIRST = ("cancel", "plan_change")  # changes a subscription schedule would refuse or undo
FREE_BEHAVIOR = "mark_uncollectible"  # collection paused, service goes on


def _discounts(current: dict[str, Any]) -> list[dict[str, Any]]:
    """The discounts that apply to the subscription, as `read` returns them (expanded:
    each Discount names its coupon by id in `source.coupon`): its own, in order, else its
    customer's (a customer-level discount applies to subscriptions without one)."""
    own = [d for d in current.get("discounts") or [] if isinstance(d, dict)]
    customer = current.get("customer")
    if own or not isinstance(customer, dict) or not customer.get("discount"):
        return own
    return [customer["discount"]]


def _coupons(current: dict[str, Any]) -> set[str]:
    return {d["source"]["coupon"] for d in _discounts(current)}


def _runs_free_to(current: dict[str, Any], until: int) -> str | None:
    """Why the subscription already runs to `until` without charging more, by either
    extension method: a trial or a paid period ending then or later, or collection paused
    with `mark_uncollectible` until then (or with no resume date)."""
    periods = [item.get("current_period_end") or 0 for item in current["items"]["data"]]
    ends = max([current.get("trial_end") or 0, *periods])
    if ends >= until:
        return f"already runs to {from_unix(ends)}"
    pause = current.get("pause_collection") or {}
    if pause.get("behavior") == FREE_BEHAVIOR:
        resumes = pause.get("resumes_at")
        if resumes is None:
            return "collection already paused (mark_uncollectible) with no resume date"
        if resumes >= until:
            return f"collection already paused (mark_uncollectible) until {from_unix(resumes)}"
    return None


def _bills(price: dict[str, Any], quantity: int) -> Decimal:
    """What a licensed item bills per period at `quantity`, in minor units: per unit
    (packages of `transform_quantity.divide_by`, rounded as it says), or by its `tiers`
    (graduated: each tier's units at its price; volume: all units at the reached tier's)."""
    if price.get("billing_scheme") != "tiered":
        unit = Decimal(str(price.get("unit_amount_decimal") or 0))
        transform = price.get("transform_quantity")
        if transform:
            whole, rest = divmod(quantity, transform["divide_by"])
            quantity = whole + (1 if rest and transform["round"] == "up" else 0)
        return unit * quantity
    total, below = Decimal(0), 0
    for tier in price.get("tiers") or []:
        up_to = tier["up_to"]
        unit = Decimal(str(tier.get("unit_amount_decimal") or 0))
        flat = Decimal(str(tier.get("flat_amount_decimal") or 0))
        if price.get("tiers_mode") == "volume":
            if up_to is None or quantity <= up_to:
                return unit * quantity + flat
        elif quantity > below:
            total += unit * (min(quantity, up_to or quantity) - below) + flat
        below = up_to or below
    return total


def _plan_item(current: dict[str, Any]) -> dict[str, Any]:
    """The plan item: the licensed item that bills most (the first listed of equals)."""
    licensed = [
        item
        for item in current["items"]["data"]
        if (item["price"].get("recurring") or {}).get("usage_type") != "metered"
    ]
    return max(licensed, key=lambda item: _bills(item["price"], item.get("quantity") or 0))


class StripeWriter(BillingWriter):
    system = "stripe"
    classifier = CLASSIFIER

    def __init__(self, api_key: str, base_url: str | None = None):
        # Retries are the runner's (429 included, which the SDK never retries itself).
        self.client = stripe_client(api_key, base_url, retries=0)

    def read(self, subscription_id: str) -> dict[str, Any]:
        # `discounts` are ids unless expanded: the coupon is only on the Discount object.
        # A tiered price's `tiers` too: the plan item is the one that bills most. The
        # customer, for its own discount.
        params = {"expand": ["discounts", "items.data.price.tiers", "customer"]}
        self.pacing.wait()
        return self.client.v1.subscriptions.retrieve(subscription_id, params=params).to_dict()

    def request(self, action: Action, current: dict[str, Any] | None) -> WriteRequest:
        path = f"/v1/subscriptions/{action.subscription_id}"
        p = action.parameters
        if action.action_type == "cancel" and p["when"] == "immediately":
            params = {"prorate": p["prorate"], "invoice_now": p["invoice_now"]}
            return WriteRequest("cancel", "DELETE", path, params)
        params = self._update_params(action, current)
        if action.action_type in _RELEASE_FIRST and current and current.get("schedule"):
            return WriteRequest(RELEASE_THEN_UPDATE, "POST", path, params)
        return WriteRequest("update", "POST", path, params)

    def _update_params(self, action: Action, current: dict[str, Any] | None) -> dict[str, Any]:
        p = action.parameters
        match action.action_type:
            case "cancel":
                return {"cancel_at_period_end": True}
            case "pause":
                return {
                    "pause_collection": {
                        "behavior": "void",
                        "resumes_at": action.unix("resumes_at"),
                    }
                }
            case "discount":
                kept = [{"discount": d["id"]} for d in _discounts(current or {})]
                return {"discounts": [*kept, {"coupon": p["coupon"]}]}
            case "extension" if p.get("method") == "trial_end":
                return {"trial_end": action.unix("until"), "proration_behavior": "none"}
            case "extension":
                return {
                    "pause_collection": {
                        "behavior": FREE_BEHAVIOR,
                        "resumes_at": action.unix("until"),
                    }
                }
            case "plan_change":
                item = _plan_item(current)["id"] if current else ITEM_PLACEHOLDER
                return {
                    "items": [{"id": item, "price": p["plan"]}],
                    "proration_behavior": "create_prorations",
                }
        raise ValueError(f"unknown action type {action.action_type!r}")

    def ended(self, current: dict[str, Any]) -> str | None:
        status = current.get("status")
        return status if status in ("canceled", "incomplete_expired") else None

    def holds(self, action: Action, current: dict[str, Any]) -> str | None:
        p = action.parameters
        match action.action_type:
            case "cancel":
                cancel_at = current.get("cancel_at")
                if p["when"] != "immediately" and (
                    current.get("cancel_at_period_end") or cancel_at
                ):
                    at = from_unix(cancel_at) if cancel_at else "period end"
                    return f"already set to cancel at {at}"
            case "pause":
                pause = current.get("pause_collection") or {}
                if pause.get("resumes_at") == action.unix("resumes_at"):
                    return f"already paused until {from_unix(pause['resumes_at'])}"
            case "discount":
                if p["coupon"] in _coupons(current):
                    return f"coupon {p['coupon']} already applied"
            case "extension":
                return _runs_free_to(current, action.unix("until"))
            case "plan_change":
                price = _plan_item(current)["price"]["id"]
                if price == p["plan"]:
                    return f"already on {price}"
        return None

    def send(self, request: WriteRequest, idempotency_key: str) -> str | None:
        subscriptions = self.client.v1.subscriptions
        subscription_id = request.path.rsplit("/", 1)[1]
        options = {"idempotency_key": idempotency_key}
        if request.operation == RELEASE_THEN_UPDATE:
            self._release_schedule(subscription_id, idempotency_key)
        call = subscriptions.cancel if request.operation == "cancel" else subscriptions.update
        self.pacing.wait()
        result = call(subscription_id, params=request.params, options=options)
        return result.last_response.request_id if result.last_response else None

    def _release_schedule(self, subscription_id: str, idempotency_key: str) -> None:
        """Release the schedule that manages the subscription, if one still does (a retry
        after the release finds none)."""
        self.pacing.wait()
        schedule = self.client.v1.subscriptions.retrieve(subscription_id).schedule
        if schedule:
            options = {"idempotency_key": f"{idempotency_key}:release"}
            self.pacing.wait()
            self.client.v1.subscription_schedules.release(schedule, options=options)

    def error_message(self, exc: BaseException) -> str:
        if isinstance(exc, stripe.StripeError):
            return f"Stripe {exc.http_status}: {exc.user_message or exc}"
        return f"{type(exc).__name__}: {exc}"
