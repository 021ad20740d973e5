"""How Stripe's SDK errors map to retries: a rate limit's wait, and what is transient."""

from __future__ import annotations

import stripe

from billing_clients.retries import Classifier, header_seconds


def _retry_after(exc: BaseException) -> float | None:
    """Stripe's SDK never retries a 429 and ignores Retry-After: wait what the API asks.
    A 429 without the header is left to `_transient`'s backoff."""
    if isinstance(exc, stripe.RateLimitError):
        return header_seconds(exc.headers)
    return None


def _transient(exc: BaseException) -> bool:
    """5xx and dropped connections the SDK's own retries did not get past, and 429s
    without a wait to honour (Stripe usually sends none)."""
    if isinstance(exc, stripe.RateLimitError | stripe.APIConnectionError):
        return True
    return isinstance(exc, stripe.StripeError) and (exc.http_status or 0) >= 500


CLASSIFIER = Classifier(retry_after=_retry_after, transient=_transient)
