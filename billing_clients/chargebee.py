"""Chargebee through its SDK: how its errors map to retries (a rate limit's wait, and what
is transient), the Product Catalog settings, and `ChargebeeHttp`, the SDK's GET requests
over one persistent HTTP client."""

from __future__ import annotations

import re
import ssl
from typing import Any

import httpx
import orjson
from chargebee import APIError, Chargebee, util
from chargebee.http_request import handle_api_resp_error, map_plaintext_to_error
from chargebee.request import lowercase_keys
from chargebee.version import VERSION

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


# --------------------------------------------------------------------------- requests


class ChargebeeHttp:
    """GET requests of one Chargebee site over one persistent httpx client.

    The SDK (3.29, the newest) opens a new `httpx.Client` (its SSL context included) for
    every request, in `chargebee.http_request._make_request`, and has no option to pass a
    client or a transport. Here the requests are the SDK's own -- its parameter encoding
    (`util.serialize`), the site's address and timeouts from the client's `env`, Basic auth
    with the key, its CA bundle, and its error classes for error answers -- sent over one
    client that keeps its connections (httpx's `Client` "can be shared between threads").
    The answer is the JSON as sent: no model objects, which the sources never read.
    `transport` replaces the network (tests)."""

    def __init__(
        self,
        client: Chargebee,
        *,
        max_connections: int = 10,
        transport: httpx.BaseTransport | None = None,
    ):
        env = client.env
        self._env = env
        self._http = httpx.Client(
            auth=httpx.BasicAuth(env.api_key, ""),
            headers={
                "User-Agent": f"Chargebee-Python-Client v{VERSION}",
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(None, connect=env.connect_timeout, read=env.read_timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            verify=_verify(),
            transport=transport,
        )

    def get(self, path: str, params: dict[str, Any] | None = None) -> tuple[dict, httpx.Headers]:
        """GET `/api/v2<path>` with SDK-style `params` (nested dicts, e.g.
        `{"sort_by": {"asc": "created_at"}}`): the JSON body and the headers; an error
        answer raises the SDK's error (APIError and its kinds; a non-JSON page a plain
        Exception naming its status), as the SDK's own calls do."""
        query = util.serialize(lowercase_keys(params or {}))
        response = self._http.get(self._env.api_url(path), params=query)
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise map_plaintext_to_error(response) from None
        if not 200 <= response.status_code < 300:
            handle_api_resp_error(str(response.url), response.status_code, body, response.headers)
        return body, response.headers

    def close(self) -> None:
        self._http.close()


def _verify() -> ssl.SSLContext | bool:
    """TLS as the SDK verifies it: against its own CA bundle unless told not to (the
    sandbox's plain http), then httpx's default."""
    if Chargebee.verify_ca_certs:
        return ssl.create_default_context(cafile=Chargebee.ca_cert_path)
    return True
