"""The sandbox's network model without a network: latency draws, the limiters' arithmetic
on a clock the test moves, each vendor's budgets, and the serve flags that build them."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from sandbox.cli import sandbox
from sandbox.network import (
    Budget,
    Latency,
    RateLimits,
    SlidingWindow,
    TokenBucket,
    per_system,
    stripe_key_mode,
    vendor_limits,
)

SYSTEMS = ("stripe", "recurly", "chargebee")


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def take_all(limiter, n: int) -> list[bool]:
    """n requests now: whether each was allowed (counted only when allowed)."""
    allowed = []
    for _ in range(n):
        verdict = limiter.check()
        if verdict.allowed:
            limiter.consume()
        allowed.append(verdict.allowed)
    return allowed


# --------------------------------------------------------------------------- latency


def test_latency_draws_stay_within_mean_plus_minus_jitter_and_repeat_for_a_seed():
    model = Latency(300, 100, seed=4)
    many = [model.draw() for _ in range(2000)]
    assert all(0.2 <= d <= 0.4 for d in many)
    assert min(many) < 0.21 and max(many) > 0.39  # uniform: the whole range is used
    assert abs(sum(many) / len(many) - 0.3) < 0.01
    again = Latency(300, 100, seed=4)
    assert [again.draw() for _ in range(5)] == many[:5]


def test_latency_never_goes_below_zero_and_zero_means_no_wait():
    assert all(Latency(10, 50, seed=1).draw() >= 0 for _ in range(500))
    assert Latency().draw() == 0.0
    with pytest.raises(ValueError, match="must be >= 0"):
        Latency(-5)


# --------------------------------------------------------------------------- limiters


def test_token_bucket_allows_one_seconds_burst_then_refills_at_its_rate(clock):
    bucket = TokenBucket(25, "global-rate", clock)
    assert take_all(bucket, 30) == [True] * 25 + [False] * 5
    refused = bucket.check()
    assert refused.reason == "global-rate" and refused.remaining == 0
    assert refused.reset_in == pytest.approx(1 / 25)
    clock.now += 1 / 25
    assert take_all(bucket, 2) == [True, False]  # refused requests took no token
    clock.now += 10
    assert bucket.check().remaining == 25  # never more than one second's worth


def test_token_bucket_steady_at_its_rate_is_never_refused(clock):
    bucket = TokenBucket(100, "global-rate", clock)
    for _ in range(1000):
        clock.now += 0.01
        assert take_all(bucket, 1) == [True]


def test_sliding_window_counts_the_last_window_not_a_calendar_one(clock):
    window = SlidingWindow(10, 300, "site-rate", clock)
    assert take_all(window, 6) == [True] * 6  # t = 0
    clock.now += 200
    assert take_all(window, 5) == [True] * 4 + [False]  # t = 200: 10 in the window
    refused = window.check()
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert refused.reset_in == pytest.approx(100)  # when the t=0 requests age out
    clock.now += 99
    assert take_all(window, 1) == [False]  # t=299: the t=0 requests still count
    clock.now += 1
    assert take_all(window, 7) == [True] * 6 + [False]  # the 6 of t=0 left; the 4 of t=200 stay
    clock.now += 200
    assert window.check().remaining == 4  # t=500: the 4 of t=200 gone, the 6 of t=300 stay


def test_an_empty_window_reports_its_full_length_to_reset(clock):
    verdict = SlidingWindow(5, 60, "site-rate", clock).check()
    assert (verdict.allowed, verdict.remaining, verdict.reset_in) == (True, 5, 60)
    assert verdict.retry_after_seconds() == 60
    assert verdict.reset_epoch(now=1_000_000.2) == 1_000_061


# --------------------------------------------------------------------------- budgets


def test_rate_limits_keep_each_api_key_apart(clock):
    limits = RateLimits(lambda _key: (Budget("site-rate", "window", 3, 60),), clock)
    first = [limits.take("key_a", "GET", "GET /x").allowed for _ in range(4)]
    second = [limits.take("key_b", "GET", "GET /x").allowed for _ in range(4)]
    assert first == second == [True, True, True, False]


def test_an_allowed_request_reports_the_tightest_budget_and_is_allowed(clock):
    limits = RateLimits(
        lambda _key: (
            Budget("global-rate", "bucket", 100, 1.0),
            Budget("endpoint-rate", "bucket", 25, 1.0, per_endpoint=True),
        ),
        clock,
    )
    verdict = limits.take("k", "GET", "GET /v1/invoices")
    assert verdict.allowed and (verdict.reason, verdict.remaining) == ("endpoint-rate", 24)


def test_stripe_mode_follows_the_key_prefix():
    assert stripe_key_mode("sk_live_abc", "test") == "live"
    assert stripe_key_mode("rk_live_abc", "test") == "live"
    assert stripe_key_mode("sk_test_abc", "live") == "test"
    assert stripe_key_mode("rk_test_abc", "live") == "test"
    assert stripe_key_mode("local_key", "live") == "live"
    assert stripe_key_mode(None, "test") == "test"


def test_stripe_live_limits_each_endpoint_to_25_and_the_account_to_100(clock):
    limits = vendor_limits("stripe", "live", clock=clock)
    invoices = [limits.take("sk_live_1", "GET", "GET /v1/invoices") for _ in range(26)]
    assert [v.allowed for v in invoices] == [True] * 25 + [False]
    assert invoices[-1].reason == "endpoint-rate"
    others = [
        limits.take("sk_live_1", "GET", f"GET /v1/endpoint{i % 4}").allowed for i in range(80)
    ]
    # 25 already counted globally (the refused 26th cost nothing): 75 more pass, then global
    assert others == [True] * 75 + [False] * 5
    assert limits.take("sk_live_1", "GET", "GET /v1/fresh").reason == "global-rate"


def test_stripe_test_keys_get_25_a_second_in_all(clock):
    limits = vendor_limits("stripe", "live", clock=clock)  # the key says test
    allowed = [limits.take("sk_test_1", "GET", f"GET /v1/e{i % 5}").allowed for i in range(30)]
    assert allowed == [True] * 25 + [False] * 5
    clock.now += 1
    assert limits.take("sk_test_1", "GET", "GET /v1/e0").allowed


def test_recurly_production_counts_gets_only_and_a_sandbox_site_counts_all(clock):
    live = vendor_limits("recurly", "live", clock=clock)
    first = live.take("k", "GET", "GET /accounts")
    assert (first.limit, first.remaining) == (5000, 4999)  # 1,000/min over 5 minutes
    assert live.take("k", "PUT", "PUT /subscriptions/x/cancel").remaining == 4999
    sandbox_site = vendor_limits("recurly", "test", clock=clock)
    sandbox_site.take("k", "PUT", "PUT /subscriptions/x/cancel")
    assert sandbox_site.take("k", "GET", "GET /accounts").remaining == 2000 - 2


def test_recurly_sandbox_site_refuses_past_2000_in_5_minutes_until_the_oldest_ages_out(clock):
    limits = vendor_limits("recurly", "test", clock=clock)
    for _ in range(2000):
        clock.now += 0.01
        assert limits.take("k", "GET", "GET /accounts").allowed
    refused = limits.take("k", "GET", "GET /accounts")
    assert not refused.allowed and refused.reset_in == pytest.approx(300 - 19.99, abs=0.02)
    clock.now += refused.reset_in
    assert limits.take("k", "GET", "GET /accounts").allowed


def test_chargebee_limits_by_plan_and_test_site(clock):
    def budget(mode, **plan):
        return vendor_limits("chargebee", mode, clock=clock, **plan).take("k", "GET", "e").limit

    assert budget("test") == 150
    assert budget("live") == 150  # starter, the default plan
    assert budget("live", chargebee_plan="performance") == 1000
    assert budget("live", chargebee_plan="enterprise") == 3500
    assert budget("test", chargebee_plan="enterprise") == 150  # a test site's limit is fixed
    with pytest.raises(ValueError, match="plan 'gold'"):
        vendor_limits("chargebee", "live", chargebee_plan="gold")


def test_chargebee_counts_the_past_60_seconds(clock):
    limits = vendor_limits("chargebee", "test", clock=clock)
    assert [limits.take("k", "GET", "e").allowed for _ in range(151)] == [True] * 150 + [False]
    refused = limits.take("k", "POST", "e")
    assert refused.retry_after_seconds() == 60
    clock.now += 60
    assert limits.take("k", "POST", "e").allowed


def test_off_means_no_limits_and_an_unknown_mode_is_named():
    assert vendor_limits("stripe", "off") is None
    with pytest.raises(ValueError, match="'fast'"):
        vendor_limits("recurly", "fast")


# --------------------------------------------------------------------------- flags


def test_per_system_values_with_overrides():
    assert per_system("300", SYSTEMS, "--latency-ms") == dict.fromkeys(SYSTEMS, "300")
    assert per_system("live,chargebee=test", SYSTEMS, "--rate-limits") == {
        "stripe": "live",
        "recurly": "live",
        "chargebee": "test",
    }
    assert per_system("stripe=300, recurly=200", SYSTEMS, "x") == {
        "stripe": "300",
        "recurly": "200",
    }
    with pytest.raises(ValueError, match="unknown billing system 'paypal'"):
        per_system("paypal=3", SYSTEMS, "--latency-ms")


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--rate-limits", "fast"], "'fast'"),
        (["--rate-limits", "paddle=live"], "'paddle'"),
        (["--latency-ms", "slow"], "--latency-ms"),
        (["--jitter-ms", "-5"], "must be >= 0"),
        (["--chargebee-plan", "gold"], "gold"),
    ],
)
def test_serve_refuses_bad_network_flags_naming_them(tmp_path, flags, named):
    scenario = tmp_path / "scenario.json"
    scenario.write_text("{}")
    result = CliRunner().invoke(sandbox, ["serve", "--scenario", str(scenario), *flags])
    assert result.exit_code == 2 and named in result.output
