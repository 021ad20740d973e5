"""Retries, Retry-After and each SDK's error classification, in milliseconds and without a
network: the errors are the SDKs' own classes, built in memory as each SDK builds them
from a response, and `sleep` records the waits instead of waiting."""

from __future__ import annotations

import http.client
import logging
import time

import httpx
import orjson
import pytest
import recurly
import stripe
from chargebee import APIError
from recurly.resource import Resource

from billing_clients import chargebee as chargebee_errors
from billing_clients import recurly as recurly_errors
from billing_clients import stripe as stripe_errors
from billing_clients.retries import Classifier, RetryPolicy, header_seconds, with_retries


class Flaky:
    """A call that raises the given errors in turn, then answers "ok"."""

    def __init__(self, *errors: BaseException):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class Transient(Exception):
    pass


class RateLimited(Exception):
    def __init__(self, wait: float):
        super().__init__(f"slow down for {wait}s")
        self.wait = wait


class Permanent(Exception):
    pass


TOY = Classifier(
    retry_after=lambda exc: exc.wait if isinstance(exc, RateLimited) else None,
    transient=lambda exc: isinstance(exc, Transient),
)


def policy(waits: list[float], **overrides) -> RetryPolicy:
    return RetryPolicy(sleep=waits.append, **overrides)


# --------------------------------------------------------------------------- with_retries


def test_a_call_that_answers_is_called_once_and_never_waits():
    waits: list[float] = []
    call = Flaky()
    assert with_retries(call, TOY, "list", policy(waits)) == "ok"
    assert (call.calls, waits) == (1, [])


def test_a_permanent_error_is_raised_as_itself_at_once():
    waits: list[float] = []
    call = Flaky(Permanent("404"))
    with pytest.raises(Permanent, match="404"):
        with_retries(call, TOY, "list", policy(waits))
    assert (call.calls, waits) == (1, [])


def test_a_permanent_error_after_transient_ones_is_raised_as_itself():
    waits: list[float] = []
    call = Flaky(Transient(), Permanent("400"))
    with pytest.raises(Permanent):
        with_retries(call, TOY, "list", policy(waits))
    assert (call.calls, len(waits)) == (2, 1)


def test_an_interrupt_is_never_retried():
    waits: list[float] = []
    call = Flaky(KeyboardInterrupt())
    always = Classifier(retry_after=lambda exc: None, transient=lambda exc: True)
    with pytest.raises(KeyboardInterrupt):
        with_retries(call, always, "list", policy(waits))
    assert call.calls == 1


def test_a_rate_limit_waits_what_the_api_asked_not_the_backoff():
    waits: list[float] = []
    call = Flaky(RateLimited(7), RateLimited(2.5))
    assert with_retries(call, TOY, "list", policy(waits, base_delay=0.001)) == "ok"
    assert waits == [7.0, 2.5]


@pytest.mark.parametrize(("asked", "waited"), [(600, 60.0), (-3, 0.0), (0, 0.0)])
def test_the_api_s_wait_is_kept_between_zero_and_max_delay(asked, waited):
    waits: list[float] = []
    with_retries(Flaky(RateLimited(asked)), TOY, "list", policy(waits, max_delay=60))
    assert waits == [waited]


def test_backoff_doubles_from_base_delay_with_jitter_and_stops_at_max_delay():
    waits: list[float] = []
    call = Flaky(*(Transient() for _ in range(6)))
    with_retries(call, TOY, "list", policy(waits, base_delay=1, max_delay=8))
    full = [1, 2, 4, 8, 8, 8]  # base_delay * 2**(attempt-1), capped
    assert len(waits) == len(full)
    for wait, ceiling in zip(waits, full, strict=True):
        assert ceiling / 2 <= wait <= ceiling  # jitter: 50-100% of the backoff


def test_jitter_spreads_the_waits_of_clients_failing_together():
    draws: list[float] = []
    for _ in range(20):
        with_retries(Flaky(Transient()), TOY, "list", policy(draws, base_delay=1))
    assert len(set(draws)) > 1


def test_giving_up_names_what_and_the_attempts_and_keeps_the_last_error_as_cause():
    waits: list[float] = []
    last = Transient("503 again")
    call = Flaky(Transient("503"), Transient("503"), last)
    with pytest.raises(RuntimeError) as raised:
        with_retries(call, TOY, "stripe GET /v1/customers", policy(waits, max_attempts=3))
    assert str(raised.value) == (
        "stripe GET /v1/customers: gave up after 3 attempts: Transient: 503 again"
    )
    assert raised.value.__cause__ is last
    assert (call.calls, len(waits)) == (3, 2)  # no wait after the last attempt


def test_one_attempt_means_no_retry():
    waits: list[float] = []
    with pytest.raises(RuntimeError, match="gave up after 1 attempts"):
        with_retries(Flaky(RateLimited(1)), TOY, "list", policy(waits, max_attempts=1))
    assert waits == []


def test_each_retry_is_logged_with_the_attempt_and_the_wait(caplog):
    waits: list[float] = []
    with caplog.at_level(logging.WARNING, "retention.extract"):
        with_retries(Flaky(RateLimited(3)), TOY, "chargebee customers", policy(waits))
    assert caplog.messages == ["chargebee customers: RateLimited (attempt 1/8), retrying in 3.0s"]


