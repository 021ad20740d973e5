"""The token bucket and `shared_bucket`: rate, burst, sharing by key, the vendors' defaults
per mode, headroom, explicit overrides, thread safety. A fake clock: no test sleeps."""

from __future__ import annotations

import gc
import importlib
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from billing_clients import pacing
from billing_clients.pacing import LIMITS, Limit, RateLimiter, TokenBucket, shared_bucket
from billing_clients.targets import SANDBOX_API_KEY, TargetError
from tests.writeback_scenario import COUPON, SYSTEMS, scenario, subscription_id
from writebacks.systems import WRITERS, writer_for
from writebacks.systems.base import Action

LIVE_KEY = "sk_live_" + "S3cr3t" * 10


class FakeClock:
    """Time that moves only when a waiter sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def fresh_buckets() -> Iterator[None]:
    """Each test starts with no shared bucket in the process."""
    saved = dict(pacing._BUCKETS)
    pacing._BUCKETS.clear()
    yield
    pacing._BUCKETS.clear()
    pacing._BUCKETS.update(saved)


def send_times(bucket: TokenBucket, clock: FakeClock, n: int) -> list[float]:
    """When each of `n` requests paced by `bucket` goes out, one caller after another."""
    times = []
    for _ in range(n):
        bucket.wait()
        times.append(clock.now)
    return times


def most_in_window(times: list[float], window: float) -> int:
    """The most of `times` inside any closed span of `window` seconds."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] > window + 1e-9:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# --------------------------------------------------------------------------- the bucket


def test_rate_after_the_burst(clock):
    bucket = TokenBucket(10, 1, clock=clock, sleep=clock.sleep)
    times = send_times(bucket, clock, 21)
    assert times[0] == 1000.0
    assert times[-1] == pytest.approx(1002.0)  # 20 intervals of 0.1 s
    assert most_in_window(times, 1.0) == 11


def test_burst_goes_out_at_once_then_the_rate(clock):
    bucket = TokenBucket(2, 5, clock=clock, sleep=clock.sleep)
    times = send_times(bucket, clock, 7)
    assert times[:5] == [1000.0] * 5
    assert times[5:] == pytest.approx([1000.5, 1001.0])


def test_an_idle_bucket_refills_up_to_its_burst_only(clock):
    bucket = TokenBucket(1, 3, clock=clock, sleep=clock.sleep)
    send_times(bucket, clock, 3)
    clock.now += 3600  # idle an hour
    times = send_times(bucket, clock, 5)
    assert times[:3] == [times[0]] * 3  # the burst again, not an hour's worth
    assert times[3] == pytest.approx(times[0] + 1) and times[4] == pytest.approx(times[0] + 2)


@pytest.mark.parametrize("rate", [None, 0])
def test_no_rate_never_waits(clock, rate):
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep)
    send_times(bucket, clock, 1000)
    assert clock.slept == [] and not bucket.paced


def test_bad_rate_or_burst_is_refused():
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(5, 0.5)
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(-1)


def test_rate_limiter_compat_paces_without_burst(clock):
    limiter = RateLimiter(4)
    limiter.clock, limiter.sleep = clock, clock.sleep
    limiter._next = clock.now
    times = send_times(limiter, clock, 3)
    assert times == pytest.approx([1000.0, 1000.25, 1000.5])
    assert not RateLimiter(None).paced


def in_threads(n: int, work: Callable[[int], None]) -> None:
    """Run `work(i)` in `n` threads started together, switching between them as often as
    the interpreter allows; fail if one has not finished in 30 s (a deadlock)."""
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        work(i)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        sys.setswitchinterval(interval)
    assert not any(thread.is_alive() for thread in threads)


def test_threads_share_one_bucket_without_exceeding_it():
    """N threads waiting at once: their reserved slots obey rate and burst exactly (the
    clock stands still, so every slot is a reservation, and a lost update would show as
    two requests in one slot)."""
    clock = FakeClock()
    slots: list[float] = []
    bucket = TokenBucket(50, 5, clock=clock, sleep=lambda s: None)

    def work(_: int) -> None:
        for _ in range(200):
            slots.append(clock.now + bucket.reserve())  # list.append is atomic

    in_threads(8, work)
    assert len(slots) == 1600
    assert most_in_window(slots, 1.0) <= 5 + 50
    slots.sort()
    assert slots[-1] == pytest.approx(1000.0 + (1600 - 5) / 50)  # none lost, none doubled


