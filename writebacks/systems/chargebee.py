"""Chargebee write-backs through the official SDK (API v2), on Product Catalog 2.0 or 1.0.

- cancel: 2.0 `cancel_for_items` with `cancel_option` `end_of_term` or `immediately`; 1.0
  `cancel` with `end_of_term` true or false;
- pause: `pause` with `pause_option=immediately` and `resume_date` (the site's Pause
  feature must be on, and Chargebee pauses only active and non-renewing subscriptions);
- discount: 2.0 `update_for_items`, 1.0 `update` (`POST /subscriptions/{id}`), with
  `coupon_ids[0]` (added beside any coupon already on it);
- extension: `change_term_end` to the new end with `prorate=false`, so the extra time is
  free rather than charged pro rata;
- plan change: 2.0 `update_for_items` with the target plan item price as
  `subscription_items[0]`, at the plan item's current quantity (a subscription holds one
  plan item, so Chargebee swaps it; `replace_items_list` is left off because it would also
  drop the subscription's addons); 1.0 `update` with `plan_id` and `plan_quantity`.

The catalog is the `product_catalog` setting ("v1"/"v2"), else the shape of the subscription
read before every write (a dry run, which reads nothing, shows 2.0 calls then). Every
write carries the action's key in `chargebee-idempotency-key`; Chargebee replays the first
answer for a repeated key, and the runner reads the subscription first, so a retry never
applies a change twice. Chargebee documents no request id in its responses and the SDK
exposes none, so `send` returns None.
"""

from __future__ import annotations

import os
from typing import Any

from chargebee import APIError, Chargebee
from chargebee.retry_config import RetryConfig

from billing_clients.chargebee import CATALOG_SETTINGS, CLASSIFIER
from billing_clients.sdk import chargebee_client
from writebacks.systems.base import Action, BillingWriter, WriteRequest, from_unix

IDEMPOTENCY_HEADER = "chargebee-idempotency-key"
QUANTITY_PLACEHOLDER = "<the subscription's plan quantity>"
ENDED = "cancelled"
PAUSED = "paused"
SCHEDULED_TO_CANCEL = "non_renewing"
CANCEL_OPTION = {"period_end": "end_of_term", "immediately": "immediately"}
SUBSCRIPTIONS_PATH = "/api/v2/subscriptions/"
CATALOG_SETTING_ENV = "SOURCES__CHARGEBEE__PRODUCT_CATALOG"


def _plan_item(subscription: dict[str, Any]) -> dict[str, Any]:
    """The subscription's plan as `{item_price_id, quantity}`: on 2.0 its `plan` item (add-ons
    and charges are items too, in no documented order), on 1.0 `plan_id`/`plan_quantity`."""
    if "plan_id" in subscription:
        return {
            "item_price_id": subscription["plan_id"],
            "quantity": subscription.get("plan_quantity"),
        }
    items = subscription.get("subscription_items") or []
    return next((i for i in items if i.get("item_type") == "plan"), {})


def _write(action: Action, operation: str, params: dict[str, Any]) -> WriteRequest:
    """One POST on the subscription; the 1.0 `update` is `POST /subscriptions/{id}`."""
    path = SUBSCRIPTIONS_PATH + action.subscription_id
    if operation != "update":
        path += f"/{operation}"
    return WriteRequest(operation, "POST", path, params)


