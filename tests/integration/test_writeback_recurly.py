"""The Recurly writer against the sandbox, through the official recurly SDK.

Each write is checked the way billing would show it: the subscription read back through
the SDK's own object model (`Client.get_subscription`), the request as the emulator
logged it (method, path, parameters, idempotency key), and the writer's own
`already_done` afterwards.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from datetime import UTC, datetime

import pytest
import recurly

from billing_clients.retries import RetryPolicy, with_retries
from sandbox.server import FaultConfig
from tests.writeback_scenario import (
    AS_OF,
    COUPON,
    OFFER_PARAMETERS,
    customer_id,
    scenario,
    subscription_id,
)
from writebacks.systems.base import Action
from writebacks.systems.recurly import (
    ACCOUNT_PLACEHOLDER,
    CURRENCY_PLACEHOLDER,
    CYCLES_PLACEHOLDER,
    PauseNotInCycles,
    RecurlyWriter,
)

pytestmark = pytest.mark.integration

PARAMETERS = {
    "cancel": {"when": "period_end", "scope": "subscription", "refund": "none"},
    **OFFER_PARAMETERS,
    "plan_change": {"plan": "basic"},
}


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def action(action_type: str, state: str = "live", **overrides) -> Action:
    return Action(
        action_id=f"act-{action_type}-{state}",
        billing_system="recurly",
        subscription_id=subscription_id("recurly", state),
        customer_id=customer_id("recurly", state),
        action_type=action_type,
        parameters={**PARAMETERS[action_type], **overrides},
    )


@pytest.fixture
def sandbox(serve_scenario):
    return serve_scenario(scenario(("recurly",)))


@pytest.fixture
def writer(sandbox) -> RecurlyWriter:
    return RecurlyWriter(sandbox.api_key, sandbox.urls["recurly"])


@pytest.fixture
def log(sandbox) -> list[dict]:
    return sandbox.emulator("recurly").request_log


def writes(log: list[dict]) -> list[dict]:
    return [entry for entry in log if entry["method"] != "GET"]


def apply(writer: RecurlyWriter, act: Action, key: str = "key-1") -> str | None:
    """The runner's order: read, check, build, send."""
    current = writer.read(act.subscription_id)
    assert writer.already_done(act, current) is None
    return writer.send(writer.request(act, current), key)


# --------------------------------------------------------------------------- applying


def _paused(client, sub) -> None:
    # Two billing cycles from the next renewal (July 5th), whatever the requested date.
    assert (sub.paused_at, sub.resume_at) == (_utc(2026, 7, 5), _utc(2026, 9, 5))
    assert sub.remaining_pause_cycles == 2


def _discounted(client, sub) -> None:
    # The scenario's coupon is account-level (Recurly's default): on the account, for
    # every charge of it, and not on the subscription.
    assert sub.coupon_redemptions == []
    active = client.list_active_coupon_redemptions(sub.account.id).items()
    # One per live subscription of the account (`live`, `live2`), none naming it.
    assert [(r.coupon.code, r.subscription_id) for r in active] == [(COUPON, None)] * 2


def _extended(client, sub) -> None:
    assert sub.current_term_ends_at == _utc(2026, 8, 5)


def _changed(client, sub) -> None:
    assert sub.plan.code == "basic"


@pytest.mark.parametrize(
    ("action_type", "expect", "method", "path", "params"),
    [
        ("pause", _paused, "PUT", "/pause", {"remaining_pause_cycles": 2}),
        (
            "discount",
            _discounted,
            "POST",
            "coupon_redemptions/active",
            {"coupon_id": "code-SAVE50", "subscription_id": "re-sub-live", "currency": "USD"},
        ),
        ("extension", _extended, "PUT", "/re-sub-live", {"next_bill_date": "2026-08-05T00:00:00Z"}),
        ("plan_change", _changed, "POST", "/change", {"plan_code": "basic", "timeframe": "now"}),
    ],
)
def test_each_action_applies_and_then_counts_as_done(
    writer, log, action_type, expect, method, path, params
):
    act = action(action_type)
    request_id = apply(writer, act)

    expect(writer.client, writer.client.get_subscription(act.subscription_id))
    [sent] = writes(log)
    assert (sent["method"], sent["params"], sent["idempotency_key"]) == (method, params, "key-1")
    assert sent["path"].endswith(path) and sent["status"] in (200, 201)
    assert request_id
    assert writer.already_done(act, writer.read(act.subscription_id))


