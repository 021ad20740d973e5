"""How Recurly's SDK errors map to retries, and how a connection left mid-exchange is
reset (the SDK keeps one http.client connection per client)."""

from __future__ import annotations

import contextlib
import http.client
from collections.abc import Iterator

import recurly
from recurly import errors

from billing_clients.retries import Classifier, header_seconds


def _response_of(exc: BaseException) -> recurly.Response | None:
    """The SDK response behind an API error (None for network errors)."""
    error = getattr(exc, "error", None)
    return error.get_response() if error is not None else None


def rate_limit_wait(exc: BaseException) -> float | None:
    """Seconds until Recurly's window resets (`X-RateLimit-Reset`, epoch seconds) on a 429.
    The SDK parses that header into a naive datetime only; the raw headers it keeps on
    its response are read here so `header_seconds` also honours a `Retry-After`."""
    if not isinstance(exc, errors.TooManyRequestsError):
        return None
    response = _response_of(exc)
    headers = getattr(response, "_Response__headers", None)
    return header_seconds(headers)


def is_transient(exc: BaseException) -> bool:
    """5xx, dropped connections, and a 429 that named no reset time (backoff instead)."""
    if isinstance(exc, recurly.NetworkError | errors.ServerError | errors.TooManyRequestsError):
        return True
    response = _response_of(exc)
    return response is not None and response.status >= 500


CLASSIFIER = Classifier(retry_after=rate_limit_wait, transient=is_transient)


@contextlib.contextmanager
def reset_on_network_error(client: recurly.Client) -> Iterator[None]:
    """A timeout or a body cut short leaves the client's one http.client connection
    mid-exchange, refusing every later request (CannotSendRequest), and the SDK lets a
    cut-short body escape as http.client's IncompleteRead. Closing the connection resets
    it (the next request opens a fresh one); the error is raised as the SDK's NetworkError."""
    try:
        yield
    except (OSError, http.client.HTTPException, recurly.NetworkError) as exc:
        client._BaseClient__conn.close()
        if isinstance(exc, recurly.NetworkError):
            raise
        raise recurly.NetworkError(exc) from exc
