"""Client-side pacing: one token bucket per (billing system, API key) in the process.

Every request a process sends with one key (every resource and worker of a source, and
the write-backs) waits on the same bucket, so together they stay under the vendor's
published limit for that key instead of collecting 429s. `shared_bucket` is the one way
to get one.

Defaults are the vendors' published limits for the key's mode (`LIMITS`), less a share
kept for the cancel page's writes (the headroom, a setting per system). Each limit is
counted over the vendor's own window (Stripe a second, Recurly a sliding 5 minutes,
Chargebee a minute); the bucket's rate and burst are chosen so that no client pacing
through it, however steady or bursty, sends more than the budget in any such window
(`Limit.pace`). Where a vendor also limits each endpoint (Stripe: 25 a second), a caller
naming its endpoint gets a bucket for it that takes from the key's too. An explicit
`requests_per_second` (argument or setting) wins over all of it.

The key itself is never kept: buckets are found by a keyed hash of it, with a salt drawn
per process.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from billing_clients.targets import DltSettings, Settings, TargetError, variable

log = logging.getLogger("retention.pacing")

DEFAULT_HEADROOM = 0.1
# The burst is this share of a window's budget (at least one request). Each request of
# burst costs one request of the window's steady budget (see `Limit.pace`): 2% keeps the
# steady rate at 98% of the budget while a run's first requests go out at once.
BURST_SHARE = 0.02


@dataclass(frozen=True)
class Limit:
    """A vendor's published limit: `requests` per `window` seconds, counted over a sliding
    window (the strictest reading of a "per second"/"per minute" limit)."""

    requests: int
    window: float

    def pace(self, headroom: float) -> tuple[float, float]:
        """(rate per second, burst) of a token bucket that never exceeds this limit less
        `headroom` in any window.

        A token bucket of rate r and burst b grants at most b + r*W requests in any span
        of W seconds (b at once, then r a second). With W the vendor's window and the
        budget B = requests * (1 - headroom): b = max(1, BURST_SHARE * B) and
        r = (B - b) / W, so b + r*W = B exactly. For Recurly's 5-minute window a burst of
        a minute's budget would be allowed by the vendor but would cost the rate as much;
        a small burst keeps the steady rate near the budget."""
        budget = self.requests * (1.0 - headroom)
        burst = max(1.0, BURST_SHARE * budget)
        return (budget - burst) / self.window, burst


# The published limits, per system and mode. Sources, as of 2026-12:
# - Stripe, docs.stripe.com/rate-limits: live mode 100 operations a second (older
#   editions: 100 reads and 100 writes), test mode (sandboxes) 25; the mode is the key's
#   prefix. Reads and writes share one bucket here: the write-backs' writes are few.
# - Recurly, support.recurly.com "What are Recurly's API rate limits": production sites
#   1,000 requests a minute (GET only), sandbox sites 400 a minute (every request),
#   "calculated over a sliding 5-minute window": 5,000 and 2,000 per 300 s.
# - Chargebee, chargebee.com/docs "What are the Chargebee API limits": per plan, a
#   minute: Starter 150, Performance 1,000, Enterprise 3,500; test sites 150.
LIMITS: dict[str, dict[str, Limit]] = {
    "stripe": {"live": Limit(100, 1.0), "test": Limit(25, 1.0)},
    "recurly": {"production": Limit(5000, 300.0), "sandbox": Limit(2000, 300.0)},
    "chargebee": {
        "starter": Limit(150, 60.0),
        "performance": Limit(1000, 60.0),
        "enterprise": Limit(3500, 60.0),
        "test": Limit(150, 60.0),
    },
}
# Limits on each endpoint (a named operation: `GET /v1/invoices` apart from
# `GET /v1/invoices/{id}`) besides the key's. Stripe, docs.stripe.com/rate-limits: "API
# endpoints have a default limit of 25 requests per second", in either mode (so it binds
# in live mode only, below the key's 100).
ENDPOINT_LIMITS: dict[str, Limit] = {"stripe": Limit(25, 1.0)}
# Where a system's mode comes from when its key does not say: (setting, default).
# Recurly's keys do not tell a sandbox site from a production one; Chargebee's limit is
# the site's plan. The defaults: Recurly's production (a sandbox site answers the excess
# with 429 and X-RateLimit-Reset, which the retries honour); Chargebee's Starter, the
# lowest plan and a test site's limit, so a default never exceeds a site's limit.
MODE_SETTINGS = {"recurly": ("site_mode", "production"), "chargebee": ("plan", "starter")}
STRIPE_PREFIXES = {"sk_live_": "live", "rk_live_": "live", "sk_test_": "test", "rk_test_": "test"}


class TokenBucket:
    """A thread-safe token bucket: `rate` tokens a second, holding at most `burst`.

    `wait()` takes a token, sleeping until one is free. A waiter reserves its slot under
    the lock and sleeps outside it, so concurrent waiters queue in order without holding
    each other up (the virtual-scheduling form of the bucket: `_next` is when the next
    token would be free if none were saved). `rate` None or 0: no pacing.

    A bucket with a `parent` (an endpoint's, under its key's) takes a token from both for
    one slot, the first at which both have one, holding both locks (the child's first):
    each bucket sees exactly the times requests go out, so each one's bound holds.
    `clock` and `sleep` are replaceable so tests wait for nothing."""

    def __init__(
        self,
        rate: float | None,
        burst: float = 1.0,
        *,
        name: str = "",
        parent: TokenBucket | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name, self.parent, self.clock, self.sleep = name, parent, clock, sleep
        self._lock = threading.Lock()
        self._next = clock()
        self.rate, self.burst = 0.0, 1.0
        self.configure(rate, burst)

    def configure(self, rate: float | None, burst: float = 1.0) -> None:
        """Change the pace in place; tokens already promised stay promised."""
        if (rate is not None and rate < 0) or burst < 1:
            raise ValueError(
                f"{self.name or 'bucket'}: rate {rate} and burst {burst}: "
                "a rate needs to be >= 0 and a burst >= 1"
            )
        with self._lock:
            self.rate, self.burst = float(rate or 0.0), float(burst)

    @property
    def paced(self) -> bool:
        return self.rate > 0

    def reserve(self) -> float:
        """Take the next token (of this bucket and its parent); the seconds until it is
        free (0 when one is free now)."""
        chain = [b for b in (self, self.parent) if b is not None and b.paced]
        if not chain:
            return 0.0
        with ExitStack() as locks:
            for bucket in chain:
                locks.enter_context(bucket._lock)
            now = self.clock()
            slot = max(now, *(bucket._free_at() for bucket in chain))
            for bucket in chain:
                bucket._next = max(bucket._next, slot) + 1.0 / bucket.rate
        return slot - now

    def _free_at(self) -> float:
        """When this bucket next has a token (the caller holds the lock)."""
        return self._next - (self.burst - 1.0) / self.rate

    def wait(self) -> None:
        """Block until a token is free, and take it."""
        delay = self.reserve()
        if delay > 0:
            self.sleep(delay)

    def describe(self) -> str:
        if not self.paced:
            return f"{self.name}: not paced"
        return f"{self.name}: {self.rate:.3g} requests/s, burst {self.burst:.3g}"


class RateLimiter(TokenBucket):
    """A private bucket of `per_second` without burst, as the old `RateLimiter` paced: for
    code not yet on `shared_bucket`, and tests that want none (None)."""

    def __init__(self, per_second: float | None) -> None:
        super().__init__(per_second, 1.0, name="rate limiter")


_BUCKETS: dict[tuple[str, str, str | None], TokenBucket] = {}
_BUCKETS_LOCK = threading.Lock()
_SALT = os.urandom(16)  # a fingerprint means nothing outside this process


def fingerprint(system: str, api_key: str) -> str:
    """What a bucket is found by: a keyed hash of the key, never the key."""
    digest = hashlib.blake2b(api_key.encode(), key=_SALT, person=system.encode()[:16])
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class _Pace:
    rate: float | None
    burst: float
    why: str
    published: bool  # from the vendor's table (not a number someone gave)


def shared_bucket(
    system: str,
    api_key: str,
    per_second: float | str | None = "auto",
    headroom: float | None = None,
    *,
    endpoint: str | None = None,
    settings: Settings | None = None,
) -> TokenBucket:
    """The process's bucket for `system` and `api_key`; `.wait()` before each request.

    `per_second`: "auto" (the default) paces at the setting
    `SOURCES__<SYSTEM>__REQUESTS_PER_SECOND` when set, else at the vendor's published
    limit for the key's mode less `headroom` (None: the setting
    `SOURCES__<SYSTEM>__RATE_HEADROOM`, else 0.1); a number paces at exactly that many
    requests a second (burst 1); None or 0 returns a bucket that never waits (the local
    sandbox). Asked again for the same key with another pace, the bucket takes the new one
    (logged): all users of a key share one pace. `settings`: dlt's providers unless
    given.

    `endpoint` (the named operation, e.g. "GET /v1/invoices"): where the vendor also
    limits each endpoint below the key's pace (`ENDPOINT_LIMITS`: Stripe live mode), a
    bucket of that endpoint's limit that also takes from the key's bucket; else the key's
    bucket itself."""
    pace = _pace(system, api_key, per_second, headroom, settings)
    if not pace.rate:
        return TokenBucket(None, name=f"{system} (not paced)")
    owner = fingerprint(system, api_key)
    bucket = _registered((system, owner, None), pace.rate, pace.burst, pace.why)
    limit = ENDPOINT_LIMITS.get(system)
    if endpoint is None or limit is None or not pace.published:
        return bucket
    rate, burst = limit.pace(0.0)  # the cancel page's writes are other endpoints
    if rate >= bucket.rate:  # the key's pace binds first
        return bucket
    why = f"{limit.requests} per {limit.window:g}s published for each endpoint"
    return _registered((system, owner, endpoint), rate, burst, why, parent=bucket)


def _registered(
    key: tuple[str, str, str | None],
    rate: float,
    burst: float,
    why: str,
    parent: TokenBucket | None = None,
) -> TokenBucket:
    """The bucket registered under `key`, made or re-paced to `rate` and `burst`."""
    name = " ".join(part for part in (key[0], key[2]) if part)
    with _BUCKETS_LOCK:
        bucket = _BUCKETS.get(key)
        if bucket is None:
            bucket = _BUCKETS[key] = TokenBucket(rate, burst, name=name, parent=parent)
            log.info("%s (%s)", bucket.describe(), why)
            return bucket
    if (bucket.rate, bucket.burst) != (rate, burst):
        was = bucket.describe()
        bucket.configure(rate, burst)
        log.warning("%s (%s), was %s", bucket.describe(), why, was)
    return bucket


def _pace(
    system: str,
    api_key: str,
    per_second: float | str | None,
    headroom: float | None,
    settings: Settings | None,
) -> _Pace:
    """The key's pace for `shared_bucket`'s arguments."""
    if system not in LIMITS:
        raise ValueError(f"no published rate limit for {system!r}: one of {', '.join(LIMITS)}")
    if per_second != "auto":
        rate = _number(per_second, f"{system} requests_per_second")
        return _Pace(rate, 1.0, "requests_per_second given", published=False)
    settings = DltSettings() if settings is None else settings
    name = variable(system, "requests_per_second")
    if (value := settings.get(name)) not in (None, ""):
        return _Pace(_number(value, name), 1.0, name, published=False)
    mode, limit = _limit(system, api_key, settings)
    share = _headroom(system, headroom, settings)
    rate, burst = limit.pace(share)
    if rate <= 0:
        raise TargetError(
            f"{variable(system, 'rate_headroom')}={share}: leaves {system}'s "
            f"{mode} no steady rate; lower it"
        )
    why = (
        f"{mode}: {limit.requests} per {limit.window:g}s published, "
        f"{share:.0%} kept for the cancel page's writes"
    )
    return _Pace(rate, burst, why, published=True)


def _number(value: object, name: str) -> float | None:
    """A pace given as a number (None and 0: no pacing)."""
    if value is None or str(value).strip().lower() in ("", "none", "0", "0.0"):
        return None
    try:
        rate = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        rate = math.nan
    if not rate >= 0 or math.isinf(rate):
        raise TargetError(
            f"{name}={value}: give requests a second as a number >= 0 "
            "(0 or none: no pacing), or auto"
        )
    return rate


def _limit(system: str, api_key: str, settings: Settings) -> tuple[str, Limit]:
    """The key's mode and its published limit."""
    limits = LIMITS[system]
    if system == "stripe":
        mode = next((m for p, m in STRIPE_PREFIXES.items() if api_key.startswith(p)), None)
        if mode is None:
            log.warning(
                "stripe: a key with none of the prefixes %s: paced at test mode's limit",
                ", ".join(STRIPE_PREFIXES),
            )
            mode = "test"
        return f"{mode} mode", limits[mode]
    setting, default = MODE_SETTINGS[system]
    name = variable(system, setting)
    mode = (settings.get(name) or default).strip().lower()
    if mode not in limits:
        raise TargetError(f"{name}={mode}: choose one of {', '.join(limits)}")
    return f"{setting.replace('_', ' ')} {mode}", limits[mode]


def _headroom(system: str, headroom: float | None, settings: Settings) -> float:
    """The share of the limit left unused: the argument, else the setting, else 0.1."""
    name = variable(system, "rate_headroom")
    value: object = headroom
    if value is None:
        value = settings.get(name)
    if value is None or value == "":
        return DEFAULT_HEADROOM
    try:
        share = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        share = math.nan
    if not 0 <= share < 1:
        raise TargetError(
            f"{name}={value}: give the share of the limit to leave unused, "
            "from 0 (none) up to but not including 1 (e.g. 0.1)"
        )
    return share
