"""How Chargebee's SDK errors map to retries: a rate limit's wait, and what is transient."""

from __future__ import annotations

import re

import httpx
from chargebee import APIError

from billing_clients.retries import Classifier, header_seconds

# Product Catalog versions as `GET /configurations` names them, and what
# SOURCES__CHARGEBEE__PRODUCT_CATALOG may say (the source and the write-backs both read it).
CATALOGS = ("v1", "v2")
CATALOG_SETTINGS = ("auto", *CATALOGS)

# The SDK turns a non-JSON error page (a gateway's 502/503/504) into a plain Exception
# whose text carries the status (chargebee/http_request.py, map_plaintext_to_error).
_PLAIN_5XX = re.compile(r"http_status_code:\s*5\d\d")


def _retry_after(exc: BaseException) -> float | None:
    """Chargebee answers a rate limit with 429 and `Retry-After` (seconds)."""
    if isinstance(exc, APIError) and exc.http_status_code == 429:
        return header_seconds(exc.http_headers)
    return None


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: 429 without a usable header, 5xx (JSON or a gateway's page),
    and dropped or timed-out connections, which the SDK lets through as httpx errors."""
    if isinstance(exc, APIError):
        return exc.http_status_code == 429 or exc.http_status_code >= 500
    if isinstance(exc, httpx.TransportError):
        return True
    return type(exc) is Exception and bool(_PLAIN_5XX.search(str(exc)))


CLASSIFIER = Classifier(retry_after=_retry_after, transient=_transient)
