"""The sandbox's network model: latency with jitter, and each vendor's rate limits per API key.

A local server answers in microseconds and never refuses; the real APIs answer a page in
hundreds of milliseconds and refuse past a published budget. A client tuned against the
bare sandbox (one request at a time, no pacing) looks fast here and crawls, or collects
429s, in production. This module lets the emulators behave like the real services:

- `Latency`: a delay drawn per API request (uniform in mean ± jitter), slept by the
  request's own server thread outside any store lock, so concurrent requests overlap as
  they do on a real network;
- `RateLimits`: the budgets each vendor documents, kept per API key presented (two keys
  have separate budgets), refusing with a `Verdict` the emulator renders as that vendor's
  429. Stripe: a token bucket per second, global and per endpoint, live or test mode by
  the key's prefix. Recurly: a sliding 5-minute window, sandbox or production site.
  Chargebee: a sliding 60-second window, test site or the live site's plan.

Every limiter takes an injectable monotonic clock so its arithmetic is tested without
waiting. The figures and their sources are in DECISIONLOG ("The sandbox's network model").
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

MonotonicClock = Callable[[], float]
_EPSILON = 1e-9  # float error in clock arithmetic, far below any clock's resolution
LIMIT_MODES = ("off", "test", "live")
Mode = Literal["test", "live"]
CHARGEBEE_PLANS = {"starter": 150, "performance": 1000, "enterprise": 3500}  # live, per minute
CHARGEBEE_TEST_SITE_PER_MINUTE = 150
DEFAULT_CHARGEBEE_PLAN = "starter"
STRIPE_GLOBAL_PER_SECOND = {"live": 100, "test": 25}
STRIPE_ENDPOINT_PER_SECOND = 25
STRIPE_KEY_MODES = {"sk_live_": "live", "rk_live_": "live", "sk_test_": "test", "rk_test_": "test"}
RECURLY_WINDOW_SECONDS = 300
RECURLY_PER_MINUTE = {"live": 1000, "test": 400}  # production site, sandbox site
CHARGEBEE_WINDOW_SECONDS = 60


# --------------------------------------------------------------------------- latency


@dataclass
class Latency:
    """Delay of one API request: uniform in [mean - jitter, mean + jitter] ms, never below 0.

    Uniform, not normal: its bounds are hard, so a test can say "every request took at
    least mean - jitter" and a bench's spread is what it was told."""

    mean_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.mean_ms < 0 or self.jitter_ms < 0:
            raise ValueError(f"latency {self.mean_ms} ms ± {self.jitter_ms} ms: both must be >= 0")
        self._rng = random.Random(self.seed)

    def draw(self) -> float:
        """Seconds this request waits."""
        if not self.mean_ms and not self.jitter_ms:
            return 0.0
        with self._lock:  # random.Random is not documented as thread-safe
            offset = self._rng.uniform(-self.jitter_ms, self.jitter_ms)
        return max(0.0, self.mean_ms + offset) / 1000

    def sleep(self) -> None:
        delay = self.draw()
        if delay:
            time.sleep(delay)


# --------------------------------------------------------------------------- limiters


@dataclass(frozen=True)
class Verdict:
    """One budget's answer to one request.

    `limit`: the budget's size in its own unit (requests a second for Stripe's buckets,
    requests a window for the sliding windows), as a vendor's headers state it;
    `remaining`: requests left now; `reset_in`: seconds until the budget frees a request
    (a refused client may try again then; for a window, when its oldest counted request
    ages out, the window's length when it is empty); `reason`: which budget answered."""

    allowed: bool
    limit: int
    remaining: int
    reset_in: float
    reason: str

    def reset_epoch(self, now: float | None = None) -> int:
        """`reset_in` as wall-clock epoch seconds, rounded up (a client sleeping until then
        finds the request allowed)."""
        return math.ceil((time.time() if now is None else now) + self.reset_in)

    def retry_after_seconds(self) -> int:
        """`reset_in` as the whole seconds a `Retry-After` header carries, at least 1."""
        return max(1, math.ceil(self.reset_in))


class Limiter(Protocol):
    """Not thread-safe on its own: `RateLimits` serialises check and consume."""

    def check(self) -> Verdict: ...  # what a request now would get, consuming nothing
    def consume(self) -> None: ...  # count one request


