"""What every call to a billing API needs, from a dlt source or a write-back alike.

- `with_retries`: 429 honouring the API's Retry-After / X-RateLimit-Reset, 5xx and dropped
  connections with exponential backoff; each system says which of its SDK's errors are
  which through a `Classifier` (billing_clients.<system>).
- `RateLimiter`: client-side pacing under the API's published limit.
- `http_date`: the API's own clock, from a response's `Date` header.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

log = logging.getLogger("retention.extract")
T = TypeVar("T")


# --------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class Classifier:
    """How one SDK's errors map to retry decisions.

    `retry_after(exc)`: seconds to wait for a rate-limit error (None if it is not one);
    `transient(exc)`: True for errors worth retrying with backoff (5xx, connection).
    """

    retry_after: Callable[[BaseException], float | None]
    transient: Callable[[BaseException], bool]


@dataclass
class RetryPolicy:
    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)


def with_retries(
    call: Callable[[], T], classifier: Classifier, what: str, policy: RetryPolicy | None = None
) -> T:
    """Run `call`, retrying rate limits and transient failures; re-raise anything else,
    or the last error once attempts run out, naming `what` was being fetched."""
    policy = policy or RetryPolicy()
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return call()
        except Exception as exc:
            wait = classifier.retry_after(exc)
            if wait is None and not classifier.transient(exc):
                raise
            if attempt == policy.max_attempts:
                raise RuntimeError(
                    f"{what}: gave up after {attempt} attempts: {type(exc).__name__}: {exc}"
                ) from exc
            if wait is None:
                wait = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
                wait *= 0.5 + random.random() / 2  # jitter: clients don't retry in step
            else:
                wait = min(policy.max_delay, max(wait, 0.0))
            log.warning(
                "%s: %s (attempt %d/%d), retrying in %.1fs",
                what,
                type(exc).__name__,
                attempt,
                policy.max_attempts,
                wait,
            )
            policy.sleep(wait)
    raise AssertionError("unreachable")


def header_seconds(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (seconds) or `X-RateLimit-Reset` (epoch)."""
    if not headers:
        return None
    lower = {str(k).lower(): v for k, v in dict(headers).items()}
    try:
        if "retry-after" in lower:
            return float(lower["retry-after"])
        if "x-ratelimit-reset" in lower:
            return float(lower["x-ratelimit-reset"]) - (now or time.time())
    except (TypeError, ValueError):
        return None
    return None


# --------------------------------------------------------------------------- rate


class RateLimiter:
    """Client-side pacing shared by a source's threads: at most `per_second` requests a
    second on average, so concurrent resources stay under the API's published limit
    instead of collecting 429s. None or 0 = no pacing (the sandbox in tests)."""

    def __init__(self, per_second: float | None):
        self.interval = 1.0 / per_second if per_second else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


# --------------------------------------------------------------------------- clock


def http_date(value: str | None) -> datetime | None:
    """An HTTP `Date` header as an aware datetime (None if absent or unreadable)."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
