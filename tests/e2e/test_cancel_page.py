"""The example cancel page in headless Chromium, posting to the collector: the landing and
each outcome stored as the page sent them, a forged context refused with the reason shown;
and the whole issue-16 flow, Cancel then the pause accepted, applied to the billing system
within seconds with the signed webhook out.

Chromium and chromedriver are Debian's (`make browser`); the tests skip, saying so, where
they are missing."""

from __future__ import annotations

import time
from functools import partial

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from collector.log import connect, latest
from tests.e2e.conftest import APP_ID, cancel_stack, load_backend
from webhooks.signing import verify

pytestmark = pytest.mark.integration

BILLING = ("stripe", "sub_e2e_1")


def settled(driver, *states: str, timeout: float = 20) -> tuple[str, str]:
    """The page's status (state, text the visitor sees) once it reaches one of `states`
    or error."""
    element = driver.find_element(By.ID, "status")
    WebDriverWait(driver, timeout).until(
        lambda _: element.get_attribute("data-state") in (*states, "error")
    )
    return element.get_attribute("data-state"), element.text


def wait_for(driver, state: str) -> None:
    """The page reached `state`; an error fails with what the visitor was shown."""
    reached, text = settled(driver, state)
    assert reached == state, text


def stored_sessions(stack) -> dict[str, dict]:
    """Each session's latest row in the collector's log, by session id."""
    with connect(stack.state_db) as con:
        ids = [r[0] for r in con.execute("select distinct session_id from collector_sessions")]
        return {session_id: latest(con, session_id) for session_id in ids}


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
    assert row["session_id"] == landing["session_id"] and row["action"] == action
    assert row["started_at"] == landing["started_at"] and row["action_at"] >= row["started_at"]
    offer = ("pause_1m", "pause") if action == "offer_accepted" else (None, None)
    assert (row["offer_id"], row["offer_type"]) == offer


def test_a_context_signed_with_another_secret_is_refused_and_the_page_says_why(
    chrome, tmp_path, app_secret
):
    with cancel_stack(tmp_path, app_secret, BILLING, page_secret=b"not the app's") as stack:
        chrome.get(stack.page)
        state, text = settled(chrome, "ready")
        assert state == "error" and "403" in text and "signature does not match" in text
        assert not chrome.find_element(By.ID, "cancel").is_enabled()
        assert stored_sessions(stack) == {}
