"""The Stripe writer against the sandbox, through the official SDK: every action applied
and read back, the cancel options on the wire, changes that already hold, idempotent
replays, permanent errors and dry runs.

The clock is frozen at AS_OF, so "now" in the sandbox is AS_OF and future timestamps are
relative to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import stripe

from billing_clients.sdk import stripe_client
from sandbox.server import DEFAULT_API_KEY
from tests.conformance.stripe_schema import StripeSchema
from tests.writeback_scenario import AS_OF, COUPON, PLANS, customer_id, scenario, subscription_id
from writebacks.systems.base import Action
from writebacks.systems.stripe import ITEM_PLACEHOLDER, StripeWriter

pytestmark = pytest.mark.integration

SYSTEM = "stripe"
PRO, BASIC = PLANS[SYSTEM]


def at(days: int) -> str:
    return (AS_OF + timedelta(days=days)).isoformat()


def epoch(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def cancel(when: str = "period_end", prorate: bool = False, invoice_now: bool = False) -> dict:
    return {"when": when, "scope": "subscription", "prorate": prorate, "invoice_now": invoice_now}


PAUSE = {"resumes_at": at(30), "duration": 30, "interval": "day", "cycles": 1}
SCENARIO_RESUMES_AT = "2026-08-15T00:00:00+00:00"  # the `paused` subscription's
EXTENSION = {"until": at(60), "days": 60}
PARAMETERS: dict[str, dict[str, Any]] = {
    "cancel": cancel(),
    "pause": PAUSE,
    "discount": {"coupon": COUPON},
    "extension": EXTENSION,
    "plan_change": {"plan": BASIC},
}


def action(kind: str, state: str = "live", **parameters: Any) -> Action:
    return Action(
        action_id=f"wb-{kind}-{state}",
        billing_system=SYSTEM,
        subscription_id=subscription_id(SYSTEM, state),
        customer_id=customer_id(SYSTEM, state),
        action_type=kind,
        parameters=parameters or PARAMETERS[kind],
    )


@pytest.fixture
def sandbox(serve_scenario):
    return serve_scenario(scenario((SYSTEM,)))


@pytest.fixture
def writer(sandbox) -> StripeWriter:
    return StripeWriter(DEFAULT_API_KEY, sandbox.urls[SYSTEM])


@pytest.fixture
def retrieve(sandbox) -> Callable[[str], stripe.Subscription]:
    """The subscription read back with a client of its own, as any SDK user would."""
    client = stripe_client(DEFAULT_API_KEY, sandbox.urls[SYSTEM])
    return lambda ident: client.v1.subscriptions.retrieve(ident, params={"expand": ["discounts"]})


@pytest.fixture
def writes(sandbox) -> Callable[[], list[dict]]:
    """The request log's writes (everything but reads)."""
    log = sandbox.emulator(SYSTEM).request_log
    return lambda: [entry for entry in log if entry["method"] != "GET"]


def apply(writer: StripeWriter, act: Action) -> str | None:
    """What the runner does: read, check, build, send with the action's key."""
    current = writer.read(act.subscription_id)
    assert writer.already_done(act, current) is None
    return writer.send(writer.request(act, current), act.action_id)


def _canceled_at_period_end(sub) -> None:
    assert sub.status == "active" and sub.cancel_at_period_end
    assert sub.cancel_at == sub["items"].data[0].current_period_end


def _canceled_now(sub) -> None:
    assert sub.status == "canceled"
    assert sub.canceled_at == sub.ended_at == int(AS_OF.timestamp())


def _paused(sub) -> None:
    assert sub.pause_collection.behavior == "void"
    assert sub.pause_collection.resumes_at == epoch(PAUSE["resumes_at"])


def _discounted(sub) -> None:
    assert [d.source.coupon for d in sub.discounts] == [COUPON]


def _extended(sub) -> None:
    """The default, as the product we replace: free service, status unchanged."""
    assert sub.status == "active" and sub.trial_end is None
    assert sub.pause_collection.behavior == "mark_uncollectible"
    assert sub.pause_collection.resumes_at == epoch(EXTENSION["until"])


def _extended_by_trial(sub) -> None:
    assert sub.status == "trialing" and sub.trial_end == epoch(EXTENSION["until"])
    assert sub.pause_collection is None


def _plan_changed(sub) -> None:
    assert sub["items"].data[0].price.id == BASIC


