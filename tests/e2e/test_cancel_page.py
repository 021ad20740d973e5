"""The example cancel page in headless Chromium, posting to the collector: the landing and
each outcome stored as the page sent them, a forged context refused with the reason shown;
and the whole issue-16 flow, Cancel then the pause accepted, applied to the billing system
within seconds with the signed webhook out.

Chromium and chromedriver are Debian's (`make browser`); the tests skip, saying so, where
they are missing."""

from __future__ import annotations

import json
import secrets
import time
from contextlib import ExitStack, closing
from functools import partial

import httpx
import pytest
from selenium.webdriver.common.by import By

from billing_clients.sdk import stripe_client
from collector.log import connect, latest
from sandbox.app import start_sandbox
from sandbox.scenario import validate_scenario
from tests.e2e.conftest import (
    APP_ID,
    WEBHOOK_SECRET_ENV,
    active_stripe_subscriptions,
    as_served,
    cancel_stack,
    live_environment,
    load_backend,
    poll,
    settled,
    wait_for,
)
from tests.webhook_receiver import Receiver, receiving
from tests.writeback_pipeline import point_at
from webhooks.signing import verify
from writebacks.journal import Journal

pytestmark = pytest.mark.integration

BILLING = ("stripe", "sub_e2e_1")


def stored_sessions(stack) -> dict[str, dict]:
    """Each session's latest row in the collector's log, by session id."""
    with closing(connect(stack.state_db)) as con:
        ids = [r[0] for r in con.execute("select distinct session_id from collector_sessions")]
        return {session_id: latest(con, session_id) for session_id in ids}


def published(stack, session_id: str) -> list[dict]:
    """The session's rows in the collector's segments in the drop folder (what the
    exit-sessions source loads), in publishing order."""
    rows = [
        json.loads(line)
        for segment in sorted(stack.drop.glob("*.jsonl"))
        for line in segment.read_text().splitlines()
    ]
    return [row for row in rows if row["session_id"] == session_id]


def test_the_backend_signs_a_fresh_context_for_each_visit(app_secret):
    backend = load_backend()
    context = partial(
        backend.signed_context,
        app_secret,
        app_id=APP_ID,
        billing_system=BILLING[0],
        billing_id=BILLING[1],
        collector="http://127.0.0.1:9",
    )
    server = backend.serve_page(context)
    base = "http://{}:{}".format(*server.server_address[:2])
    try:
        page = httpx.get(f"{base}/")
        answer = httpx.get(f"{base}/context.json")
    finally:
        server.shutdown()
    assert page.status_code == 200 and 'src="snippet.js"' in page.text
    assert answer.headers["cache-control"] == "no-store"
    signed = answer.json()
    parts = [signed["app_id"], signed["billing_system"], signed["billing_id"], signed["timestamp"]]
    assert verify(app_secret, parts, signed["signature"])
    assert not verify(b"another secret", parts, signed["signature"])
    assert abs(int(signed["timestamp"]) - time.time()) < 60


@pytest.mark.parametrize(
    ("button", "action"),
    [("accept", "offer_accepted"), ("cancel-anyway", "canceled"), ("stay", "deflected")],
)
def test_the_page_posts_the_landing_then_the_outcome(chrome, tmp_path, app_secret, button, action):
    with cancel_stack(tmp_path, app_secret, BILLING) as stack:
        chrome.get(stack.page)
        wait_for(chrome, "ready")
        (landing,) = stored_sessions(stack).values()
        assert (landing["app_id"], landing["billing_system"], landing["billing_id"]) == (
            APP_ID,
            *BILLING,
        )
        assert landing["started_at"] and landing["action"] is None
        if button != "stay":
            chrome.find_element(By.ID, "cancel").click()
            assert chrome.find_element(By.ID, "offer").is_displayed()
        chrome.find_element(By.ID, button).click()
        wait_for(chrome, "done")
        (row,) = stored_sessions(stack).values()
        # The latest row is published to the drop folder for the scheduled load.
        last = poll(lambda: (published(stack, row["session_id"]) or [None])[-1] == row)
    assert last, "the session's latest row was not published to the drop folder"
    assert row["session_id"] == landing["session_id"] and row["action"] == action
    assert not {"signature", "timestamp"} & row.keys()
    assert row["started_at"] == landing["started_at"] and row["action_at"] >= row["started_at"]
    offer = ("pause_1m", "pause") if action == "offer_accepted" else (None, None)
    assert (row["offer_id"], row["offer_type"]) == offer
    shown = None if button == "stay" else {"offer_shown": "pause_1m"}
    assert row["custom"] == shown


