"""Official SDK clients, pointed at the real service or at a base URL (the sandbox).

The real services need only an API key. A base URL (from config, for the sandbox in the
demo and tests) swaps the host and nothing else: requests, auth, paging and errors stay
the SDKs' own. The quirks that make this work (Recurly's client has no base-URL option;
Stripe's needs telemetry off and its retries asked for) are commented where they are used.
"""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import recurly
import stripe
from chargebee import Chargebee


def stripe_client(
    api_key: str, base_url: str | None = None, retries: int = 3
) -> stripe.StripeClient:
    """A StripeClient; it retries connection errors and 5xx itself, never a plain 429."""
    stripe.enable_telemetry = False  # otherwise the SDK writes ~/.config/stripe/telemetry_id
    addresses = {"api": base_url.rstrip("/")} if base_url else {}
    return stripe.StripeClient(api_key, base_addresses=addresses, max_network_retries=retries)


RECURLY_REGIONS = ("us", "eu")  # the SDK's API_HOSTS keys


class _LocalRecurlyClient(recurly.Client):
    """recurly.Client has no base-URL option (a `base_url=` argument is silently ignored),
    so the connection it keeps is replaced by one to the given host."""

    def __init__(self, api_key: str, base_url: str, timeout: int = 30):
        super().__init__(api_key, timeout=timeout)
        parts = urlsplit(base_url)
        connection = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        self._BaseClient__conn = connection(parts.hostname, parts.port, timeout=timeout)


def recurly_client(
    api_key: str, base_url: str | None = None, timeout: int = 30, region: str | None = None
) -> recurly.Client:
    """A Recurly v2021-02-25 client. Not thread-safe: one persistent connection each.

    `region` is the site's data region as the SDK names it: `us` (v3.recurly.com, the
    default) or `eu` (v3.eu.recurly.com); a site answers only in its own region. A base
    URL wins over it."""
    if base_url:
        return _LocalRecurlyClient(api_key, base_url, timeout=timeout)
    if region is not None and region not in RECURLY_REGIONS:
        raise ValueError(
            f"Recurly region must be one of {', '.join(RECURLY_REGIONS)}, not {region!r}"
        )
    return recurly.Client(api_key, timeout=timeout, region=region or "us")


def chargebee_client(api_key: str, site: str = "local", base_url: str | None = None) -> Chargebee:
    """A Chargebee v2 client for `site`, or for the server at `base_url`."""
    if not base_url:
        return Chargebee(api_key=api_key, site=site)
    Chargebee.verify_ca_certs = False  # must be the class attribute, or http becomes https
    client = Chargebee(api_key=api_key, site=site, protocol=urlsplit(base_url).scheme)
    client.env.api_endpoint = base_url.rstrip("/") + "/api/v2"
    return client