class TokenBucket:
    """`per_second` tokens a second, holding at most one second's worth (the burst): a
    refused request takes no token. Stripe describes its request rate limiter as a token
    bucket; a client steady at the rate is never refused."""

    def __init__(self, per_second: float, reason: str, clock: MonotonicClock = time.monotonic):
        if per_second <= 0:
            raise ValueError(f"a token bucket needs a rate above 0, not {per_second}")
        self.per_second, self.reason, self._clock = per_second, reason, clock
        self._tokens = float(per_second)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.per_second, self._tokens + (now - self._last) * self.per_second)
        self._last = now

    def check(self) -> Verdict:
        self._refill()
        allowed = self._tokens >= 1 - _EPSILON  # a client that waited reset_in gets in
        wait = 0.0 if allowed else (1 - self._tokens) / self.per_second
        return Verdict(allowed, int(self.per_second), int(self._tokens), wait, self.reason)

    def consume(self) -> None:
        self._tokens -= 1


class SlidingWindow:
    """At most `limit` requests in any `window` seconds: a log of the counted requests'
    times (memory: `limit` floats per key). Refused requests are not counted, so a
    client that backs off gets in as soon as the oldest counted request ages out."""

    def __init__(
        self, limit: int, window: float, reason: str, clock: MonotonicClock = time.monotonic
    ):
        if limit < 1 or window <= 0:
            raise ValueError(f"a sliding window needs limit >= 1 and window > 0: {limit}/{window}")
        self.limit, self.window, self.reason, self._clock = limit, window, reason, clock
        self._times: deque[float] = deque()

    def check(self) -> Verdict:
        now = self._clock()
        while self._times and self._times[0] <= now - self.window + _EPSILON:
            self._times.popleft()
        used = len(self._times)
        reset_in = self._times[0] + self.window - now if self._times else self.window
        return Verdict(used < self.limit, self.limit, self.limit - used, reset_in, self.reason)

    def consume(self) -> None:
        self._times.append(self._clock())


# --------------------------------------------------------------------------- budgets


@dataclass(frozen=True)
class Budget:
    """One documented budget: `limit` requests per `window` seconds, as a token bucket
    (rate = limit / window) or a sliding window; counted per endpoint or for the whole
    key; only `methods` count when given (Recurly production sites count GETs only)."""

    reason: str
    kind: Literal["bucket", "window"]
    limit: int
    window: float
    per_endpoint: bool = False
    methods: frozenset[str] | None = None

    def counts(self, method: str) -> bool:
        return self.methods is None or method in self.methods

    def new_limiter(self, clock: MonotonicClock) -> Limiter:
        if self.kind == "bucket":
            return TokenBucket(self.limit / self.window, self.reason, clock)
        return SlidingWindow(self.limit, self.window, self.reason, clock)


def stripe_key_mode(api_key: str | None, default: Mode) -> Mode:
    """Stripe's mode is the key's: sk_live_/rk_live_ live, sk_test_/rk_test_ test; a key
    with neither prefix (only a sandbox has one) gets the configured `default`."""
    for prefix, mode in STRIPE_KEY_MODES.items():
        if (api_key or "").startswith(prefix):
            return mode  # type: ignore[return-value]
    return default


def stripe_budgets(mode: Mode) -> tuple[Budget, ...]:
    """Stripe's rate limiter: the account's global rate, and 25 requests a second on each
    endpoint (a named operation: `GET /v1/invoices` apart from `GET /v1/invoices/{id}`)."""
    return (
        Budget("global-rate", "bucket", STRIPE_GLOBAL_PER_SECOND[mode], 1.0),
        Budget("endpoint-rate", "bucket", STRIPE_ENDPOINT_PER_SECOND, 1.0, per_endpoint=True),
    )


def recurly_budgets(mode: Mode) -> tuple[Budget, ...]:
    """Recurly: per-minute limits applied over a sliding 5-minute window; a sandbox site
    counts every request, a production site only GETs."""
    per_window = RECURLY_PER_MINUTE[mode] * RECURLY_WINDOW_SECONDS // 60
    methods = frozenset({"GET", "HEAD"}) if mode == "live" else None
    return (Budget("site-rate", "window", per_window, RECURLY_WINDOW_SECONDS, methods=methods),)