def test_threads_on_endpoints_and_their_key_keep_every_bound():
    """Threads on two endpoint buckets and on their key's bucket at once: no deadlock,
    each endpoint within its bound, all together within the key's."""
    clock = FakeClock()
    key_bucket = TokenBucket(50, 5, clock=clock, sleep=lambda s: None)
    endpoints = [TokenBucket(10, 1, parent=key_bucket, clock=clock) for _ in range(2)]
    slots: dict[int, list[float]] = {i: [] for i in range(3)}

    def work(i: int) -> None:
        bucket = endpoints[i % 3] if i % 3 < 2 else key_bucket
        for _ in range(150):
            slots[i % 3].append(clock.now + bucket.reserve())

    in_threads(9, work)
    assert sum(map(len, slots.values())) == 1350
    assert most_in_window(slots[0], 1.0) <= 11 and most_in_window(slots[1], 1.0) <= 11
    assert most_in_window([t for ts in slots.values() for t in ts], 1.0) <= 55


# --------------------------------------------------------------------------- windows


@pytest.mark.parametrize(
    ("system", "mode"),
    [(system, mode) for system, modes in LIMITS.items() for mode in modes],
)
def test_default_pace_never_exceeds_the_vendors_window(clock, system, mode):
    """A client at full speed through the default bucket stays within the budget in any
    sliding window of the vendor's length, including its first burst."""
    limit = LIMITS[system][mode]
    rate, burst = limit.pace(0.1)
    bucket = TokenBucket(rate, burst, clock=clock, sleep=clock.sleep)
    n = int(limit.requests * 3)  # three windows' worth
    times = send_times(bucket, clock, n)
    assert most_in_window(times, limit.window) <= limit.requests * 0.9
    # and it is not needlessly slow: at least 95% of the budget in steady state
    steady = (n - 1 - (burst - 1)) / (times[-1] - times[0])
    assert steady >= 0.95 * 0.9 * limit.requests / limit.window


def test_recurly_burst_is_small_against_its_five_minute_window():
    rate, burst = LIMITS["recurly"]["production"].pace(0.1)
    assert burst == pytest.approx(90) and rate * 300 + burst == pytest.approx(4500)


def test_limit_pace_headroom_zero_uses_the_whole_limit():
    rate, burst = Limit(100, 1.0).pace(0.0)
    assert rate + burst == pytest.approx(100)


# --------------------------------------------------------------------------- shared_bucket


def test_same_system_and_key_share_one_bucket():
    first = shared_bucket("stripe", LIVE_KEY, settings={})
    assert shared_bucket("stripe", LIVE_KEY, settings={}) is first
    assert shared_bucket("stripe", LIVE_KEY + "x", settings={}) is not first
    assert shared_bucket("recurly", LIVE_KEY, settings={}) is not first


def test_the_key_is_never_kept():
    bucket = shared_bucket("stripe", LIVE_KEY, settings={})
    gc.collect()
    held = [repr(vars(bucket)), repr(list(pacing._BUCKETS)), bucket.describe(), bucket.name]
    assert not any("S3cr3t" in text for text in held)
    assert all(LIVE_KEY not in str(k) for k in pacing._BUCKETS)


@pytest.mark.parametrize(
    ("key", "limit"),
    [("sk_live_a", 100), ("rk_live_a", 100), ("sk_test_a", 25), ("rk_test_a", 25)],
)
def test_stripe_mode_from_the_key_prefix(key, limit):
    bucket = shared_bucket("stripe", key, settings={})
    assert bucket.rate + bucket.burst == pytest.approx(limit * 0.9)


def test_stripe_unknown_prefix_takes_the_lower_test_limit():
    bucket = shared_bucket("stripe", "whatever", settings={})
    assert bucket.rate + bucket.burst == pytest.approx(25 * 0.9)


