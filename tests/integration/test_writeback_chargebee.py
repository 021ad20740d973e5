"""The Chargebee writer against the sandbox, through the official SDK: every action type
applied and read back, the checks that skip a change that already holds, idempotent
replays, permanent errors, retries left to the runner, and dry runs."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from chargebee import APIError, InvalidRequestError
from chargebee.environment import Environment
from chargebee.retry_config import RetryConfig

from billing_clients.chargebee import CLASSIFIER
from billing_clients.sdk import chargebee_client
from sandbox.server import DEFAULT_API_KEY, FaultConfig
from tests.writeback_scenario import (
    AS_OF,
    COUPON,
    OFFER_PARAMETERS,
    PLANS,
    scenario,
    subscription_id,
)
from writebacks.systems.base import ACTION_TYPES, Action
from writebacks.systems.chargebee import QUANTITY_PLACEHOLDER, ChargebeeWriter

pytestmark = pytest.mark.integration

CB = "chargebee"
PRO, BASIC = PLANS[CB]
NOW = int(AS_OF.timestamp())
TERM_END = int(datetime.fromisoformat("2026-07-05T00:00:00+00:00").timestamp())


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


# Parameters as the runner resolves them from the catalog.
PARAMETERS = {
    "cancel": {"when": "period_end", "scope": "subscription"},
    "cancel_now": {"when": "immediately", "scope": "subscription"},
    **OFFER_PARAMETERS,
    "plan_change": {"plan": BASIC},
}


def action(kind: str, state: str = "live", **overrides) -> Action:
    """An action on the scenario's subscription in `state`; `cancel_now` is a cancel with
    when=immediately."""
    action_type = "cancel" if kind == "cancel_now" else kind
    return Action(
        action_id=f"act-{kind}-{state}",
        billing_system=CB,
        subscription_id=subscription_id(CB, state),
        customer_id=None,
        action_type=action_type,
        parameters={**PARAMETERS[kind], **overrides},
    )


@pytest.fixture
def sandbox(serve_scenario):
    return serve_scenario(scenario((CB,)), systems=(CB,))


@pytest.fixture
def writer(sandbox) -> ChargebeeWriter:
    return ChargebeeWriter(DEFAULT_API_KEY, base_url=sandbox.urls[CB])


def writes(sandbox) -> list[dict]:
    return [r for r in sandbox.emulator(CB).request_log if r["method"] == "POST"]


def _plan_of(sub: dict) -> tuple[str, int]:
    """The plan and quantity on either catalog (2.0: the `plan` item)."""
    if "plan_id" in sub:
        return sub["plan_id"], sub["plan_quantity"]
    item = next(i for i in sub["subscription_items"] if i["item_type"] == "plan")
    return item["item_price_id"], item["quantity"]


# kind -> (operation, the wire parameters in the request log, check on the read-back)
APPLIED = {
    "cancel": (
        "cancel_for_items",
        {"cancel_option": "end_of_term"},
        lambda s: s["status"] == "non_renewing" and s["cancelled_at"] == TERM_END,
    ),
    "cancel_now": (
        "cancel_for_items",
        {"cancel_option": "immediately"},
        lambda s: s["status"] == "cancelled" and s["cancelled_at"] == NOW,
    ),
    "pause": (
        "pause",
        {"pause_option": "immediately", "resume_date": str(ts("2026-08-30T12:00:00+00:00"))},
        lambda s: (
            s["status"] == "paused"
            and s["pause_date"] == NOW
            and s["resume_date"] == ts("2026-08-30T12:00:00+00:00")
        ),
    ),
    "discount": (
        "update_for_items",
        {"coupon_ids[0]": COUPON},
        lambda s: [c["coupon_id"] for c in s["coupons"]] == [COUPON],
    ),
    "extension": (
        "change_term_end",
        {"term_ends_at": str(ts("2026-08-05T00:00:00+00:00")), "prorate": "false"},
        lambda s: s["current_term_end"] == ts("2026-08-05T00:00:00+00:00"),
    ),
    "plan_change": (
        "update_for_items",
        {"subscription_items[item_price_id][0]": BASIC, "subscription_items[quantity][0]": "1"},
        lambda s: _plan_of(s) == (BASIC, 1),
    ),
}


@pytest.mark.parametrize("kind", list(APPLIED))
def test_action_applies_and_then_holds(sandbox, writer, kind):
    operation, wire, holds = APPLIED[kind]
    act = action(kind)
    current = writer.read(act.subscription_id)
    assert current["status"] == "active" and writer.already_done(act, current) is None

    request = writer.request(act, current)
    assert request.operation == operation
    assert request.path == f"/api/v2/subscriptions/{act.subscription_id}/{operation}"
    assert writer.send(request, f"key-{kind}") is None  # Chargebee gives no request id

    after = writer.read(act.subscription_id)
    assert holds(after), after
    assert writer.already_done(act, after)
    (logged,) = writes(sandbox)
    assert logged["path"] == request.path and logged["status"] == 200
    assert logged["params"] == wire
    assert logged["idempotency_key"] == f"key-{kind}"


@pytest.mark.parametrize(
    ("kind", "state", "overrides", "reason"),
    [
        ("cancel", "ended", {}, "subscription is cancelled"),
        ("cancel_now", "ended", {}, "subscription is cancelled"),
        ("cancel", "ending", {}, "already set to cancel at 2026-07-15T00:00:00+00:00"),
        (
            "pause",
            "paused",
            {"resumes_at": "2026-08-15T00:00:00+00:00"},
            "already paused until 2026-08-15T00:00:00+00:00",
        ),
        ("discount", "coupon", {}, f"coupon {COUPON} already applied"),
        (
            "extension",
            "live",
            {"until": "2026-07-01T00:00:00+00:00"},
            "already runs to 2026-07-05T00:00:00+00:00",
        ),
        ("plan_change", "live", {"plan": PRO}, f"already on {PRO}"),
        # Not done yet: an immediate cancel of a scheduled one, a pause to another end.
        ("cancel_now", "ending", {}, None),
        ("pause", "paused", {}, None),
    ],
)
def test_already_done_reads_without_writing(sandbox, writer, kind, state, overrides, reason):
    act = action(kind, state, **overrides)
    assert writer.already_done(act, writer.read(act.subscription_id)) == reason
    assert writes(sandbox) == []


@pytest.mark.parametrize(
    ("kind", "state", "done", "moot"),
    [
        *[
            (kind, "ended", None, "subscription is cancelled: nothing to change")
            for kind in ("pause", "discount", "extension", "plan_change")
        ],
        ("cancel", "ended", "subscription is cancelled", None),
        ("discount", "live", None, None),  # a live subscription still takes the offer
    ],
)
def test_only_an_offer_on_an_ended_subscription_is_moot(sandbox, writer, kind, state, done, moot):
    act = action(kind, state)
    current = writer.read(act.subscription_id)
    assert (writer.already_done(act, current), writer.moot(act, current)) == (done, moot)
    assert writes(sandbox) == []


def test_immediate_cancel_of_a_scheduled_cancel(writer):
    act = action("cancel_now", "ending")
    writer.send(writer.request(act, writer.read(act.subscription_id)), "key-ending")
    after = writer.read(act.subscription_id)
    assert (after["status"], after["cancelled_at"]) == ("cancelled", NOW)


@pytest.mark.parametrize("kind", ["cancel_now", "pause", "discount"])
def test_same_key_applies_once(sandbox, writer, kind):
    """Applied again, an immediate cancel or a pause would be refused (400): the second
    send succeeding shows it was replayed, not applied."""
    act = action(kind)
    request = writer.request(act, writer.read(act.subscription_id))
    writer.send(request, "same-key")
    first = writer.read(act.subscription_id)
    writer.send(request, "same-key")
    assert writer.read(act.subscription_id) == first
    assert [(r["idempotency_key"], r["replayed"], r["status"]) for r in writes(sandbox)] == [
        ("same-key", False, 200),
        ("same-key", True, 200),
    ]


@pytest.mark.parametrize(
    ("act", "status", "message"),
    [
        (
            action("discount", coupon="NOPE"),
            404,
            "coupon_ids[0] : The coupon NOPE cannot be found",
        ),
        (
            action("plan_change", plan="Gold-USD"),
            404,
            "subscription_items[item_price_id][0] : The item price Gold-USD cannot be found",
        ),
        (action("cancel", "missing"), 404, "Sorry, we couldn't find that subscription"),
        (action("pause", "paused"), 400, "The subscription is already paused."),
    ],
)
def test_permanent_errors(writer, act, status, message):
    current = None if act.subscription_id.endswith("missing") else writer.read(act.subscription_id)
    request = writer.request(act, current)
    with pytest.raises(APIError) as caught:
        writer.send(request, f"key-{act.action_id}")
    exc = caught.value
    assert CLASSIFIER.retry_after(exc) is None and not CLASSIFIER.transient(exc)
    assert writer.error_message(exc).startswith(f"Chargebee {status}: {message}")


def test_read_of_unknown_subscription_is_a_404(writer):
    with pytest.raises(APIError) as caught:
        writer.read(subscription_id(CB, "missing"))
    assert caught.value.http_status_code == 404
    assert not CLASSIFIER.transient(caught.value)


@pytest.mark.parametrize("fault", ["500", "429"])
def test_sdk_does_not_retry(serve_scenario, monkeypatch, fault):
    """One attempt, even where the process-wide SDK default has retries on: retrying
    (with the CLASSIFIER's decision) is the runner's."""
    monkeypatch.setattr(Environment, "retry_config", RetryConfig(enabled=True, delay_ms=1))
    sandbox = serve_scenario(
        scenario((CB,)), systems=(CB,), faults={CB: FaultConfig(script=[fault])}
    )
    writer = ChargebeeWriter(DEFAULT_API_KEY, base_url=sandbox.urls[CB])
    act = action("discount")
    with pytest.raises(APIError) as caught:
        writer.send(writer.request(act, None), "key-fault")
    assert caught.value.http_status_code == int(fault)
    assert CLASSIFIER.transient(caught.value)
    assert [r["fault"] for r in writes(sandbox)] == [fault]


@pytest.mark.parametrize("kind", list(APPLIED))
def test_dry_run_request_is_complete(sandbox, writer, kind):
    act = action(kind)
    dry = writer.request(act, None)
    shown = json.loads(json.dumps(dry.describe()))
    assert shown["method"] == "POST"
    assert shown["path"] == f"/api/v2/subscriptions/{act.subscription_id}/{dry.operation}"
    live = writer.request(act, writer.read(act.subscription_id))
    if kind == "plan_change":
        assert shown["params"] == {
            "subscription_items": [{"item_price_id": BASIC, "quantity": QUANTITY_PLACEHOLDER}]
        }
        assert live.params == {"subscription_items": [{"item_price_id": BASIC, "quantity": 1}]}
    else:
        assert dry == live
    assert writes(sandbox) == []


def test_every_action_type_has_a_request():
    assert {a.action_type for a in map(action, APPLIED)} == set(ACTION_TYPES)


def test_needs_a_site_or_a_base_url():
    with pytest.raises(ValueError, match="site"):
        ChargebeeWriter(DEFAULT_API_KEY)
    assert ChargebeeWriter(DEFAULT_API_KEY, site="acme").client.env.api_endpoint == (
        "https://acme.chargebee.com/api/v2"
    )


# --------------------------------------------------------------------------- catalog 1.0

# kind -> (operation, path suffix, the wire parameters) on a Product Catalog 1.0 site; the
# read-back checks are the 2.0 ones (APPLIED).
APPLIED_V1 = {
    "cancel": ("cancel", "/cancel", {"end_of_term": "true"}),
    "cancel_now": ("cancel", "/cancel", {"end_of_term": "false"}),
    "pause": ("pause", "/pause", APPLIED["pause"][1]),
    "discount": ("update", "", {"coupon_ids[0]": COUPON}),
    "extension": ("change_term_end", "/change_term_end", APPLIED["extension"][1]),
    "plan_change": ("update", "", {"plan_id": BASIC, "plan_quantity": "1"}),
}


@pytest.fixture
def sandbox_v1(serve_scenario):
    return serve_scenario(scenario((CB,)) | {"chargebee_product_catalog": "1.0"}, systems=(CB,))


@pytest.mark.parametrize("kind", list(APPLIED_V1))
def test_catalog_1_0_action_applies_and_then_holds(sandbox_v1, kind):
    """On a 1.0 site the writer finds the catalog itself and uses `cancel` and `update`."""
    writer = ChargebeeWriter(DEFAULT_API_KEY, base_url=sandbox_v1.urls[CB])
    operation, suffix, wire = APPLIED_V1[kind]
    act = action(kind)
    current = writer.read(act.subscription_id)
    assert "subscription_items" not in current and current["plan_id"] == PRO
    assert writer.already_done(act, current) is None
    request = writer.request(act, current)
    assert writer.catalog() == "v1" and request.operation == operation
    assert request.path == f"/api/v2/subscriptions/{act.subscription_id}{suffix}"
    writer.send(request, f"key-{kind}")
    after = writer.read(act.subscription_id)
    assert APPLIED[kind][2](after), after
    assert writer.already_done(act, after)
    (logged,) = writes(sandbox_v1)
    assert (logged["path"], logged["status"], logged["params"]) == (request.path, 200, wire)
    # The subscription read told the catalog: no request of its own.
    assert not any(
        r["path"].endswith("/configurations") for r in sandbox_v1.emulator(CB).request_log
    )


def test_catalog_1_0_dry_run_and_a_2_0_call_refused(sandbox_v1, monkeypatch):
    """A dry run reads nothing, so it shows the 2.0 calls unless the catalog is set (the
    source's setting, or the writer's own); a 2.0 call is refused by a 1.0 site."""
    url = sandbox_v1.urls[CB]
    plan_change = action("plan_change")
    guessed = ChargebeeWriter(DEFAULT_API_KEY, base_url=url).request(plan_change, None)
    assert guessed.operation == "update_for_items"
    told = ChargebeeWriter(DEFAULT_API_KEY, base_url=url, product_catalog="v1")
    assert told.request(plan_change, None).params == {
        "plan_id": BASIC,
        "plan_quantity": QUANTITY_PLACEHOLDER,
    }
    monkeypatch.setenv("SOURCES__CHARGEBEE__PRODUCT_CATALOG", "v1")
    from_env = ChargebeeWriter(DEFAULT_API_KEY, base_url=url).request(action("cancel"), None)
    assert (from_env.operation, from_env.params) == ("cancel", {"end_of_term": True})
    assert sandbox_v1.emulator(CB).request_log == []  # not even a read
    wrong = ChargebeeWriter(DEFAULT_API_KEY, base_url=url, product_catalog="v2")
    with pytest.raises(APIError) as caught:
        wrong.send(wrong.request(action("discount"), None), "key-wrong")
    assert caught.value.api_error_code == "configuration_incompatible"
    assert not CLASSIFIER.transient(caught.value)


def test_product_catalog_setting_is_checked():
    with pytest.raises(ValueError, match="product_catalog"):
        ChargebeeWriter(DEFAULT_API_KEY, site="acme", product_catalog="1.0")


# --------------------------------------------------------------------------- multi-item

ADDON, CHARGE = "Seats-Addon", "Setup-Charge"


def _with_items(doc: dict) -> dict:
    """The scenario with a recurring add-on and a one-time charge on the live subscription."""
    plans = [
        {
            **next(p for p in doc["plans"] if p["plan_id"] == PRO),
            "plan_id": plan_id,
            "product_id": plan_id.lower(),
            "kind": kind,
            "pricing_model": model,
            "unit_amount": amount,
        }
        for plan_id, kind, model, amount in (
            (ADDON, "addon", "per_unit", "7.00"),
            (CHARGE, "charge", "flat_fee", "50.00"),
        )
    ]
    live = subscription_id(CB, "live")
    subs = [
        s | {"items": [{"plan_id": ADDON, "quantity": 4}, {"plan_id": CHARGE, "quantity": 1}]}
        if s["subscription_id"] == live
        else s
        for s in doc["subscriptions"]
    ]
    return doc | {"plans": doc["plans"] + plans, "subscriptions": subs}


@pytest.mark.parametrize("catalog", ["2.0", "1.0"])
def test_plan_change_on_a_multi_item_subscription_swaps_the_plan_only(serve_scenario, catalog):
    """The plan item is replaced; the add-on and the charge stay as they were (on 1.0 in
    `addons` and `event_based_addons`)."""
    doc = _with_items(scenario((CB,))) | {"chargebee_product_catalog": catalog}
    sandbox = serve_scenario(doc, systems=(CB,))
    writer = ChargebeeWriter(DEFAULT_API_KEY, base_url=sandbox.urls[CB])
    act = action("plan_change")
    before = writer.read(act.subscription_id)
    assert _plan_of(before) == (PRO, 1) and writer.already_done(act, before) is None
    writer.send(writer.request(act, before), "key-multi")
    after = writer.read(act.subscription_id)
    assert _plan_of(after) == (BASIC, 1) and writer.already_done(act, after)
    if catalog == "2.0":
        others = [i for i in after["subscription_items"] if i["item_type"] != "plan"]
        assert [(i["item_price_id"], i["item_type"], i.get("quantity")) for i in others] == [
            (ADDON, "addon", 4),
            (CHARGE, "charge", None),
        ]
    else:
        assert [(a["id"], a["quantity"]) for a in after["addons"]] == [(ADDON, 4)]
        assert [a["id"] for a in after["event_based_addons"]] == [CHARGE]
    assert after["mrr"] == 1900 + 4 * 700  # the charge is not recurring revenue
    if catalog == "2.0":
        client = chargebee_client(DEFAULT_API_KEY, base_url=sandbox.urls[CB])
        with pytest.raises(InvalidRequestError) as addon_as_plan:
            client.Subscription.update_for_items(
                act.subscription_id, {"subscription_items": [{"item_price_id": ADDON}]}
            )
        assert addon_as_plan.value.param == "subscription_items[item_price_id][0]"
        assert _plan_of(writer.read(act.subscription_id)) == (BASIC, 1)