def chargebee_budgets(mode: Mode, plan: str = DEFAULT_CHARGEBEE_PLAN) -> tuple[Budget, ...]:
    """Chargebee: requests in the past 60 seconds, per the live site's plan or the test
    site's fixed limit."""
    if plan not in CHARGEBEE_PLANS:
        raise ValueError(f"Chargebee plan {plan!r}: use one of {', '.join(CHARGEBEE_PLANS)}")
    per_minute = CHARGEBEE_PLANS[plan] if mode == "live" else CHARGEBEE_TEST_SITE_PER_MINUTE
    return (Budget("site-rate", "window", per_minute, CHARGEBEE_WINDOW_SECONDS),)


class RateLimits:
    """The budgets one emulator enforces, kept apart per API key presented.

    `budgets(api_key)` names the budgets a key is held to (Stripe's depend on the key's
    mode). A request passes only if every budget it counts against has room; then it is
    counted in all of them, so a request refused by its endpoint's budget costs nothing
    from the global one."""

    def __init__(
        self,
        budgets: Callable[[str | None], Iterable[Budget]],
        clock: MonotonicClock = time.monotonic,
    ):
        self._budgets = budgets
        self._clock = clock
        self._limiters: dict[tuple[str | None, str, str | None], Limiter] = {}
        self._lock = threading.Lock()

    def take(self, api_key: str | None, method: str, endpoint: str) -> Verdict | None:
        """Count one request; the refusing budget's verdict, else the tightest one's
        (None when no budget applies)."""
        with self._lock:
            pairs = [
                (budget, self._limiter(api_key, budget, endpoint))
                for budget in self._budgets(api_key)
            ]
            verdicts = [(budget, limiter, limiter.check()) for budget, limiter in pairs]
            counted = [(b, lim, v) for b, lim, v in verdicts if b.counts(method)]
            refused = [v for _, _, v in counted if not v.allowed]
            if refused:
                return max(refused, key=lambda v: v.reset_in)
            for _, limiter, _ in counted:
                limiter.consume()
            after = [replace(limiter.check(), allowed=True) for _, limiter, _ in verdicts]
        return min(after, key=lambda v: v.remaining / v.limit) if after else None

    def _limiter(self, api_key: str | None, budget: Budget, endpoint: str) -> Limiter:
        key = (api_key, budget.reason, endpoint if budget.per_endpoint else None)
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = budget.new_limiter(self._clock)
        return limiter


def vendor_limits(
    system: str,
    mode: str,
    chargebee_plan: str = DEFAULT_CHARGEBEE_PLAN,
    clock: MonotonicClock = time.monotonic,
) -> RateLimits | None:
    """The documented limits of `system` in `mode` ("off", "test" or "live"); None = off.

    For Stripe the key decides as on the real API, `mode` only covers a key without a
    sk_/rk_ live/test prefix; for Recurly `mode` is the site (test = sandbox site, live =
    production site); for Chargebee test = a test site, live = a live site on
    `chargebee_plan`."""
    if mode not in LIMIT_MODES:
        raise ValueError(f"rate-limit mode {mode!r}: use one of {', '.join(LIMIT_MODES)}")
    if mode == "off":
        return None
    if system == "stripe":
        return RateLimits(lambda key: stripe_budgets(stripe_key_mode(key, mode)), clock)
    if system == "recurly":
        budgets = recurly_budgets(mode)  # type: ignore[arg-type]
    elif system == "chargebee":
        budgets = chargebee_budgets(mode, chargebee_plan)  # type: ignore[arg-type]
    else:
        raise ValueError(f"no rate limits known for {system!r}")
    return RateLimits(lambda _key: budgets, clock)


# --------------------------------------------------------------------------- options


def per_system(value: str, systems: Iterable[str], what: str) -> dict[str, str]:
    """`"300"` -> every system 300; `"live,chargebee=test"` -> every system live but
    Chargebee; `"stripe=300,recurly=200"` -> those two (the others get nothing). Raises
    ValueError naming a system it does not know."""
    systems = tuple(systems)
    result: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, sep, setting = part.partition("=")
        if not sep:
            result |= dict.fromkeys(systems, part)
        elif name.strip() in systems:
            result[name.strip()] = setting.strip()
        else:
            raise ValueError(
                f"{what}: unknown billing system {name.strip()!r} in {value!r}; "
                f"use {', '.join(systems)}"
            )
    return result