# --------------------------------------------------------------------------- header_seconds


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"X-RateLimit-Reset": "1000030"}, 30.0),  # epoch seconds, from `now`
        ({"Retry-After": "4", "X-RateLimit-Reset": "1000030"}, 4.0),  # Retry-After first
        ({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, None),  # a date: not read
        ({"Content-Type": "application/json"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_header_seconds_reads_retry_after_then_the_reset_time(headers, seconds):
    assert header_seconds(headers, now=1_000_000) == seconds


# --------------------------------------------------------------------------- Stripe


def test_stripe_a_429_with_retry_after_waits_that_long():
    exc = stripe.RateLimitError("Too many requests", http_status=429, headers={"Retry-After": "3"})
    assert stripe_errors.CLASSIFIER.retry_after(exc) == 3.0


def test_stripe_a_429_without_retry_after_is_backed_off():
    exc = stripe.RateLimitError("Too many requests", http_status=429, headers={})
    assert stripe_errors.CLASSIFIER.retry_after(exc) is None
    assert stripe_errors.CLASSIFIER.transient(exc)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (stripe.APIError("boom", http_status=500), True),
        (stripe.APIError("bad gateway", http_status=502), True),
        (stripe.APIConnectionError("connection reset"), True),
        (stripe.InvalidRequestError("No such customer", "id", http_status=404), False),
        (stripe.AuthenticationError("Invalid API key", http_status=401), False),
        (stripe.CardError("declined", "card", "card_declined", http_status=402), False),
        (ValueError("not the SDK's"), False),
    ],
)
def test_stripe_what_is_transient(exc, transient):
    assert stripe_errors.CLASSIFIER.retry_after(exc) is None
    assert stripe_errors.CLASSIFIER.transient(exc) is transient


# --------------------------------------------------------------------------- Chargebee


def chargebee_error(status: int, headers: dict | None = None) -> APIError:
    body = {"message": "Sorry, too many requests", "api_error_code": "api_request_limit_exceeded"}
    return APIError(status, body, headers)


def test_chargebee_a_429_waits_its_retry_after():
    exc = chargebee_error(429, {"Retry-After": "6"})
    assert chargebee_errors.CLASSIFIER.retry_after(exc) == 6.0


def test_chargebee_a_429_without_retry_after_is_backed_off():
    exc = chargebee_error(429, {})
    assert chargebee_errors.CLASSIFIER.retry_after(exc) is None
    assert chargebee_errors.CLASSIFIER.transient(exc)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (chargebee_error(500), True),
        (chargebee_error(503, {"Retry-After": "9"}), True),  # only a 429's header counts
        (chargebee_error(400), False),
        (chargebee_error(404), False),
        (httpx.ConnectError("connection refused"), True),
        (httpx.ReadTimeout("timed out"), True),
        # a gateway's HTML error page, as the SDK's map_plaintext_to_error raises it
        (Exception("Sorry, something went wrong. http_status_code: 502"), True),
        (Exception("Sorry, something went wrong. http_status_code: 404"), False),
        (ValueError("http_status_code: 502"), False),  # only the SDK's plain Exception
    ],
)
def test_chargebee_what_is_transient(exc, transient):
    assert chargebee_errors.CLASSIFIER.retry_after(exc) is None
    assert chargebee_errors.CLASSIFIER.transient(exc) is transient


# --------------------------------------------------------------------------- Recurly


class RawResponse:
    """What the SDK reads from http.client: status, headers, body."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]):
        self.status = status
        self.headers = http.client.HTTPMessage()
        for name, value in headers.items():
            self.headers[name] = value
        self._body = body

    def read(self) -> bytes:
        return self._body


def recurly_error(status: int, kind: str, headers: dict[str, str] | None = None):
    """The SDK's error for an error answer, built as `Resource.cast_error` builds it."""
    body = orjson.dumps({"error": {"type": kind, "message": kind.replace("_", " ")}})
    raw = RawResponse(
        status,
        body,
        {"Content-Type": "application/json", "X-Request-Id": "req-1", **(headers or {})},
    )
    return Resource.cast_error(recurly.Response(raw, recurly.Request("GET", "/accounts")))


def test_recurly_a_429_waits_until_the_window_resets():
    reset = int(time.time()) + 30
    exc = recurly_error(429, "rate_limited", {"X-RateLimit-Reset": str(reset)})
    assert isinstance(exc, recurly.errors.TooManyRequestsError)
    assert 28 <= recurly_errors.CLASSIFIER.retry_after(exc) <= 30


def test_recurly_a_429_honours_a_retry_after_too():
    exc = recurly_error(429, "rate_limited", {"Retry-After": "5"})
    assert recurly_errors.CLASSIFIER.retry_after(exc) == 5.0


def test_recurly_a_429_naming_no_reset_is_backed_off():
    exc = recurly_error(429, "rate_limited")
    assert recurly_errors.CLASSIFIER.retry_after(exc) is None
    assert recurly_errors.CLASSIFIER.transient(exc)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (recurly_error(500, "internal_server_error"), True),
        (recurly_error(503, "service_unavailable"), True),
        (recurly.NetworkError("connection reset"), True),
        (recurly_error(404, "not_found"), False),
        (recurly_error(422, "validation"), False),
        (recurly_error(409, "simultaneous_request"), False),  # the writer's rule, not this
    ],
)
def test_recurly_what_is_transient(exc, transient):
    assert recurly_errors.CLASSIFIER.retry_after(exc) is None
    assert recurly_errors.CLASSIFIER.transient(exc) is transient


def test_a_recurly_rate_limit_then_a_5xx_are_retried_through_with_retries():
    waits: list[float] = []
    call = Flaky(
        recurly_error(429, "rate_limited", {"Retry-After": "4"}),
        recurly_error(502, "bad_gateway"),
    )
    policy_ = policy(waits, base_delay=0.25)
    assert with_retries(call, recurly_errors.CLASSIFIER, "recurly accounts", policy_) == "ok"
    assert waits[0] == 4.0 and 0.25 <= waits[1] <= 0.5  # attempt 2: 0.25 * 2, jittered
