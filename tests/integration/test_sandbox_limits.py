"""The sandbox's network model through the official SDKs over real HTTP: past its budget
each API answers 429 as the vendor does and our retry classifiers read the wait from it;
two keys are counted apart; a request takes at least its latency, and concurrent requests
wait their latency side by side, not one after another.

The vendors' figures (25/s, 2,000 a window, 150 a minute) are pinned in
tests/unit/test_sandbox_network.py; here Recurly's and Chargebee's windows are shrunk
to a few requests (same shape, same rendering) so the tests stay fast."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import stripe
from chargebee import APIError
from recurly import errors

from billing_clients import chargebee as chargebee_rules
from billing_clients import recurly as recurly_rules
from billing_clients import stripe as stripe_rules
from billing_clients.sdk import chargebee_client, recurly_client, stripe_client
from sandbox.network import (
    Latency,
    RateLimits,
    chargebee_budgets,
    recurly_budgets,
    vendor_limits,
)
from sandbox.server import DEFAULT_API_KEY
from tests.small_scenarios import one_subscription_per_system

KEY_A, KEY_B = "sk_test_alpha", "sk_test_beta"
LIVE_KEY = "sk_live_gamma"


def shrunk(budgets, limit: int) -> RateLimits:
    """The vendor's budget with a smaller limit: same window, same methods counted."""
    return RateLimits(lambda _key: tuple(replace(b, limit=limit) for b in budgets))


def first_refusal(call, error_type, most: int):
    """Call until the API refuses; (calls that went through, the error)."""
    for done in range(most):
        try:
            call()
        except error_type as exc:
            return done, exc
    pytest.fail(f"no 429 in {most} requests")


# --------------------------------------------------------------------------- Stripe


def test_stripe_test_key_gets_25_a_second_then_stripes_429(serve_scenario):
    served = serve_scenario(
        one_subscription_per_system(),
        api_key=KEY_A,
        extra_keys=(KEY_B,),
        rate_limits={"stripe": vendor_limits("stripe", "test")},
    )
    url = served.urls["stripe"]
    client = stripe_client(KEY_A, url)
    passed, limited = first_refusal(
        lambda: client.v1.subscriptions.list(), stripe.RateLimitError, most=60
    )
    assert passed >= 25  # one second's burst, plus what refilled meanwhile
    assert (limited.http_status, limited.error.code) == (429, "rate_limit")
    assert limited.error.type == "invalid_request_error"
    assert "rate limit" in limited.error.message.lower()
    assert limited.headers["Stripe-Rate-Limited-Reason"] in ("global-rate", "endpoint-rate")
    assert "Retry-After" not in limited.headers  # Stripe documents none: back off
    assert stripe_rules.CLASSIFIER.retry_after(limited) is None
    assert stripe_rules.CLASSIFIER.transient(limited)
    # the other key has its own budget, on the same endpoint, at once
    assert len(stripe_client(KEY_B, url).v1.subscriptions.list().data) == 1
    log = served.emulator("stripe").request_log
    assert log[-2]["status"] == 429 and log[-2]["rate_limited"] in ("global-rate", "endpoint-rate")


def test_stripe_live_key_is_held_to_25_a_second_per_endpoint(serve_scenario):
    served = serve_scenario(
        one_subscription_per_system(),
        api_key=LIVE_KEY,
        rate_limits={"stripe": vendor_limits("stripe", "test")},  # the key's prefix wins
    )
    client = stripe_client(LIVE_KEY, served.urls["stripe"])
    passed, limited = first_refusal(
        lambda: client.v1.subscriptions.list(), stripe.RateLimitError, most=60
    )
    assert passed >= 25
    assert limited.headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    # the account's live budget (100/s) still has room on another endpoint
    assert len(client.v1.customers.list().data) == 1


# --------------------------------------------------------------------------- Recurly


def test_recurly_reports_its_window_on_every_answer_and_429s_past_it(serve_scenario):
    served = serve_scenario(
        one_subscription_per_system(),
        api_key=KEY_A,
        extra_keys=(KEY_B,),
        rate_limits={"recurly": shrunk(recurly_budgets("test"), 3)},
    )
    url = served.urls["recurly"]
    client = recurly_client(KEY_A, url)
    remaining = []
    for _ in range(3):
        response = client.get_subscription("rsub1").get_response()
        assert response.rate_limit == 3
        remaining.append(response.rate_limit_remaining)
    assert remaining == [2, 1, 0]
    started = time.time()
    with pytest.raises(errors.RateLimitedError) as limited:
        client.get_subscription("rsub1")
    response = limited.value.error.get_response()
    assert (response.status, response.rate_limit, response.rate_limit_remaining) == (429, 3, 0)
    assert limited.value.error.type == "rate_limited"
    headers = response._Response__headers
    assert "Retry-After" not in headers  # Recurly documents X-RateLimit-Reset
    wait = recurly_rules.rate_limit_wait(limited.value)
    assert 295 < wait <= 301 + (time.time() - started)  # the 5-minute window's oldest request
    other = recurly_client(KEY_B, url).get_subscription("rsub1").get_response()
    assert (other.status, other.rate_limit_remaining) == (200, 2)