class ChargebeeWriter(BillingWriter):
    system = "chargebee"
    classifier = CLASSIFIER

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        site: str | None = None,
        product_catalog: str | None = None,
    ):
        """`product_catalog`: v1, v2 or auto; None = the source's setting
        (`SOURCES__CHARGEBEE__PRODUCT_CATALOG`, default auto): one site, one setting."""
        if not base_url and not site:
            raise ValueError("chargebee: give the `site` (<site>.chargebee.com) or a `base_url`")
        product_catalog = product_catalog or os.environ.get(CATALOG_SETTING_ENV, "auto")
        if product_catalog not in CATALOG_SETTINGS:
            raise ValueError(f"chargebee: product_catalog must be one of {CATALOG_SETTINGS}")
        self.client: Chargebee = chargebee_client(api_key, site=site or "local", base_url=base_url)
        # Retries are the runner's. The SDK's default config is a class attribute shared by
        # every client in the process, so this client gets its own, switched off.
        self.client.update_retry_config(RetryConfig(enabled=False))
        self._catalog = None if product_catalog == "auto" else product_catalog

    def catalog(self, current: dict[str, Any] | None = None) -> str:
        """The site's Product Catalog ("v1" or "v2"): the setting; else the shape of a
        subscription read (only 1.0 subscriptions have `plan_id`), which needs no request
        of its own. A dry run sends no request at all, so without either it shows the 2.0
        calls (every site created since May 2021); set `product_catalog` on a 1.0 site."""
        if self._catalog is None and current is not None:
            self._catalog = "v1" if "plan_id" in current else "v2"
        return self._catalog or "v2"

    def read(self, subscription_id: str) -> dict[str, Any]:
        self.pacing.wait()
        return self.client.Subscription.retrieve(subscription_id).subscription.raw_data

    def request(self, action: Action, current: dict[str, Any] | None) -> WriteRequest:
        if self.catalog(current) == "v1":
            return self._request_v1(action, current)
        p = action.parameters
        match action.action_type:
            case "cancel":
                operation = "cancel_for_items"
                params: dict[str, Any] = {"cancel_option": CANCEL_OPTION[p["when"]]}
            case "pause" | "extension":
                return self._request_shared(action)
            case "discount":
                operation, params = "update_for_items", {"coupon_ids": [p["coupon"]]}
            case "plan_change":
                item: dict[str, Any] = {"item_price_id": p["plan"]}
                if current is None:
                    item["quantity"] = QUANTITY_PLACEHOLDER
                elif quantity := _plan_item(current).get("quantity"):
                    item["quantity"] = quantity
                operation, params = "update_for_items", {"subscription_items": [item]}
            case _:
                raise ValueError(f"unknown action type {action.action_type!r}")
        return _write(action, operation, params)

    @staticmethod
    def _request_shared(action: Action) -> WriteRequest:
        """Pause and extension: the same call on both catalogs."""
        if action.action_type == "pause":
            params = {"pause_option": "immediately", "resume_date": action.unix("resumes_at")}
            return _write(action, "pause", params)
        params = {"term_ends_at": action.unix("until"), "prorate": False}
        return _write(action, "change_term_end", params)

    def _request_v1(self, action: Action, current: dict[str, Any] | None) -> WriteRequest:
        """Product Catalog 1.0: `cancel` and the subscription `update`."""
        p = action.parameters
        match action.action_type:
            case "cancel":
                end_of_term = CANCEL_OPTION[p["when"]] == "end_of_term"
                return _write(action, "cancel", {"end_of_term": end_of_term})
            case "pause" | "extension":
                return self._request_shared(action)
            case "discount":
                return _write(action, "update", {"coupon_ids": [p["coupon"]]})
            case "plan_change":
                params: dict[str, Any] = {"plan_id": p["plan"]}
                if current is None:
                    params["plan_quantity"] = QUANTITY_PLACEHOLDER
                elif quantity := _plan_item(current).get("quantity"):
                    params["plan_quantity"] = quantity
                return _write(action, "update", params)
            case _:
                raise ValueError(f"unknown action type {action.action_type!r}")

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
        subscription_id = request.path.removeprefix(SUBSCRIPTIONS_PATH).split("/")[0]
        call = getattr(self.client.Subscription, request.operation)
        self.pacing.wait()
        # A fresh dict each time: the SDK adds its own headers to the one it is given.
        call(subscription_id, request.params, {IDEMPOTENCY_HEADER: idempotency_key})
        return None

    def error_message(self, exc: BaseException) -> str:
        if isinstance(exc, APIError):
            return f"Chargebee {exc.http_status_code}: {exc.json_obj.get('message') or exc}"
        return f"{type(exc).__name__}: {exc}"
