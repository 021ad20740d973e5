"""Recurly v2021-02-25 write-backs through the official SDK (`recurly.Client`).

- cancel: at period end `PUT /subscriptions/{id}/cancel` (`timeframe=term_end`: the
  subscription stays live to the end of its term); immediately `DELETE
  /subscriptions/{id}` (Recurly's "terminate", expiring it now) with the configured
  `refund`;
- pause: `PUT /subscriptions/{id}/pause` with `remaining_pause_cycles`: Recurly pauses
  in whole billing cycles from the next renewal, not until a date. The offer's duration
  is converted into the plan's billing cycles (a 3-month pause on a quarterly plan is 1
  cycle, on an annual plan it cannot be expressed); a duration that is not a whole
  number of cycles fails with the reason, unless the catalog sets `cycles` for Recurly;
- discount: a coupon redemption on the subscription's account, tied to the subscription
  (`POST /accounts/{account_id}/coupon_redemptions/active`); an account-level coupon
  (Recurly's default) discounts every charge of the account, and counts as applied when
  it is active on the account, a subscription-level one when it is on the subscription;
- extension: `PUT /subscriptions/{id}` with `next_bill_date` at the new end: the
  current billing period (`current_period_ends_at`, the next bill) moves there, which is
  free time. It acts on and is checked against the period, not the term: on a
  multi-cycle term the term already ends later than the period, and it is the next bill
  that the extension postpones;
- plan change: `POST /subscriptions/{id}/change` with the target `plan_code` and the
  catalog's `timeframe` (`now` by default; `renewal` leaves a `pending_change`, which
  counts as done for a later change to the same plan, never for one asked for now).

Plans and coupons are named by their codes here (the warehouse's `plan_id`/`coupon_id`
are Recurly codes), so a coupon goes out as `code-<code>`. Every write carries the
action's `Idempotency-Key`; Recurly replays the first answer for a repeated key, and the
runner reads the subscription first, so a retry never applies a change twice. A key
still in flight (an earlier try not answered yet) is refused with 409: retried with
backoff (`WRITE_CLASSIFIER`) until the first try's answer can be replayed.

The site's region (`us`, `eu`) is the source's setting, `sources.recurly.region`
(`SOURCES__RECURLY__REGION`), read through dlt's configuration.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

import dlt
import recurly
from recurly import errors

from billing_clients.recurly import is_transient, rate_limit_wait, reset_on_network_error
from billing_clients.retries import Classifier
from billing_clients.sdk import recurly_client
from writebacks.systems.base import Action, BillingWriter, WriteRequest

ACCOUNT_PLACEHOLDER = "<the subscription's account id>"
# Added by `read` beside the API's fields: codes of the account-level coupons active on
# the subscription's account.
ACCOUNT_COUPONS = "account_level_coupon_codes"
# Added by `read`: the plan's billing interval, which pause cycles are counted in.
PLAN_INTERVAL = "plan_billing_interval"
CURRENCY_PLACEHOLDER = "<the subscription's currency>"
CYCLES_PLACEHOLDER = "<the pause's duration in the plan's billing cycles>"
# Offer intervals in the plan's units: Recurly plans bill in months or days.
_IN_PLAN_UNITS = {"month": ("months", 1), "week": ("days", 7), "day": ("days", 1)}
_ENDED = ("expired", "failed")
# How each SDK method takes its parameters: positional body unless listed here.
_PARAMS_AS = {"terminate_subscription": "params", "cancel_subscription": "body"}


def _time(value: str | None) -> datetime | None:
    """Recurly's `...Z` timestamps (Python 3.11 parses the `Z`)."""
    return datetime.fromisoformat(value) if value else None


def _stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def is_in_flight_duplicate(exc: BaseException) -> bool:
    """409 `simultaneous_request`: the same idempotency key is still being processed."""
    if isinstance(exc, errors.SimultaneousRequestError):
        return True
    error = getattr(exc, "error", None)
    return error is not None and error.get_response().status == 409