@pytest.mark.parametrize(
    ("settings", "per_minute"),
    [({}, 1000), ({"SOURCES__RECURLY__SITE_MODE": "Sandbox"}, 400)],
)
def test_recurly_mode_is_a_setting(settings, per_minute):
    bucket = shared_bucket("recurly", "key", settings=settings)
    assert bucket.rate * 300 + bucket.burst == pytest.approx(per_minute * 5 * 0.9)


@pytest.mark.parametrize(
    ("plan", "per_minute"),
    [(None, 150), ("starter", 150), ("performance", 1000), ("enterprise", 3500), ("test", 150)],
)
def test_chargebee_limit_is_the_plans(plan, per_minute):
    settings = {"SOURCES__CHARGEBEE__PLAN": plan} if plan else {}
    bucket = shared_bucket("chargebee", "key", settings=settings)
    assert bucket.rate * 60 + bucket.burst == pytest.approx(per_minute * 0.9)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"SOURCES__CHARGEBEE__PLAN": "gold"}, "SOURCES__CHARGEBEE__PLAN=gold: choose one of"),
        ({"SOURCES__CHARGEBEE__RATE_HEADROOM": "1"}, "SOURCES__CHARGEBEE__RATE_HEADROOM=1"),
        ({"SOURCES__CHARGEBEE__RATE_HEADROOM": "lots"}, "RATE_HEADROOM=lots"),
        ({"SOURCES__CHARGEBEE__RATE_HEADROOM": "0.995"}, "no steady rate"),
        ({"SOURCES__CHARGEBEE__REQUESTS_PER_SECOND": "fast"}, "REQUESTS_PER_SECOND=fast"),
    ],
)
def test_bad_settings_name_the_variable(settings, message):
    with pytest.raises(TargetError, match=message):
        shared_bucket("chargebee", "key", settings=settings)


def test_unknown_system_is_refused():
    with pytest.raises(ValueError, match="no published rate limit for 'paddle'"):
        shared_bucket("paddle", "key", settings={})


def test_headroom_from_the_argument_then_the_setting_then_the_default():
    setting = {"SOURCES__STRIPE__RATE_HEADROOM": "0.3"}
    assert sum(_pace(shared_bucket("stripe", "sk_live_1", settings={}))) == pytest.approx(90)
    assert sum(_pace(shared_bucket("stripe", "sk_live_2", settings=setting))) == pytest.approx(70)
    given = shared_bucket("stripe", "sk_live_3", headroom=0.5, settings=setting)
    assert sum(_pace(given)) == pytest.approx(50)
    none_kept = shared_bucket("stripe", "sk_live_4", headroom=0, settings=setting)
    assert sum(_pace(none_kept)) == pytest.approx(100)


def _pace(bucket: TokenBucket) -> tuple[float, float]:
    return bucket.rate, bucket.burst


def test_explicit_requests_per_second_wins():
    setting = {
        "SOURCES__STRIPE__REQUESTS_PER_SECOND": "40",
        "SOURCES__STRIPE__RATE_HEADROOM": "0.5",
    }
    assert _pace(shared_bucket("stripe", "sk_live_1", 7.5, headroom=0.2, settings=setting)) == (
        7.5,
        1.0,
    )
    assert _pace(shared_bucket("stripe", "sk_live_2", settings=setting)) == (40.0, 1.0)


@pytest.mark.parametrize("per_second", [None, 0, "0"])
def test_no_pacing_asked_gives_a_bucket_that_never_waits(per_second):
    bucket = shared_bucket("stripe", LIVE_KEY, per_second, settings={})
    assert not bucket.paced and not pacing._BUCKETS


def test_asking_again_with_another_pace_changes_the_shared_one():
    first = shared_bucket("stripe", LIVE_KEY, settings={})
    again = shared_bucket("stripe", LIVE_KEY, 10, settings={})
    assert again is first and _pace(first) == (10.0, 1.0)


def test_settings_come_from_dlt_providers(monkeypatch):
    monkeypatch.setenv("SOURCES__RECURLY__SITE_MODE", "sandbox")
    monkeypatch.setenv("SOURCES__RECURLY__RATE_HEADROOM", "0.2")
    bucket = shared_bucket("recurly", "key")
    assert bucket.rate * 300 + bucket.burst == pytest.approx(2000 * 0.8)