ACTION_IDS = [
    "cancel_period_end",
    "cancel_immediately",
    "pause",
    "discount",
    "extension",
    "extension_trial_end",
    "plan",
]


@pytest.mark.parametrize(
    ("act", "check"),
    [
        (action("cancel"), _canceled_at_period_end),
        (action("cancel", **cancel("immediately")), _canceled_now),
        (action("pause"), _paused),
        (action("discount"), _discounted),
        (action("extension"), _extended),
        (action("extension", **EXTENSION, method="trial_end"), _extended_by_trial),
        (action("plan_change"), _plan_changed),
    ],
    ids=ACTION_IDS,
)
def test_action_applies_and_then_holds(writer, retrieve, writes, act, check):
    request_id = apply(writer, act)

    assert request_id and request_id.startswith("req_")
    check(retrieve(act.subscription_id))
    assert writer.already_done(act, writer.read(act.subscription_id))
    assert len(writes()) == 1


@pytest.mark.parametrize(
    ("options", "method", "params"),
    [
        (cancel(), "POST", {"cancel_at_period_end": "true"}),
        (cancel("immediately"), "DELETE", {"prorate": "false", "invoice_now": "false"}),
        (cancel("immediately", True, True), "DELETE", {"prorate": "true", "invoice_now": "true"}),
        (cancel("immediately", True, False), "DELETE", {"prorate": "true", "invoice_now": "false"}),
    ],
)
def test_cancel_options_on_the_wire(writer, writes, options, method, params):
    act = action("cancel", **options)
    apply(writer, act)

    [entry] = writes()
    assert (entry["method"], entry["path"], entry["params"], entry["status"]) == (
        method,
        f"/v1/subscriptions/{act.subscription_id}",
        params,
        200,
    )
    if method == "POST":  # Stripe takes idempotency keys on POST only
        assert entry["idempotency_key"] == act.action_id


@pytest.mark.parametrize(
    ("act", "reason"),
    [
        (action("cancel", "ended"), "subscription is canceled"),
        (action("cancel", "ended", **cancel("immediately")), "subscription is canceled"),
        (action("cancel", "ending"), "already set to cancel at 2026-07-15T00:00:00+00:00"),
        (action("cancel", "ending", **cancel("immediately")), None),  # still cancels now
        (
            action("pause", "paused", **{**PAUSE, "resumes_at": SCENARIO_RESUMES_AT}),
            f"already paused until {SCENARIO_RESUMES_AT}",
        ),
        (action("pause", "paused"), None),  # another resume date moves it
        (action("discount", "coupon"), f"coupon {COUPON} already applied"),
        (action("plan_change", plan=PRO), f"already on {PRO}"),
        (
            action("extension", "trial", until=at(2), days=2),  # the trial ends on 07-04
            "already runs to 2026-07-04T00:00:00+00:00",
        ),
        (  # the period (items' end) already runs past the new end
            action("extension", until=at(3), days=3, method="trial_end"),
            "already runs to 2026-07-05T00:00:00+00:00",
        ),
        (action("extension", "paused"), None),  # a void pause is no free service
    ],
    ids=lambda value: value.action_id if isinstance(value, Action) else None,
)
def test_already_done_reads_without_writing(writer, writes, act, reason):
    assert writer.already_done(act, writer.read(act.subscription_id)) == reason
    assert writes() == []


@pytest.mark.parametrize("method", ["pause_collection", "trial_end"])
def test_an_extension_by_either_method_is_seen_by_both(writer, writes, method):
    """Applied one way, the extension is recognised whichever method the catalog now names,
    and a later end than it gives is not."""
    applied = action("extension", **EXTENSION, method=method)
    apply(writer, applied)
    current = writer.read(applied.subscription_id)
    until = EXTENSION["until"]
    for other in ("pause_collection", "trial_end"):
        again = action("extension", **EXTENSION, method=other)
        reason = writer.already_done(again, current)
        assert reason is not None and until.removesuffix("+00:00") in reason
        later = action("extension", until=at(90), days=90, method=other)
        assert writer.already_done(later, current) is None
    assert len(writes()) == 1


@pytest.mark.parametrize(
    ("act", "done", "moot"),
    [
        *[
            (action(kind, "ended"), None, "subscription is canceled: nothing to change")
            for kind in ("pause", "discount", "extension", "plan_change")
        ],
        (action("cancel", "ended"), "subscription is canceled", None),
        (action("discount"), None, None),  # a live subscription still takes the offer
    ],
    ids=lambda value: value.action_id if isinstance(value, Action) else None,
)
def test_only_an_offer_on_an_ended_subscription_is_moot(writer, writes, act, done, moot):
    current = writer.read(act.subscription_id)
    assert (writer.already_done(act, current), writer.moot(act, current)) == (done, moot)
    assert writes() == []


