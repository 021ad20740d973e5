"""Recurly v2021-02-25 write-backs through the official SDK (`recurly.Client`).

- cancel: at period end `PUT /subscriptions/{id}/cancel` (`timeframe=term_end`: the
  subscription stays live to the end of its term); immediately `DELETE
  /subscriptions/{id}` (Recurly's "terminate", expiring it now) with the configured
  `refund`;
- pause: `PUT /subscriptions/{id}/pause` with `remaining_pause_cycles`: Recurly pauses
  in whole billing cycles from the next renewal, not until a date;
- discount: a coupon redemption on the subscription's account, tied to the subscription
  (`POST /accounts/{account_id}/coupon_redemptions/active`); an account-level coupon
  (Recurly's default) discounts every charge of the account, and counts as applied when
  it is active on the account, a subscription-level one when it is on the subscription;
- extension: `PUT /subscriptions/{id}` with `next_bill_date` at the new end (the term
  stretches to it, which is free time);
- plan change: `POST /subscriptions/{id}/change` with the target `plan_code`.

Plans and coupons are named by their codes here (the warehouse's `plan_id`/`coupon_id`
are Recurly codes), so a coupon goes out as `code-<code>`. Every write carries the
action's `Idempotency-Key`; Recurly replays the first answer for a repeated key, and the
runner reads the subscription first, so a retry never applies a change twice.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

import recurly

from dlt_sources.clients import recurly_client
from dlt_sources.recurly.helpers import CLASSIFIER, reset_on_network_error
from orchestration.writebacks.systems.base import Action, BillingWriter, WriteRequest

ACCOUNT_PLACEHOLDER = "<the subscription's account id>"
# Added by `read` beside the API's fields: codes of the account-level coupons active on
# the subscription's account.
ACCOUNT_COUPONS = "account_level_coupon_codes"
CURRENCY_PLACEHOLDER = "<the subscription's currency>"
_ENDED = ("expired", "failed")
# How each SDK method takes its parameters: positional body unless listed here.
_PARAMS_AS = {"terminate_subscription": "params", "cancel_subscription": "body"}


def _time(value: str | None) -> datetime | None:
    """Recurly's `...Z` timestamps (Python 3.11 parses the `Z`)."""
    return datetime.fromisoformat(value) if value else None


def _stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


class RecurlyWriter(BillingWriter):
    system = "recurly"
    classifier = CLASSIFIER

    def __init__(self, api_key: str, base_url: str | None = None):
        # The SDK never retries; the runner does, with CLASSIFIER. One persistent
        # connection: a writer is not shared between threads.
        self.client = recurly_client(api_key, base_url)

    def read(self, subscription_id: str) -> dict[str, Any]:
        """The subscription as sent, plus the codes of the account-level coupons active on
        its account (`ACCOUNT_COUPONS`, not an API field): Recurly redeems coupons at
        account level by default, and `coupon_redemptions` lists only the
        subscription-level ones, so a discount already applied to the account would
        otherwise be applied again."""
        # The SDK's object model sets fields its schema lacks to None and parses times;
        # the response keeps the JSON as sent (recurly 4.x stores it parsed, for 3.x
        # compatibility), which is the plain dict the ledger and the checks want.
        with reset_on_network_error(self.client):
            body = self.client.get_subscription(subscription_id).get_response().body
            sub = body if isinstance(body, dict) else json.loads(body)
            active = self.client.list_active_coupon_redemptions(sub["account"]["id"]).items()
            sub[ACCOUNT_COUPONS] = sorted(
                {r.coupon.code for r in active if r.subscription_id is None}
            )
        return sub

    def request(self, action: Action, current: dict[str, Any] | None) -> WriteRequest:
        sub = quote(action.subscription_id, safe="")  # on the wire as the SDK quotes it
        path = f"/subscriptions/{sub}"
        p = action.parameters
        match action.action_type:
            case "cancel" if p["when"] == "immediately":
                return WriteRequest(
                    "terminate_subscription", "DELETE", path, {"refund": p.get("refund", "none")}
                )
            case "cancel":
                return WriteRequest(
                    "cancel_subscription", "PUT", f"{path}/cancel", {"timeframe": "term_end"}
                )
            case "pause":
                return WriteRequest(
                    "pause_subscription",
                    "PUT",
                    f"{path}/pause",
                    {"remaining_pause_cycles": p["cycles"]},
                )
            case "discount":
                account = (
                    quote(current["account"]["id"], safe="") if current else ACCOUNT_PLACEHOLDER
                )
                params = {
                    "coupon_id": f"code-{p['coupon']}",
                    "subscription_id": action.subscription_id,
                    "currency": current["currency"] if current else CURRENCY_PLACEHOLDER,
                }
                return WriteRequest(
                    "create_coupon_redemption",
                    "POST",
                    f"/accounts/{account}/coupon_redemptions/active",
                    params,
                )
            case "extension":
                params = {"next_bill_date": _stamp(action.when("until"))}
                return WriteRequest("update_subscription", "PUT", path, params)
            case "plan_change":
                params = {"plan_code": p["plan"], "timeframe": p.get("timeframe", "now")}
                return WriteRequest("create_subscription_change", "POST", f"{path}/change", params)
        raise ValueError(f"unknown action type {action.action_type!r}")

    def ended(self, current: dict[str, Any]) -> str | None:
        state = current.get("state")
        return state if state in _ENDED else None

    def holds(self, action: Action, current: dict[str, Any]) -> str | None:
        state = current.get("state")
        p = action.parameters
        match action.action_type:
            case "cancel":
                if p["when"] != "immediately" and state == "canceled":
                    return f"already set to cancel at {current.get('expires_at')}"
            case "pause":
                # Recurly counts a pause in billing cycles from the next renewal, so its
                # resume date rarely equals the requested one: a pause (scheduled or under
                # way) that lasts to the requested date already gives what was offered.
                resumes = _time(current.get("resume_at"))
                if current.get("paused_at") and resumes and resumes >= action.when("resumes_at"):
                    return f"already paused until {current['resume_at']}"
            case "discount":
                codes = {
                    r["coupon"]["code"]
                    for r in current.get("coupon_redemptions") or []
                    if r.get("state", "active") == "active"
                }
                if p["coupon"] in codes:
                    return f"coupon {p['coupon']} already applied"
                if p["coupon"] in current.get(ACCOUNT_COUPONS, ()):
                    return f"coupon {p['coupon']} already applied to the account"
            case "extension":
                ends = _time(current.get("current_term_ends_at"))
                if ends and ends >= action.when("until"):
                    return f"already runs to {current['current_term_ends_at']}"
            case "plan_change":
                plan = (current.get("plan") or {}).get("code")
                if plan == p["plan"]:
                    return f"already on {plan}"
        return None

    def send(self, request: WriteRequest, idempotency_key: str) -> str | None:
        # /subscriptions/{id}/... or /accounts/{id}/...: the SDK quotes the id again.
        target = unquote(request.path.split("/")[2])
        call = getattr(self.client, request.operation)
        headers = {"Idempotency-Key": idempotency_key}
        passed_as = _PARAMS_AS.get(request.operation)
        with reset_on_network_error(self.client):
            if passed_as:
                result = call(target, headers=headers, **{passed_as: request.params})
            else:
                result = call(target, request.params, headers=headers)
        return result.get_response().request_id

    def error_message(self, exc: BaseException) -> str:
        error = getattr(exc, "error", None)
        if isinstance(exc, recurly.ApiError) and error is not None:
            return f"Recurly {error.get_response().status}: {error.message}"
        return f"{type(exc).__name__}: {exc}"