def test_a_plan_change_on_a_subscription_with_add_ons_swaps_the_plan_only(serve_scenario):
    """Recurly's plan is the subscription's own `plan`; its add-ons ride along (the new
    plan offers them: same currency and period) with their quantities unchanged."""
    doc = scenario(("recurly",))
    seats = {**doc["plans"][0], "plan_id": "seats", "kind": "addon", "unit_amount": "7.00"}
    doc["plans"].append(seats)
    live = next(s for s in doc["subscriptions"] if s["subscription_id"] == "re-sub-live")
    live["items"] = [{"plan_id": "seats", "quantity": 4}]
    sandbox = serve_scenario(doc)
    writer = RecurlyWriter(sandbox.api_key, sandbox.urls["recurly"])
    act = action("plan_change")

    apply(writer, act)

    sub = writer.client.get_subscription(act.subscription_id)
    assert (sub.plan.code, [(a.add_on.code, a.quantity) for a in sub.add_ons]) == (
        "basic",
        [("seats", 4)],
    )
    assert writer.already_done(act, writer.read(act.subscription_id))


@pytest.mark.parametrize(
    ("when", "refund", "method", "path", "params", "state", "expires_at"),
    [
        (
            "period_end",
            "none",
            "PUT",
            "/subscriptions/re-sub-live/cancel",
            {"timeframe": "term_end"},
            "canceled",
            _utc(2026, 7, 5),
        ),
        (
            "immediately",
            "none",
            "DELETE",
            "/subscriptions/re-sub-live",
            {"refund": "none"},
            "expired",
            AS_OF,
        ),
        (
            "immediately",
            "partial",
            "DELETE",
            "/subscriptions/re-sub-live",
            {"refund": "partial"},
            "expired",
            AS_OF,
        ),
        (
            "immediately",
            "full",
            "DELETE",
            "/subscriptions/re-sub-live",
            {"refund": "full"},
            "expired",
            AS_OF,
        ),
    ],
)
def test_cancel_at_term_end_or_terminate_with_refund(
    writer, log, when, refund, method, path, params, state, expires_at
):
    act = action("cancel", when=when, refund=refund)
    apply(writer, act)

    sub = writer.client.get_subscription(act.subscription_id)
    assert (sub.state, sub.canceled_at, sub.expires_at) == (state, AS_OF, expires_at)
    [sent] = writes(log)
    assert (sent["method"], sent["path"], sent["params"]) == (method, path, params)
    assert writer.already_done(act, writer.read(act.subscription_id))


# --------------------------------------------------------------------------- already done


@pytest.mark.parametrize(
    ("state", "action_type", "overrides", "reason"),
    [
        ("ended", "cancel", {}, "subscription is expired"),
        ("ended", "cancel", {"when": "immediately"}, "subscription is expired"),
        ("ending", "cancel", {}, "already set to cancel at 2026-07-15T00:00:00Z"),
        (
            "paused",
            "pause",
            {"resumes_at": "2026-08-15T00:00:00+00:00"},
            "already paused until 2026-08-15T00:00:00Z",
        ),
        ("coupon", "discount", {}, "coupon SAVE50 already applied to the account"),
        (
            "trial",
            "extension",
            {"until": "2026-07-01T00:00:00+00:00"},
            "next bill already on 2026-07-04T00:00:00Z",
        ),
        ("live", "plan_change", {"plan": "pro"}, "already on pro"),
    ],
)
def test_already_done_sends_nothing(writer, log, state, action_type, overrides, reason):
    act = action(action_type, state, **overrides)
    assert writer.already_done(act, writer.read(act.subscription_id)) == reason
    assert writes(log) == []


def test_a_subscription_level_coupon_counts_only_on_its_subscription(serve_scenario):
    """With the coupon redeemed per subscription, the subscription that carries it has it
    applied; another subscription does not."""
    doc = scenario(("recurly",))
    for coupon in doc["coupons"]:
        coupon["redemption_resource"] = "subscription"
    sandbox = serve_scenario(doc)
    writer = RecurlyWriter(sandbox.api_key, sandbox.urls["recurly"])
    act = action("discount", "coupon")
    current = writer.read(act.subscription_id)
    assert [r["coupon"]["code"] for r in current["coupon_redemptions"]] == [COUPON]
    assert writer.already_done(act, current) == f"coupon {COUPON} already applied"
    live = action("discount", "live")
    assert writer.already_done(live, writer.read(live.subscription_id)) is None


@pytest.mark.parametrize(
    ("state", "action_type", "done", "moot"),
    [
        *[
            ("ended", kind, None, "subscription is expired: nothing to change")
            for kind in ("pause", "discount", "extension", "plan_change")
        ],
        ("ended", "cancel", "subscription is expired", None),
        ("live", "discount", None, None),  # a live subscription still takes the offer
    ],
)
def test_only_an_offer_on_an_ended_subscription_is_moot(
    writer, log, state, action_type, done, moot
):
    act = action(action_type, state)
    current = writer.read(act.subscription_id)
    assert (writer.already_done(act, current), writer.moot(act, current)) == (done, moot)
    assert writes(log) == []