@pytest.mark.parametrize("kind", ["cancel", "pause", "discount", "extension", "plan_change"])
def test_same_key_twice_applies_once(writer, retrieve, writes, kind):
    act = action(kind)
    request = writer.request(act, writer.read(act.subscription_id))

    first = writer.send(request, act.action_id)
    after_first = retrieve(act.subscription_id).to_dict()
    second = writer.send(request, act.action_id)

    assert second == first  # the first answer, replayed
    assert [(w["idempotency_key"], w["replayed"]) for w in writes()] == [
        (act.action_id, False),
        (act.action_id, True),
    ]
    assert retrieve(act.subscription_id).to_dict() == after_first


def test_cancel_now_twice_is_refused_not_applied_again(writer, retrieve, writes):
    """Stripe ignores keys on DELETE; the second cancel finds the subscription gone."""
    act = action("cancel", **cancel("immediately"))
    request = writer.request(act, writer.read(act.subscription_id))
    writer.send(request, act.action_id)
    ended = retrieve(act.subscription_id).to_dict()

    with pytest.raises(stripe.InvalidRequestError) as caught:
        writer.send(request, act.action_id)

    assert caught.value.http_status == 404
    assert [(w["status"], w["replayed"]) for w in writes()] == [(200, False), (404, False)]
    assert retrieve(act.subscription_id).to_dict() == ended


@pytest.mark.parametrize(
    ("act", "status", "message"),
    [
        (action("discount", coupon="NOPE"), 400, "No such coupon: 'NOPE'"),
        (action("plan_change", plan="price_nope"), 400, "No such price: 'price_nope'"),
        (action("cancel", "missing"), 404, "No such subscription: 'st-sub-missing'"),
        (
            action("cancel", "missing", **cancel("immediately")),
            404,
            "No such subscription: 'st-sub-missing'",
        ),
        (
            action("extension", until=at(-1), days=1),
            400,
            "Invalid timestamp: must be an integer Unix timestamp in the future.",
        ),
        (
            action("extension", until=at(-1), days=1, method="trial_end"),
            400,
            "Invalid timestamp: must be an integer Unix timestamp in the future.",
        ),
    ],
    ids=[
        "coupon",
        "plan",
        "subscription",
        "subscription_delete",
        "past_extension_end",
        "past_trial_end",
    ],
)
def test_permanent_errors(writer, retrieve, writes, act, status, message):
    current = None if "missing" in act.subscription_id else writer.read(act.subscription_id)
    before = current and retrieve(act.subscription_id).to_dict()

    with pytest.raises(stripe.InvalidRequestError) as caught:
        writer.send(writer.request(act, current), act.action_id)

    exc = caught.value
    assert exc.http_status == status
    assert writer.classifier.retry_after(exc) is None
    assert not writer.classifier.transient(exc)
    assert writer.error_message(exc) == f"Stripe {status}: {message}"
    assert [w["status"] for w in writes()] == [status]
    if before:
        assert retrieve(act.subscription_id).to_dict() == before


def test_read_of_unknown_subscription_is_a_404(writer):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        writer.read("st-sub-missing")
    assert (
        writer.error_message(caught.value) == "Stripe 404: No such subscription: 'st-sub-missing'"
    )


@pytest.mark.parametrize(
    ("act", "method", "params"),
    [
        (action("cancel"), "POST", {"cancel_at_period_end": True}),
        (
            action("cancel", **cancel("immediately", True)),
            "DELETE",
            {"prorate": True, "invoice_now": False},
        ),
        (
            action("pause"),
            "POST",
            {"pause_collection": {"behavior": "void", "resumes_at": epoch(PAUSE["resumes_at"])}},
        ),
        (action("discount"), "POST", {"discounts": [{"coupon": COUPON}]}),
        (
            action("extension"),
            "POST",
            {
                "pause_collection": {
                    "behavior": "mark_uncollectible",
                    "resumes_at": epoch(EXTENSION["until"]),
                }
            },
        ),
        (
            action("extension", **EXTENSION, method="trial_end"),
            "POST",
            {"trial_end": epoch(EXTENSION["until"]), "proration_behavior": "none"},
        ),
        (
            action("plan_change"),
            "POST",
            {
                "items": [{"id": ITEM_PLACEHOLDER, "price": BASIC}],
                "proration_behavior": "create_prorations",
            },
        ),
    ],
    ids=ACTION_IDS,
)
def test_dry_run_request_is_complete_without_reading(sandbox, writer, act, method, params):
    described = writer.request(act, None).describe()

    assert described == {
        "method": method,
        "path": f"/v1/subscriptions/{act.subscription_id}",
        "params": params,
    }
    assert json.loads(json.dumps(described)) == described
    assert sandbox.emulator(SYSTEM).request_log == []


