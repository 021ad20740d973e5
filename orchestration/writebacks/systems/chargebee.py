"""Chargebee write-backs through the official SDK (API v2, Product Catalog 2.0).

- cancel: `cancel_for_items` with `cancel_option` `end_of_term` or `immediately`;
- pause: `pause` with `pause_option=immediately` and `resume_date`;
- discount: `update_for_items` with `coupon_ids[0]` (added beside any coupon already on it);
- extension: `change_term_end` to the new end with `prorate=false`, so the extra time is
  free rather than charged pro rata;
- plan change: `update_for_items` with the target plan item price as
  `subscription_items[0]`, at the plan item's current quantity. A subscription holds one
  plan item, so Chargebee swaps it; `replace_items_list` is left off because it would also
  drop the subscription's addons.

Every write carries the action's key in `chargebee-idempotency-key`; Chargebee replays the
first answer for a repeated key, and the runner reads the subscription first, so a retry
never applies a change twice. Chargebee documents no request id in its responses and the
SDK exposes none, so `send` returns None.
"""

from __future__ import annotations

from typing import Any

from chargebee import APIError, Chargebee
from chargebee.retry_config import RetryConfig

from dlt_sources.chargebee.helpers import CLASSIFIER
from dlt_sources.clients import chargebee_client
from orchestration.writebacks.systems.base import Action, BillingWriter, WriteRequest, from_unix

IDEMPOTENCY_HEADER = "chargebee-idempotency-key"
QUANTITY_PLACEHOLDER = "<the subscription's plan quantity>"
ENDED = "cancelled"
PAUSED = "paused"
SCHEDULED_TO_CANCEL = "non_renewing"
CANCEL_OPTION = {"period_end": "end_of_term", "immediately": "immediately"}


def _plan_item(subscription: dict[str, Any]) -> dict[str, Any]:
    """The subscription's one plan item (addons and charges are items too in PC 2.0)."""
    items = subscription.get("subscription_items") or []
    return next((i for i in items if i.get("item_type") == "plan"), items[0] if items else {})


class ChargebeeWriter(BillingWriter):
    system = "chargebee"
    classifier = CLASSIFIER

    def __init__(self, api_key: str, base_url: str | None = None, site: str | None = None):
        if not base_url and not site:
            raise ValueError("chargebee: give the `site` (<site>.chargebee.com) or a `base_url`")
        self.client: Chargebee = chargebee_client(api_key, site=site or "local", base_url=base_url)
        # Retries are the runner's. The SDK's default config is a class attribute shared by
        # every client in the process, so this client gets its own, switched off.
        self.client.update_retry_config(RetryConfig(enabled=False))

    def read(self, subscription_id: str) -> dict[str, Any]:
        return self.client.Subscription.retrieve(subscription_id).subscription.raw_data

    def request(self, action: Action, current: dict[str, Any] | None) -> WriteRequest:
        p = action.parameters
        match action.action_type:
            case "cancel":
                operation = "cancel_for_items"
                params: dict[str, Any] = {"cancel_option": CANCEL_OPTION[p["when"]]}
            case "pause":
                operation = "pause"
                params = {
                    "pause_option": "immediately",
                    "resume_date": action.unix("resumes_at"),
                }
            case "discount":
                operation, params = "update_for_items", {"coupon_ids": [p["coupon"]]}
            case "extension":
                operation = "change_term_end"
                params = {"term_ends_at": action.unix("until"), "prorate": False}
            case "plan_change":
                item: dict[str, Any] = {"item_price_id": p["plan"]}
                if current is None:
                    item["quantity"] = QUANTITY_PLACEHOLDER
                elif quantity := _plan_item(current).get("quantity"):
                    item["quantity"] = quantity
                operation, params = "update_for_items", {"subscription_items": [item]}
            case _:
                raise ValueError(f"unknown action type {action.action_type!r}")
        path = f"/api/v2/subscriptions/{action.subscription_id}/{operation}"
        return WriteRequest(operation, "POST", path, params)

    def ended(self, current: dict[str, Any]) -> str | None:
        status = current.get("status")
        return status if status == ENDED else None

    def holds(self, action: Action, current: dict[str, Any]) -> str | None:
        status = current.get("status")
        p = action.parameters
        match action.action_type:
            case "cancel":
                if p["when"] != "immediately" and status == SCHEDULED_TO_CANCEL:
                    return f"already set to cancel at {from_unix(current.get('cancelled_at'))}"
            case "pause":
                # `pause_date`/`resume_date` are set while paused and while a pause is scheduled.
                if current.get("pause_date") and current.get("resume_date") == action.unix(
                    "resumes_at"
                ):
                    state = "paused" if status == PAUSED else "pause scheduled"
                    return f"already {state} until {from_unix(current['resume_date'])}"
            case "discount":
                applied = [c.get("coupon_id") for c in current.get("coupons") or []]
                if p["coupon"] in applied:
                    return f"coupon {p['coupon']} already applied"
            case "extension":
                ends = max(current.get("current_term_end") or 0, current.get("trial_end") or 0)
                if ends >= action.unix("until"):
                    return f"already runs to {from_unix(ends)}"
            case "plan_change":
                price = _plan_item(current).get("item_price_id")
                if price == p["plan"]:
                    return f"already on {price}"
        return None

    def send(self, request: WriteRequest, idempotency_key: str) -> str | None:
        subscription_id = request.path.rsplit("/", 2)[1]
        call = getattr(self.client.Subscription, request.operation)
        # A fresh dict each time: the SDK adds its own headers to the one it is given.
        call(subscription_id, request.params, {IDEMPOTENCY_HEADER: idempotency_key})
        return None

    def error_message(self, exc: BaseException) -> str:
        if isinstance(exc, APIError):
            return f"Chargebee {exc.http_status_code}: {exc.json_obj.get('message') or exc}"
        return f"{type(exc).__name__}: {exc}"