@pytest.mark.parametrize(
    ("state", "action_type", "overrides"),
    [
        # Scheduled to cancel, yet a terminate still ends it now.
        ("ending", "cancel", {"when": "immediately"}),
        # Paused, but only to mid-August: a longer pause is still to apply.
        ("paused", "pause", {"resumes_at": "2026-09-15T00:00:00+00:00", "cycles": 3}),
    ],
)
def test_not_done_when_the_change_does_not_hold_yet(writer, state, action_type, overrides):
    act = action(action_type, state, **overrides)
    assert writer.already_done(act, writer.read(act.subscription_id)) is None


# --------------------------------------------------------------------------- terms and cycles


@pytest.fixture
def quarterly(serve_scenario):
    """The same accounts with `pro` billed every 3 months on a year's term (4 cycles), so
    the term ends long after the billing period."""
    doc = scenario(("recurly",))
    for plan in doc["plans"]:
        if plan["plan_id"] == "pro":
            plan["interval_count"] = 3
    for sub in doc["subscriptions"]:
        if sub["plan_id"] == "pro":
            sub["term_cycles"] = 4
    sandbox = serve_scenario(doc)
    return RecurlyWriter(sandbox.api_key, sandbox.urls["recurly"])


def test_an_extension_on_a_multi_cycle_term_moves_the_next_bill(quarterly):
    """Live since Jan 5th: its period ends Jul 5th, its term Jan 5th 2027. An extension to
    Aug 5th is not "already" there: the next bill moves, the term stays."""
    writer = quarterly
    act = action("extension")
    current = writer.read(act.subscription_id)
    assert (current["current_period_ends_at"], current["current_term_ends_at"]) == (
        "2026-07-05T00:00:00Z",
        "2027-01-05T00:00:00Z",
    )
    assert (current["total_billing_cycles"], current["remaining_billing_cycles"]) == (4, 2)
    assert writer.already_done(act, current) is None
    writer.send(writer.request(act, current), "key-ext")
    after = writer.read(act.subscription_id)
    assert (after["current_period_ends_at"], after["current_term_ends_at"]) == (
        "2026-08-05T00:00:00Z",
        "2027-01-05T00:00:00Z",
    )
    assert writer.already_done(act, after) == "next bill already on 2026-08-05T00:00:00Z"


def test_a_cancel_at_term_end_runs_to_the_end_of_a_multi_cycle_term(quarterly):
    writer = quarterly
    act = action("cancel")
    writer.send(writer.request(act, writer.read(act.subscription_id)), "key-cancel")
    after = writer.read(act.subscription_id)
    assert (after["state"], after["expires_at"]) == ("canceled", "2027-01-05T00:00:00Z")


@pytest.mark.parametrize(
    ("duration", "interval", "sent"),
    [(6, "month", 2), (3, "month", 1), (2, "month", None), (4, "week", None)],
)
def test_pause_cycles_are_counted_in_the_plans_billing_cycles(quarterly, duration, interval, sent):
    """On a quarterly plan a 6-month pause is 2 cycles; 2 months or 4 weeks cannot be
    paused in whole cycles, and the action fails with the reason (nothing is sent)."""
    writer = quarterly
    act = action("pause", duration=duration, interval=interval, cycles=None)
    current = writer.read(act.subscription_id)
    if sent is None:
        with pytest.raises(PauseNotInCycles, match="not a whole number of the plan's billing"):
            writer.request(act, current)
        return
    request = writer.request(act, current)
    assert request.params == {"remaining_pause_cycles": sent}
    writer.send(request, "key-pause")
    assert writer.read(act.subscription_id)["remaining_pause_cycles"] == sent


def test_pause_cycles_on_a_monthly_plan_and_from_the_catalog(writer):
    act = action("pause", duration=2, interval="month", cycles=None)
    current = writer.read(act.subscription_id)
    assert writer.request(act, current).params == {"remaining_pause_cycles": 2}
    weeks = action("pause", duration=3, interval="week", cycles=None)
    with pytest.raises(PauseNotInCycles):
        writer.request(weeks, current)
    own = action("pause", duration=3, interval="week", cycles=1)  # the catalog's own rule
    assert writer.request(own, current).params == {"remaining_pause_cycles": 1}
    dry = writer.request(action("pause", cycles=None), None)
    assert dry.params == {"remaining_pause_cycles": CYCLES_PLACEHOLDER}


# --------------------------------------------------------------------------- in flight, region