def _with_items(doc: dict, extras: list[dict]) -> dict:
    """The write-back scenario with further prices on the `live` subscription: a metered
    price, a small per-unit one and the given extras (each `plan` beside its quantity)."""
    plans = [
        {"plan_id": "price_wb_calls", "unit_amount": "0.01", "usage_type": "metered"},
        {"plan_id": "price_wb_support", "unit_amount": "5.00"},
        *(extra["plan"] for extra in extras),
    ]
    for plan in plans:
        doc["plans"].append(
            {
                "billing_system": SYSTEM,
                "product_id": plan["plan_id"].removeprefix("price_wb_"),
                "product_name": plan["plan_id"],
                "currency": "USD",
                "interval": "month",
                "interval_count": 1,
                **plan,
            }
        )
    live = next(s for s in doc["subscriptions"] if s["subscription_id"] == LIVE)
    live["items"] = [
        {"plan_id": "price_wb_calls"},
        {"plan_id": "price_wb_support", "quantity": 2},
        *({"plan_id": e["plan"]["plan_id"], "quantity": e["quantity"]} for e in extras),
    ]
    return doc


LIVE = subscription_id(SYSTEM, "live")
# Graduated: 10 seats at $4 + 20 at $3 = $100 a month, more than the plan's $49.
SEATS = {
    "plan_id": "price_wb_seats",
    "unit_amount": "0",
    "pricing_model": "tiered",
    "tiers": [
        {"up_to": 10, "unit_amount": "4.00", "flat_amount": "0"},
        {"up_to": None, "unit_amount": "3.00", "flat_amount": "0"},
    ],
}


@pytest.mark.parametrize(
    ("extras", "swapped"),
    [([], PRO), ([{"plan": SEATS, "quantity": 30}], "price_wb_seats")],
    ids=["plan_bills_most", "tiered_item_bills_most"],
)
def test_plan_change_swaps_the_item_that_bills_most(serve_scenario, extras, swapped):
    """Of several items the plan is the licensed one billing most (tiers read expanded);
    only its price changes, the other items keep theirs, and then the change holds."""
    sandbox = serve_scenario(_with_items(scenario((SYSTEM,)), extras))
    writer = StripeWriter(DEFAULT_API_KEY, sandbox.urls[SYSTEM])
    before = writer.read(LIVE)["items"]["data"]
    act = action("plan_change")

    apply(writer, act)

    after = {item["id"]: item["price"]["id"] for item in writer.read(LIVE)["items"]["data"]}
    expected = {i["id"]: BASIC if i["price"]["id"] == swapped else i["price"]["id"] for i in before}
    assert after == expected and len(after) == 3 + len(extras)
    assert writer.already_done(act, writer.read(LIVE)) == f"already on {BASIC}"


def _with_discounts(doc: dict) -> dict:
    """The write-back scenario with two more coupons: the `coupon` subscription carries
    SAVE50 then LOYAL (two discounts, in order), and the `live` customer has a
    customer-level WELCOME discount (its subscriptions have none of their own)."""
    for coupon_id in ("LOYAL", "WELCOME"):
        coupon = {**doc["coupons"][0], "coupon_id": coupon_id, "duration": "forever"}
        doc["coupons"].append(coupon | {"duration_in_months": None})
    for sub in doc["subscriptions"]:
        if sub["subscription_id"] == subscription_id(SYSTEM, "coupon"):
            sub["extra_coupon_ids"] = ["LOYAL"]
    for customer in doc["customers"]:
        if customer["customer_id"] == customer_id(SYSTEM, "live"):
            customer["coupon_id"] = "WELCOME"
    return doc


