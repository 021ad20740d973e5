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
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from functools import partial
from pathlib import Path

import duckdb
import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from billing_clients.sdk import stripe_client
from collector.cli import webhook_outbox
from collector.log import connect, latest
from collector.settings import CollectorSettings
from orchestration.serving import SERVING_PATH_ENV
from orchestration.settings import DUCKDB_PATH_ENV, WAREHOUSE_ENV
from orchestration.writebacks_cli import open_fast_path
from sandbox.app import start_sandbox
from sandbox.scenario import validate_scenario
from tests.e2e.conftest import APP_ID, cancel_stack, load_backend
from tests.webhook_receiver import Receiver, receiving
from tests.writeback_pipeline import live_catalog, point_at
from webhooks.config import WEBHOOKS_ENV
from webhooks.signing import verify
from writebacks.catalog import CATALOG_ENV
from writebacks.journal import Journal

pytestmark = pytest.mark.integration

BILLING = ("stripe", "sub_e2e_1")


def settled(driver, *states: str, timeout: float = 20) -> tuple[str, str]:
    """The page's status (state, text the visitor sees) once it reaches one of `states`
    or error."""
    element = driver.find_element(By.ID, "status")
    WebDriverWait(driver, timeout, poll_frequency=0.02).until(
        lambda _: element.get_attribute("data-state") in (*states, "error")
    )
    return element.get_attribute("data-state"), element.text


def wait_for(driver, state: str) -> None:
    """The page reached `state`; an error fails with what the visitor was shown."""
    reached, text = settled(driver, state)
    assert reached == state, text


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


def test_a_context_signed_with_another_secret_is_refused_and_the_page_says_why(
    chrome, tmp_path, app_secret
):
    with cancel_stack(tmp_path, app_secret, BILLING, page_secret=b"not the app's") as stack:
        chrome.get(stack.page)
        state, text = settled(chrome, "ready")
        assert state == "error" and "403" in text and "signature does not match" in text
        assert not chrome.find_element(By.ID, "cancel").is_enabled()
        assert stored_sessions(stack) == {}


WEBHOOK_SECRET_ENV = "RETENTION_E2E_WEBHOOK_SECRET"


def active_stripe_subscription(serving: Path) -> str:
    """A Stripe subscription in service and neither paused nor set to cancel, from the
    marts the fast path reads."""
    with duckdb.connect(str(serving), read_only=True) as con:
        rows = con.execute(
            "select subscription_id from marts.dim_subscriptions where billing_system = "
            "'stripe' and status = 'active' and canceled_at is null and paused_at is null "
            "order by subscription_id limit 1"
        ).fetchall()
    assert rows, "the scenario has no active Stripe subscription"
    return rows[0][0]


def webhooks_to(url: str, tmp_path: Path) -> Path:
    """webhooks.yml with one endpoint, `url`, for the session events, retried quickly."""
    path = tmp_path / "webhooks.yml"
    path.write_text(
        f"endpoints:\n  e2e:\n    url: {url}\n    secret_env: {WEBHOOK_SECRET_ENV}\n"
        "    events: ['exit_session.*']\n"
        "delivery: {initial_backoff_seconds: 0.1, max_backoff_seconds: 1}\n"
    )
    return path


def poll(check, timeout: float = 30, every: float = 0.05):
    """`check()`'s first truthy answer within `timeout` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answer := check():
            return answer
        time.sleep(every)
    return None


@contextmanager
def as_served(settings: CollectorSettings) -> Iterator[tuple]:
    """The fast path and the webhook outbox (with its deliverer), opened from the
    environment by the factories `retention collector serve` uses."""
    with webhook_outbox(settings) as outbox, open_fast_path(settings) as fast_path:
        yield fast_path, outbox


def test_cancel_then_accepting_the_pause_pauses_the_subscription_within_seconds(
    chrome, tmp_path, app_secret, synced, monkeypatch
):
    sandbox = start_sandbox(validate_scenario(synced.doc), frozen=True)
    point_at(monkeypatch, sandbox)
    subscription = active_stripe_subscription(synced.serving)
    webhook_secret = secrets.token_hex(16)
    receiver = Receiver(webhook_secret.encode())
    stripe = stripe_client(sandbox.api_key, sandbox.urls["stripe"])
    with ExitStack() as running:
        running.callback(sandbox.stop)
        running.enter_context(receiving(receiver))
        for name, value in {
            WEBHOOK_SECRET_ENV: webhook_secret,
            WEBHOOKS_ENV: webhooks_to(receiver.url, tmp_path),
            CATALOG_ENV: live_catalog(tmp_path / "writebacks.yml"),
            WAREHOUSE_ENV: "duckdb",
            DUCKDB_PATH_ENV: synced.warehouse,
            SERVING_PATH_ENV: synced.serving,
        }.items():
            monkeypatch.setenv(name, str(value))
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