def test_recurly_production_site_does_not_count_writes(serve_scenario):
    served = serve_scenario(
        one_subscription_per_system(),
        rate_limits={"recurly": shrunk(recurly_budgets("live"), 2)},
    )
    client = recurly_client(served.api_key, served.urls["recurly"])
    assert client.get_subscription("rsub1").get_response().rate_limit_remaining == 1
    cancel = client.cancel_subscription("rsub1").get_response()
    assert (cancel.status, cancel.rate_limit_remaining) == (200, 1)


# --------------------------------------------------------------------------- Chargebee


def test_chargebee_429_is_api_request_limit_exceeded_with_retry_after(serve_scenario):
    served = serve_scenario(
        one_subscription_per_system(),
        api_key=KEY_A,
        extra_keys=(KEY_B,),
        rate_limits={"chargebee": shrunk(chargebee_budgets("test"), 3)},
    )
    url = served.urls["chargebee"]
    client = chargebee_client(KEY_A, base_url=url)
    passed, limited = first_refusal(
        lambda: client.Subscription.list({"limit": 1}), APIError, most=10
    )
    assert passed == 3
    assert (limited.http_status_code, limited.api_error_code) == (429, "api_request_limit_exceeded")
    assert "request count exceeding acceptable limits" in str(limited)
    assert 58 <= chargebee_rules.CLASSIFIER.retry_after(limited) <= 60
    other = chargebee_client(KEY_B, base_url=url)
    assert len(other.Subscription.list({"limit": 1}).list) == 1


# --------------------------------------------------------------------------- latency


def test_a_request_takes_at_least_its_latency_and_admin_calls_none(serve_scenario):
    served = serve_scenario(one_subscription_per_system(), latency={"stripe": Latency(250, 0)})
    client = stripe_client(served.api_key, served.urls["stripe"])
    started = time.perf_counter()
    client.v1.subscriptions.retrieve("sub_1")
    assert time.perf_counter() - started >= 0.25
    conn = http.client.HTTPConnection(served.servers["stripe"].host, served.servers["stripe"].port)
    started = time.perf_counter()
    conn.request("GET", "/_sandbox/clock", headers={"Authorization": f"Bearer {served.api_key}"})
    assert conn.getresponse().status == 200
    assert time.perf_counter() - started < 0.25


def test_concurrent_requests_wait_their_latency_side_by_side(serve_scenario):
    latency, parallel = 0.3, 50
    served = serve_scenario(
        one_subscription_per_system(), latency={"stripe": Latency(latency * 1000, 0)}
    )
    # one client: the SDK keeps a connection per thread
    client = stripe_client(served.api_key, served.urls["stripe"])

    def one_request(_: int) -> str:
        return client.v1.subscriptions.retrieve("sub_1").id

    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        ids = list(pool.map(one_request, range(parallel)))
    took = time.perf_counter() - started
    assert ids == ["sub_1"] * parallel
    assert took < parallel * latency / 2  # one after another would take 15 s


# --------------------------------------------------------------------------- the command


def test_serve_flags_reach_the_servers(tmp_path):
    """`retention sandbox serve` with network flags: Recurly on a production site's window,
    Chargebee delayed, Stripe neither (per-system overrides)."""
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(one_subscription_per_system()))
    command = [
        sys.executable,
        "-c",
        "from sandbox.cli import sandbox; sandbox(prog_name='retention sandbox')",
        "serve",
        f"--scenario={scenario}",
        "--frozen",
        *[f"--{system}-port=0" for system in ("stripe", "recurly", "chargebee")],
        "--latency-ms=chargebee=200",
        "--rate-limits=off,recurly=live",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        urls = {}
        while len(urls) < 3:
            line = process.stdout.readline()
            assert line, "serve ended before printing its servers"
            if "http://" in line:
                name, url = line.split()[:2]
                urls[name] = url
        recurly = recurly_client(DEFAULT_API_KEY, urls["recurly"])
        assert recurly.get_subscription("rsub1").get_response().rate_limit == 5000
        chargebee = chargebee_client(DEFAULT_API_KEY, base_url=urls["chargebee"])
        started = time.perf_counter()
        chargebee.Subscription.retrieve("cb-sub-1")
        assert time.perf_counter() - started >= 0.2
        stripe_sdk = stripe_client(DEFAULT_API_KEY, urls["stripe"])
        for _ in range(40):  # past test mode's 25 a second: no limits on Stripe here
            stripe_sdk.v1.subscriptions.retrieve("sub_1")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_network_model_can_be_changed_on_a_running_server(serve_scenario):
    served = serve_scenario(one_subscription_per_system())
    server = served.servers["chargebee"]
    auth = {"Authorization": f"Bearer {served.api_key}", "Content-Type": "application/json"}

    def admin(body: dict) -> tuple[int, dict]:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        conn.request("POST", "/_sandbox/network", body=json.dumps(body), headers=auth)
        response = conn.getresponse()
        return response.status, json.loads(response.read())

    status, settings = admin({"latency_ms": 200, "rate_limits": "test"})
    assert status == 200 and settings["latency_ms"] == 200 and settings["rate_limits"] == "test"
    client = chargebee_client(served.api_key, base_url=served.urls["chargebee"])
    started = time.perf_counter()
    client.Subscription.retrieve("cb-sub-1")
    assert time.perf_counter() - started >= 0.2
    assert served.emulator("chargebee").rate_limits.take("k", "GET", "e").limit == 150
    assert admin({})[0] == 200
    assert served.emulator("chargebee").rate_limits is None
    status, refused = admin({"rate_limits": "live", "chargebee_plan": "gold"})
    assert status == 400 and "gold" in refused["error"]