def test_an_in_flight_duplicate_key_is_retried_until_the_first_answer_replays(sandbox, writer):
    """Recurly answers 409 while a request with the same key is still being processed.
    The first try is slow; a second writer sends the same key meanwhile, gets 409, backs
    off and retries until the first has answered, then gets its answer replayed: the
    change is applied once."""
    emulator = sandbox.emulator("recurly")
    act = action("plan_change")
    request = writer.request(act, writer.read(act.subscription_id))
    emulator.faults = FaultConfig(script=deque(["slow"]), slow_seconds=1.0)
    first = threading.Thread(target=writer.send, args=(request, "same-key"))
    first.start()
    time.sleep(0.3)
    second = RecurlyWriter(sandbox.api_key, sandbox.urls["recurly"])
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    policy = RetryPolicy(max_attempts=10, base_delay=0.2, max_delay=0.5, sleep=sleep)
    with_retries(lambda: second.send(request, "same-key"), second.classifier, "send", policy)
    first.join()

    sent = [e for e in emulator.request_log if e["method"] == "POST"]
    statuses = [(e["status"], e["replayed"]) for e in sent]
    assert statuses[0] == (409, False) and (201, False) in statuses and statuses[-1] == (201, True)
    assert waits and writer.read(act.subscription_id)["plan"]["code"] == "basic"


def test_the_region_setting_picks_the_eu_host(monkeypatch):
    monkeypatch.setenv("SOURCES__RECURLY__REGION", "eu")
    writer = RecurlyWriter("a-real-looking-key")
    assert writer.client._BaseClient__conn.host == "v3.eu.recurly.com"
    monkeypatch.delenv("SOURCES__RECURLY__REGION")
    assert RecurlyWriter("a-real-looking-key").client._BaseClient__conn.host == "v3.recurly.com"
    with pytest.raises(ValueError, match="region must be one of us, eu"):
        RecurlyWriter("a-real-looking-key", region="au")


# --------------------------------------------------------------------------- idempotency


@pytest.mark.parametrize("action_type", list(PARAMETERS))
def test_a_repeated_key_is_applied_once(writer, log, action_type):
    act = action(action_type)
    request = writer.request(act, writer.read(act.subscription_id))
    first = writer.send(request, "same-key")
    after_first = writer.read(act.subscription_id)

    # Without the key, a second cancel or plan change would be refused (422).
    assert writer.send(request, "same-key") == first
    assert writer.read(act.subscription_id) == after_first
    assert [entry["replayed"] for entry in writes(log)] == [False, True]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("act", "read_first", "error", "message"),
    [
        (
            action("discount", coupon="NOPE"),
            True,
            recurly.errors.NotFoundError,
            "Recurly 404: Couldn't find Coupon with code = NOPE",
        ),
        (
            action("plan_change", plan="nope"),
            True,
            recurly.errors.NotFoundError,
            "Recurly 404: Couldn't find Plan with code = nope",
        ),
        (
            action("cancel", "missing"),
            False,
            recurly.errors.NotFoundError,
            "Recurly 404: Couldn't find Subscription with id = re-sub-missing",
        ),
        (
            action("pause", "ending"),
            True,
            recurly.errors.ValidationError,
            "Recurly 422: Expired, canceled, future or failed subscriptions cannot be paused",
        ),
    ],
    ids=["unknown-coupon", "unknown-plan", "unknown-subscription", "pause-canceled"],
)
def test_permanent_errors_are_not_retried(writer, act, read_first, error, message):
    current = writer.read(act.subscription_id) if read_first else None
    with pytest.raises(error) as raised:
        writer.send(writer.request(act, current), "key-err")

    assert writer.classifier.retry_after(raised.value) is None
    assert not writer.classifier.transient(raised.value)
    assert writer.error_message(raised.value) == message


def test_reading_an_unknown_subscription_is_a_404(writer):
    with pytest.raises(recurly.errors.NotFoundError) as raised:
        writer.read("re-sub-missing")
    assert writer.error_message(raised.value).startswith("Recurly 404: Couldn't find Subscription")


# --------------------------------------------------------------------------- dry run


@pytest.mark.parametrize("action_type", list(PARAMETERS))
def test_dry_run_request_is_complete_without_reading(writer, log, action_type):
    act = action(action_type)
    dry = writer.request(act, None)
    shown = json.loads(json.dumps(dry.describe()))
    assert shown["method"] in ("PUT", "POST", "DELETE")
    assert shown["path"].startswith("/") and shown["params"]
    assert log == []

    live = writer.request(act, writer.read(act.subscription_id))
    if action_type == "discount":
        # Only the account and currency come from the subscription.
        assert dry.path == f"/accounts/{ACCOUNT_PLACEHOLDER}/coupon_redemptions/active"
        assert dry.params["currency"] == CURRENCY_PLACEHOLDER
        assert live.params == {**dry.params, "currency": "USD"}
    else:
        assert dry == live