def test_a_signed_link_carries_the_context_in_place_of_context_json(chrome, tmp_path, app_secret):
    backend = load_backend()
    with cancel_stack(tmp_path, app_secret, BILLING) as stack:
        context = backend.signed_context(
            app_secret,
            app_id=APP_ID,
            billing_system="stripe",
            billing_id="sub_e2e_link",
            collector=stack.collector,
        )
        chrome.get(backend.signed_link(stack.page, context))
        wait_for(chrome, "ready")
        (landing,) = stored_sessions(stack).values()
        chrome.find_element(By.ID, "cancel").click()
        assert chrome.find_element(By.ID, "cancel-anyway").is_displayed()
        assert not chrome.find_element(By.ID, "accept").is_displayed()  # no offer in the link
    assert (landing["billing_system"], landing["billing_id"]) == ("stripe", "sub_e2e_link")


def test_a_context_signed_with_another_secret_is_refused_and_the_page_says_why(
    chrome, tmp_path, app_secret
):
    with cancel_stack(tmp_path, app_secret, BILLING, page_secret=b"not the app's") as stack:
        chrome.get(stack.page)
        state, text = settled(chrome, "ready")
        assert state == "error" and "403" in text and "signature does not match" in text
        assert not chrome.find_element(By.ID, "cancel").is_enabled()
        assert stored_sessions(stack) == {}


def test_cancel_then_accepting_the_pause_pauses_the_subscription_within_seconds(
    chrome, tmp_path, app_secret, synced, monkeypatch
):
    sandbox = start_sandbox(validate_scenario(synced.doc), frozen=True)
    point_at(monkeypatch, sandbox)
    (subscription,) = active_stripe_subscriptions(synced.serving, 1)
    webhook_secret = secrets.token_hex(16)
    receiver = Receiver(webhook_secret.encode())
    stripe = stripe_client(sandbox.api_key, sandbox.urls["stripe"])
    with ExitStack() as running:
        running.callback(sandbox.stop)
        running.enter_context(receiving(receiver))
        monkeypatch.setenv(WEBHOOK_SECRET_ENV, webhook_secret)
        for name, value in live_environment(synced, receiver.url, tmp_path).items():
            monkeypatch.setenv(name, value)
        billing = ("stripe", subscription)
        stack = running.enter_context(
            cancel_stack(tmp_path, app_secret, billing, services=as_served)
        )
        chrome.get(stack.page)
        wait_for(chrome, "ready")
        assert stripe.v1.subscriptions.retrieve(subscription).pause_collection is None
        chrome.find_element(By.ID, "cancel").click()
        chrome.find_element(By.ID, "accept").click()
        clicked = time.time()
        wait_for(chrome, "done")
        acknowledged = time.time()
        paused = poll(
            lambda: stripe.v1.subscriptions.retrieve(subscription).pause_collection or None
        )
        delivered = poll(lambda: events_of(receiver, "exit_session.offer_accepted"))
        (session,) = stored_sessions(stack).values()
    assert paused is not None, "the subscription was not paused within 30 s"
    assert paused.behavior == "void" and session["action"] == "offer_accepted"
    # The journal row is applied, under the scheduled path's action id and key: one write.
    with closing(Journal(stack.state_db)) as journal:
        changed = journal.changed()
    (row,) = [r for r in changed if r["session_id"] == session["session_id"]]
    assert (row["status"], row["action_type"], row["subscription_id"]) == (
        "applied",
        "pause",
        subscription,
    )
    writes = [
        e
        for e in sandbox.emulator("stripe").request_log
        if e["method"] == "POST" and 200 <= e["status"] < 300 and not e["replayed"]
    ]
    assert [e["idempotency_key"].rsplit("-", 1)[0] for e in writes] == [row["action_id"]]
    # The receiver checked each request's signature (webhooks.receiving) and took the event.
    assert delivered, "no exit_session.offer_accepted webhook within 30 s"
    assert receiver.refused == []
    (event,) = {e["id"]: e for e in delivered}.values()
    assert (event["data"]["session_id"], event["data"]["billing_id"]) == (
        session["session_id"],
        subscription,
    )
    assert "signature" not in event["data"]
    # When each step happened (the sandbox's log and the receiver's clock), for figures.
    print(
        f"\ncancel page, from the Accept click: page done {acknowledged - clicked:.3f} s, "
        f"Stripe write answered {writes[0]['wall_time'] - clicked:.3f} s, "
        f"webhook received {event['received_at'] - clicked:.3f} s"
    )


def events_of(receiver: Receiver, event_type: str) -> list[dict]:
    return [e for e in list(receiver.accepted) if e["type"] == event_type]