# The source's retry rules, plus a duplicate in flight: its first try may still land,
# and a later retry then gets that try's answer replayed.
WRITE_CLASSIFIER = Classifier(
    retry_after=rate_limit_wait,
    transient=lambda exc: is_transient(exc) or is_in_flight_duplicate(exc),
)


class PauseNotInCycles(ValueError):
    """The offered pause is not a whole number of the plan's billing cycles."""


def pause_cycles(parameters: dict[str, Any], plan: dict[str, Any]) -> int:
    """`remaining_pause_cycles` for a pause offer on a plan billed every
    `interval_length` `interval_unit` (months or days): the catalog's own `cycles` if it
    sets them, else the offer's duration in the plan's cycles, when it is a whole number
    of them (no rounding: a pause longer or shorter than offered is not the offer)."""
    if parameters.get("cycles") is not None:
        return parameters["cycles"]
    duration, interval = parameters["duration"], parameters["interval"]
    unit, factor = _IN_PLAN_UNITS[interval]
    length = plan["interval_length"]
    cycles, rest = divmod(duration * factor, length)
    if unit != plan["interval_unit"] or rest or cycles < 1:
        raise PauseNotInCycles(
            f"a {duration}-{interval} pause is not a whole number of the plan's billing "
            f"cycles ({length} {plan['interval_unit']}): Recurly pauses in whole cycles; "
            "set cycles for recurly on this offer in the write-back catalog"
        )
    return cycles


class RecurlyWriter(BillingWriter):
    system = "recurly"
    classifier = WRITE_CLASSIFIER

    def __init__(self, api_key: str, base_url: str | None = None, region: str | None = None):
        # The SDK never retries; the runner does, with WRITE_CLASSIFIER. One persistent
        # connection: a writer is not shared between threads.
        region = region or dlt.config.get("sources.recurly.region")
        self.client = recurly_client(api_key, base_url, region=region)

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
            self.pacing.wait()
            body = self.client.get_subscription(subscription_id).get_response().body
            sub = body if isinstance(body, dict) else json.loads(body)
            self.pacing.wait()  # one page: an account has few active redemptions
            active = self.client.list_active_coupon_redemptions(sub["account"]["id"]).items()
            sub[ACCOUNT_COUPONS] = sorted(
                {r.coupon.code for r in active if r.subscription_id is None}
            )
            self.pacing.wait()
            plan = self.client.get_plan(sub["plan"]["id"])
            sub[PLAN_INTERVAL] = {
                "interval_unit": plan.interval_unit,
                "interval_length": plan.interval_length,
            }
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
                if current is not None:
                    cycles = pause_cycles(p, current[PLAN_INTERVAL])
                else:  # a dry run reads no plan
                    cycles = p.get("cycles") or CYCLES_PLACEHOLDER
                return WriteRequest(
                    "pause_subscription", "PUT", f"{path}/pause", {"remaining_pause_cycles": cycles}
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
                ends = _time(current.get("current_period_ends_at"))
                if ends and ends >= action.when("until"):
                    return f"next bill already on {current['current_period_ends_at']}"
            case "plan_change":
                plan = (current.get("plan") or {}).get("code")
                if plan == p["plan"]:
                    return f"already on {plan}"
                # A change for the renewal already pending is done; one asked for now is not.
                pending = current.get("pending_change") or {}
                later = p.get("timeframe", "now") != "now"
                if later and (pending.get("plan") or {}).get("code") == p["plan"]:
                    return f"{p['plan']} already scheduled for {pending['activate_at']}"
        return None

    def send(self, request: WriteRequest, idempotency_key: str) -> str | None:
        # /subscriptions/{id}/... or /accounts/{id}/...: the SDK quotes the id again.
        target = unquote(request.path.split("/")[2])
        call = getattr(self.client, request.operation)
        headers = {"Idempotency-Key": idempotency_key}
        passed_as = _PARAMS_AS.get(request.operation)
        with reset_on_network_error(self.client):
            self.pacing.wait()
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
