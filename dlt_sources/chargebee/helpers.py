"""Chargebee API v2 calls for the dlt source: list pages through the official SDK,
retries, pacing and the cursor arithmetic of an incremental listing.

Chargebee's list endpoints page with an opaque `next_offset` (a keyset: the sort value and
id of the last record), so a listing in ascending `updated_at` is stable while records
change: a record written during the listing moves behind the cursor and is listed again
later in the same run. The SDK builds a model object per entry (about 70 ms a page); its
`raw_data` is the record's JSON as received, which is all this source keeps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chargebee import Chargebee

from billing_clients.chargebee import CATALOG_SETTINGS, CATALOGS, CLASSIFIER
from billing_clients.retries import (
    RateLimiter,
    RetryPolicy,
    http_date,
    with_retries,
)

# A cursor taken from the server's `Date` header is moved back this far, so neither a
# write in the same second nor a little skew between Chargebee's hosts is lost.
CLOCK_MARGIN_SECONDS = 60


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class Endpoint:
    """One list endpoint: the SDK resource (`client.<model>.list`), the key of the record in
    each list entry, the order it can be listed in, whether it takes `include_deleted`
    (customers, subscriptions, invoices and the 1.0 plans and add-ons do: without it a
    deleted record is never listed again, so an incremental run would not see the
    deletion; 2.0 items, item prices and coupons have no such parameter and list a
    deleted one with its `status`), and the one Product
    Catalog that serves it (None: both). The other catalog answers 400
    `configuration_incompatible`, so such an endpoint is not listed there at all."""

    model: str
    entry: str
    sort_by: str = "updated_at"
    include_deleted: bool = False
    catalog: str | None = None


ENDPOINTS: dict[str, Endpoint] = {
    "customers": Endpoint("Customer", "customer", include_deleted=True),
    "subscriptions": Endpoint("Subscription", "subscription", include_deleted=True),
    "items": Endpoint("Item", "item", catalog="v2"),
    "item_prices": Endpoint("ItemPrice", "item_price", catalog="v2"),
    "plans": Endpoint("Plan", "plan", include_deleted=True, catalog="v1"),
    "addons": Endpoint("Addon", "addon", include_deleted=True, catalog="v1"),
    # Chargebee sorts coupons by created_at only; see `next_cursor`.
    "coupons": Endpoint("Coupon", "coupon", sort_by="created_at"),
    "invoices": Endpoint("Invoice", "invoice", include_deleted=True),
}


def list_params(endpoint: Endpoint, page_size: int, since: int | None) -> dict[str, Any]:
    """Parameters of the first page. `updated_at[after]` is strict and in whole seconds, so
    `since - 1` lists everything updated at or after `since`: records written in the
    cursor's own second are listed again (the merge dedups them) instead of lost. Without
    a cursor (the first run) there is no updated_at filter at all, because Chargebee keeps
    old records without `updated_at` and any such filter would skip them."""
    params: dict[str, Any] = {"limit": page_size, "sort_by": {"asc": endpoint.sort_by}}
    if endpoint.include_deleted:
        params["include_deleted"] = True
    if since is not None:
        params["updated_at"] = {"after": since - 1}
    return params


# --------------------------------------------------------------------------- cursor


@dataclass
class Page:
    """One list page: its records' JSON and the server's time (`Date`) when it answered."""

    records: list[dict]
    server_time: int | None


@dataclass
class Seen:
    """What a listing has seen so far: the server time of its first answer and the newest
    `updated_at` among its records."""

    started: int | None = None
    newest: int | None = None

    def add(self, page: Page) -> None:
        if self.started is None:
            self.started = page.server_time
        for record in page.records:
            stamp = record.get("updated_at")
            if stamp is not None and (self.newest is None or stamp > self.newest):
                self.newest = stamp


def next_cursor(endpoint: Endpoint, previous: int | None, seen: Seen) -> int | None:
    """The `since` of the next run, from a complete listing.

    In `updated_at` order every record changed after the listing passed it is listed again
    further on or has an `updated_at` at or after the newest one seen, so that newest value
    is the cursor. Coupons are in created_at order, so a coupon changed behind the listing
    is not seen again: their cursor is when the listing started (the server's clock, never
    this machine's). The start also serves when no record had an `updated_at`. With neither,
    the previous cursor stays: the window is listed again rather than skipped."""
    if endpoint.sort_by == "updated_at" and seen.newest is not None:
        return seen.newest
    if seen.started is not None:
        return seen.started - CLOCK_MARGIN_SECONDS
    return previous


def server_time(headers: Any) -> int | None:
    """Epoch seconds of a response's `Date` header, None if it has none."""
    date = http_date(headers.get("date") if headers else None)
    return None if date is None else int(date.timestamp())


# --------------------------------------------------------------------------- pages


class ChargebeeLister:
    """Pages of one Chargebee site, shared by the source's resources (threads): requests
    are paced by `limiter`, at most `max_workers` in flight, each retried by `policy`.

    The SDK client is shared: each request opens its own httpx client, and the
    environment it reads (key, endpoint) does not change."""

    def __init__(
        self,
        client: Chargebee,
        limiter: RateLimiter,
        page_size: int = 100,
        max_workers: int = 2,
        policy: RetryPolicy | None = None,
        product_catalog: str = "auto",
    ):
        if not 1 <= page_size <= 100:
            raise ValueError(f"page_size must be 1..100 (Chargebee's limit), not {page_size}")
        if product_catalog not in CATALOG_SETTINGS:
            raise ValueError(
                f"product_catalog must be one of {', '.join(CATALOG_SETTINGS)}, "
                f"not {product_catalog!r}"
            )
        self.client, self.limiter, self.page_size, self.policy = client, limiter, page_size, policy
        self._in_flight = threading.BoundedSemaphore(max(1, max_workers))
        self._catalog = None if product_catalog == "auto" else product_catalog
        self._catalog_lock = threading.Lock()

    def catalog(self) -> str:
        """The site's Product Catalog, "v1" or "v2": the setting, or else what
        `GET /configurations` says (asked once per run, under a lock: resources run in
        threads). A site that does not name it is on 2.0, the only catalog of sites
        created since May 2021."""
        with self._catalog_lock:
            if self._catalog is None:
                response = with_retries(
                    self._paced(lambda: self.client.Configuration.list()),
                    CLASSIFIER,
                    "chargebee configuration",
                    self.policy,
                )
                versions = [c.product_catalog_version for c in response.configurations]
                self._catalog = next((v for v in versions if v in CATALOGS), "v2")
            return self._catalog

    def serves(self, name: str) -> bool:
        """Whether this site's catalog has endpoint `name`."""
        wanted = ENDPOINTS[name].catalog
        return wanted is None or wanted == self.catalog()

    def pages(self, name: str, since: int | None) -> Iterator[Page]:
        """Every page of endpoint `name` changed since `since` (all of it if None)."""
        endpoint = ENDPOINTS[name]
        params = list_params(endpoint, self.page_size, since)
        listing = getattr(self.client, endpoint.model).list
        offset = None
        while True:
            page_params = {**params, "offset": offset} if offset else params
            response = with_retries(
                self._paced(lambda p=page_params: listing(p)),
                CLASSIFIER,
                f"chargebee {name}",
                self.policy,
            )
            records = [getattr(entry, endpoint.entry).raw_data for entry in response.list]
            yield Page(records, server_time(response.headers))
            offset = response.next_offset
            if not offset:
                return

    def server_time(self) -> datetime | None:
        """Chargebee's clock now: the `Date` of a one-customer listing (limit=1)."""
        listing = self.client.Customer.list
        response = with_retries(
            self._paced(lambda: listing({"limit": 1})), CLASSIFIER, "chargebee clock", self.policy
        )
        at = server_time(response.headers)
        return datetime.fromtimestamp(at, UTC) if at is not None else None

    def _paced(self, call: Callable[[], Any]) -> Callable[[], Any]:
        """`call` behind the rate limiter and the in-flight cap, once per attempt."""

        def paced() -> Any:
            self.limiter.wait()
            with self._in_flight:
                return call()

        return paced