def test_a_discount_adds_to_the_discounts_in_place(serve_scenario):
    """Stripe's `discounts` replaces the list: the write passes the discounts in place
    back by id, so a retention coupon never takes a customer's other discounts away; a
    coupon already among them, or the customer's own, is not applied again."""
    sandbox = serve_scenario(_with_discounts(scenario((SYSTEM,))))
    writer = StripeWriter(DEFAULT_API_KEY, sandbox.urls[SYSTEM])

    def coupons(state: str) -> list[str]:
        current = writer.read(subscription_id(SYSTEM, state))
        return [d["source"]["coupon"] for d in current["discounts"]]

    def already_done(state: str, coupon: str) -> str | None:
        act = action("discount", state, coupon=coupon)
        return writer.already_done(act, writer.read(act.subscription_id))

    assert already_done("coupon", "LOYAL") == "coupon LOYAL already applied"  # the second
    assert already_done("live", "WELCOME") == "coupon WELCOME already applied"  # customer's

    apply(writer, action("discount", "coupon", coupon="WELCOME"))
    assert coupons("coupon") == [COUPON, "LOYAL", "WELCOME"]
    apply(writer, action("discount"))
    assert coupons("live") == ["WELCOME", COUPON]  # the customer's, reused, kept first
    assert coupons("live2") == []  # the customer's still applies to its other one
    sent = [
        sorted(e["params"]) for e in sandbox.emulator(SYSTEM).request_log if e["method"] == "POST"
    ]
    assert sent == [
        ["discounts[0][discount]", "discounts[1][discount]", "discounts[2][coupon]"],
        ["discounts[0][discount]", "discounts[1][coupon]"],
    ]


def test_a_cancel_releases_the_schedule_that_manages_the_subscription(serve_scenario):
    """Stripe refuses to change the cancel of a subscription a schedule manages (a
    scheduled change): the write releases the schedule, then cancels at period end."""
    doc = scenario((SYSTEM,))
    [live] = [
        s for s in doc["subscriptions"] if s["subscription_id"] == action("cancel").subscription_id
    ]
    live["pending_plan_id"] = BASIC
    sandbox = serve_scenario(doc)
    writer = StripeWriter(DEFAULT_API_KEY, sandbox.urls[SYSTEM])
    act = action("cancel")
    schedule = writer.read(act.subscription_id)["schedule"]
    assert schedule
    with pytest.raises(stripe.InvalidRequestError, match="managed by the subscription schedule"):
        writer.client.v1.subscriptions.update(
            act.subscription_id, params={"cancel_at_period_end": True}
        )

    apply(writer, act)
    after = writer.read(act.subscription_id)
    assert after["cancel_at_period_end"] and after["schedule"] is None
    assert after["items"]["data"][0]["price"]["id"] == PRO  # the change was dropped
    posts = [
        (e["path"], e["idempotency_key"])
        for e in sandbox.emulator(SYSTEM).request_log
        if e["method"] == "POST" and e["status"] == 200
    ]
    assert posts == [
        (f"/v1/subscription_schedules/{schedule}/release", f"{act.action_id}:release"),
        (f"/v1/subscriptions/{act.subscription_id}", act.action_id),
    ]
    assert writer.already_done(act, after)  # a retry sends nothing again
    events = writer.client.raw_request("get", "/v1/events", limit=100).data
    assert "subscription_schedule.released" in {e["type"] for e in events["data"]}
    assert not StripeSchema().validate(events)  # the released schedule as Stripe sends it


def test_a_plan_change_releases_the_schedule_that_would_undo_it(serve_scenario):
    """A scheduled change's next phase would put its price back at the period's end: the
    plan change releases the schedule first, so the offered plan stays."""
    doc = scenario((SYSTEM,))
    act = action("plan_change")
    [live] = [s for s in doc["subscriptions"] if s["subscription_id"] == act.subscription_id]
    live["pending_plan_id"] = PRO  # e.g. an upgrade back scheduled for the period's end
    sandbox = serve_scenario(doc)
    writer = StripeWriter(DEFAULT_API_KEY, sandbox.urls[SYSTEM])
    assert writer.read(act.subscription_id)["schedule"]

    apply(writer, act)
    after = writer.read(act.subscription_id)
    assert after["schedule"] is None
    assert after["items"]["data"][0]["price"]["id"] == BASIC
    posts = [e["path"] for e in sandbox.emulator(SYSTEM).request_log if e["method"] == "POST"]
    assert posts[0].endswith("/release") and len(posts) == 2
