"""What every call to a billing API needs, from a dlt source or a write-back alike.

- `with_retries`: 429 honouring the API's Retry-After / X-RateLimit-Reset, 5xx and dropped
  connections with exponential backoff, on tenacity; each system says which of its SDK's
  errors are which through a `Classifier` (billing_clients.<system>).
- `http_date`: the API's own clock, from a response's `Date` header.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import tenacity

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
    """How long to keep trying: `max_attempts` calls in all; between them the API's own
    wait for a rate limit (capped at `max_delay`), else exponential backoff from
    `base_delay` (capped at `max_delay`), jittered to 50-100% so clients don't retry in
    step. `sleep` is replaceable so tests wait for nothing."""

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
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.max_attempts),
        retry=tenacity.retry_if_exception(lambda exc: _retryable(classifier, exc)),
        wait=_ApiWait(classifier, policy),
        sleep=policy.sleep,
        before_sleep=lambda state: _log_retry(state, what, policy.max_attempts),
        retry_error_callback=lambda state: _give_up(state, what),
    )
    return retrying(call)


def _retryable(classifier: Classifier, exc: BaseException) -> bool:
    """A rate limit or a transient error; never an interrupt (only `Exception`s retry)."""
    return isinstance(exc, Exception) and (
        classifier.retry_after(exc) is not None or classifier.transient(exc)
    )


class _ApiWait(tenacity.wait.wait_base):
    """The wait before the next attempt. tenacity's stock waits cannot say "the API's
    Retry-After if it sent one, else jittered backoff", so this one does: the rate limit's
    own wait (0..max_delay), else `wait_exponential` scaled by a 50-100% jitter (tenacity's
    jittered waits add a random term or draw from zero instead)."""

    def __init__(self, classifier: Classifier, policy: RetryPolicy):
        self.classifier, self.max_delay = classifier, policy.max_delay
        self.backoff = tenacity.wait_exponential(multiplier=policy.base_delay, max=policy.max_delay)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        asked = self.classifier.retry_after(retry_state.outcome.exception())
        if asked is not None:
            return min(self.max_delay, max(asked, 0.0))
        return self.backoff(retry_state) * (0.5 + random.random() / 2)


def _log_retry(state: tenacity.RetryCallState, what: str, max_attempts: int) -> None:
    """One line per retry, so a slow run shows what it is waiting for and how long."""
    log.warning(
        "%s: %s (attempt %d/%d), retrying in %.1fs",
        what,
        type(state.outcome.exception()).__name__,
        state.attempt_number,
        max_attempts,
        state.next_action.sleep,
    )


def _give_up(state: tenacity.RetryCallState, what: str) -> None:
    """Attempts ran out: a RuntimeError naming what was fetched, caused by the last error
    (the write-back runner reads that cause to keep the action pending)."""
    exc = state.outcome.exception()
    raise RuntimeError(
        f"{what}: gave up after {state.attempt_number} attempts: {type(exc).__name__}: {exc}"
    ) from exc


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


# --------------------------------------------------------------------------- clock


def http_date(value: str | None) -> datetime | None:
    """An HTTP `Date` header as an aware datetime (None if absent or unreadable)."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