# --------------------------------------------------------------------------- endpoints


def test_stripe_live_endpoint_bucket_under_the_keys(clock):
    key_bucket = shared_bucket("stripe", LIVE_KEY, settings={})
    invoices = shared_bucket("stripe", LIVE_KEY, endpoint="GET /v1/invoices", settings={})
    assert invoices is not key_bucket and invoices.parent is key_bucket
    assert invoices.rate + invoices.burst == pytest.approx(25)  # no headroom: other endpoints
    assert shared_bucket("stripe", LIVE_KEY, endpoint="GET /v1/invoices", settings={}) is invoices
    other = shared_bucket("stripe", LIVE_KEY, endpoint="GET /v1/customers", settings={})
    assert other is not invoices and other.parent is key_bucket


@pytest.mark.parametrize(
    ("key", "options"),
    [("sk_test_1", {}), (LIVE_KEY, {"per_second": 50}), ("k", {})],
)
def test_no_endpoint_bucket_where_the_keys_pace_binds_or_was_given(key, options):
    system = "recurly" if key == "k" else "stripe"
    key_bucket = shared_bucket(system, key, settings={}, **options)
    assert shared_bucket(system, key, endpoint="GET /x", settings={}, **options) is key_bucket


def test_endpoints_and_the_key_each_keep_their_bound(clock):
    """Three endpoints at full speed and direct use of the key's bucket, interleaved: each
    endpoint stays within 25 a second and all of them together within the key's 90."""
    key_bucket = TokenBucket(88.2, 1.8, clock=clock, sleep=clock.sleep)
    endpoints = [
        TokenBucket(24, 1, parent=key_bucket, clock=clock, sleep=clock.sleep) for _ in range(3)
    ]
    sent: dict[int, list[float]] = {i: [] for i in range(4)}
    pending = {i: clock.now for i in range(4)}  # each caller's next free moment
    for _ in range(2000):  # the caller free first goes next (a closed-loop client each)
        i = min(pending, key=pending.get)
        clock.now = max(clock.now, pending[i])
        bucket = endpoints[i] if i < 3 else key_bucket
        clock.now += bucket.reserve()
        sent[i].append(clock.now)
        pending[i] = clock.now
    assert all(most_in_window(sent[i], 1.0) <= 25 for i in range(3))
    assert most_in_window([t for ts in sent.values() for t in ts], 1.0) <= 90
    assert most_in_window(sent[3], 1.0) >= 10  # the key's own users are not starved


# --------------------------------------------------------------------------- write-backs


class CountingBucket(TokenBucket):
    """Counts the tokens taken; never waits."""

    def __init__(self) -> None:
        super().__init__(None, name="counting")
        self.taken = 0

    def wait(self) -> None:
        self.taken += 1


@pytest.mark.parametrize("system", SYSTEMS)
def test_every_request_of_a_writer_waits_on_its_bucket(serve_scenario, system):
    """Against the sandbox: a read (three requests on Recurly) and a discount sent take one
    token per HTTP request the server saw."""
    sandbox = serve_scenario(scenario((system,)), systems=(system,))
    module, name = WRITERS[system]
    writer = getattr(importlib.import_module(module), name)(SANDBOX_API_KEY, sandbox.urls[system])
    writer.pacing = bucket = CountingBucket()
    subscription = subscription_id(system, "live")
    action = Action("a1", system, subscription, None, "discount", {"coupon": COUPON})
    current = writer.read(subscription)
    writer.send(writer.request(action, current), "a1-key")
    assert bucket.taken == len(sandbox.emulator(system).request_log) >= 2


def test_writer_for_paces_a_live_key_with_the_shared_bucket():
    live = {"SOURCES__STRIPE__ENVIRONMENT": "live", "SOURCES__STRIPE__API_KEY": LIVE_KEY}
    writer = writer_for("stripe", live)
    assert writer.pacing is shared_bucket("stripe", LIVE_KEY, settings=live)
    assert writer.pacing.rate + writer.pacing.burst == pytest.approx(90)
    assert not writer_for("stripe", {}).pacing.paced  # the local sandbox
