"""Chargebee API v2 calls for the dlt source: list pages through the SDK's requests on one
persistent HTTP client (`billing_clients.chargebee.ChargebeeHttp`), retries, pacing, the
windows of a sliced full listing and the cursor arithmetic of an incremental listing.

Chargebee's list endpoints page with an opaque `next_offset` (a keyset: the sort value and
id of the last record), so a listing in ascending `updated_at` is stable while records
change: a record written during the listing moves behind the cursor and is listed again
later in the same run. Pages are kept as the JSON Chargebee sent (what the SDK's models
hold as `raw_data`), without building the SDK's model objects (~35 ms a page).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from billing_clients.chargebee import CATALOG_SETTINGS, CATALOGS, CLASSIFIER, ChargebeeHttp
from billing_clients.retries import RetryPolicy, http_date, with_retries
from dlt_sources import slices
from dlt_sources.common import workers_for

# A cursor taken from the server's `Date` header is moved back this far, so neither a
# write in the same second nor a little skew between Chargebee's hosts is lost.
CLOCK_MARGIN_SECONDS = 60


# A round trip to Chargebee takes about 200-600 ms: with the rate times this many requests
# in flight the pace, not the latency, sets the speed (dlt_sources.common.workers_for).
LATENCY_SECONDS = 0.6
UNPACED_WORKERS = 4  # no pacing (the local sandbox): enough to keep the client busy
MAX_WORKERS = 50  # Chargebee's concurrent GETs on its smallest plan


class Bucket(Protocol):
    """The pacing the lister waits on (`billing_clients.pacing`'s token bucket)."""

    rate: float

    def wait(self) -> None: ...


def default_workers(bucket: Bucket) -> int:
    """Requests in flight that keep `bucket`'s pace through Chargebee's latency, within
    its concurrency limit."""
    return workers_for(bucket.rate, LATENCY_SECONDS, UNPACED_WORKERS, most=MAX_WORKERS)


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class Endpoint:
    """One list endpoint (`/api/v2/<name>`): the key of the record in each list entry, the
    order it can be listed in, whether it takes `include_deleted` (customers,
    subscriptions, invoices and the 1.0 plans and add-ons do: without it a deleted record
    is never listed again, so an incremental run would not see the deletion; 2.0 items,
    item prices and coupons have no such parameter and list a deleted one with its
    `status`), the one Product Catalog that serves it (None: both; the other catalog
    answers 400 `configuration_incompatible`, so such an endpoint is not listed there at
    all), and the creation time its full listing is sliced on (None: listed whole, as the
    catalog and coupons are small). That field must be sortable and filterable:
    `created_at` for customers and subscriptions, the invoice `date` for invoices (their
    only sortable times besides `updated_at`, which old records lack)."""

    entry: str
    sort_by: str = "updated_at"
    include_deleted: bool = False
    catalog: str | None = None
    created: str | None = None


ENDPOINTS: dict[str, Endpoint] = {
    "customers": Endpoint("customer", include_deleted=True, created="created_at"),
    "subscriptions": Endpoint("subscription", include_deleted=True, created="created_at"),
    "items": Endpoint("item", catalog="v2"),
    "item_prices": Endpoint("item_price", catalog="v2"),
    "plans": Endpoint("plan", include_deleted=True, catalog="v1"),
    "addons": Endpoint("addon", include_deleted=True, catalog="v1"),
    # Chargebee sorts coupons by created_at only; see `next_cursor`.
    "coupons": Endpoint("coupon", sort_by="created_at"),
    "invoices": Endpoint("invoice", include_deleted=True, created="date"),
}


def list_params(endpoint: Endpoint, page_size: int, since: int | None) -> dict[str, Any]:
    """Parameters of the first page. `updated_at[after]` is strict and in whole seconds, so
    `since - 1` lists everything updated at or after `since`: records written in the
    cursor's own second are listed again (the merge dedups them) instead of lost. Without
    a cursor there is no updated_at filter at all, because Chargebee keeps old records
    without `updated_at` and any such filter would skip them."""
    params: dict[str, Any] = {"limit": page_size, "sort_by": {"asc": endpoint.sort_by}}
    if endpoint.include_deleted:
        params["include_deleted"] = True
    if since is not None:
        params["updated_at"] = {"after": since - 1}
    return params


def window_params(endpoint: Endpoint, page_size: int, window: slices.Window) -> dict[str, Any]:
    """One page of a window [lo, hi) of a full listing, oldest first by the creation field.
    Chargebee's timestamp filters are `after`, `before`, `on` and `between` (the SDK's
    `TimestampFilter`); `after` and `before` are strict, so `after lo - 1` and
    `before hi` are exactly [lo, hi) in whole seconds. `between`'s bounds are not
    documented as inclusive or not, so it is not used. A window continued by its cursor
    keeps the same filters with the `next_offset` of the page before (a keyset: the
    last record's sort value and id)."""
    params: dict[str, Any] = {
        "limit": page_size,
        "sort_by": {"asc": endpoint.created},
        endpoint.created: {"after": window.lo - 1, "before": window.hi},
    }
    if endpoint.include_deleted:
        params["include_deleted"] = True
    if window.cursor:
        params["offset"] = window.cursor
    return params


# --------------------------------------------------------------------------- cursor


@dataclass
class Page:
    """One list page: its records' JSON and the server's time (`Date`) when it answered."""

    records: list[dict]
    server_time: int | None


@dataclass(frozen=True)
class Opening:
    """The first answer of a full listing (`ChargebeeLister.opening`): the seconds it
    covers, [oldest creation, server's clock + 1) (None: no records), the server's
    clock (None if it sent no `Date`), and the first page of that span, oldest first."""

    span: tuple[int, int] | None
    now: int | None
    page: slices.Page | None


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
    """Pages of one Chargebee site, shared by the source's resources (threads) and the
    workers of their sliced listings: every request waits on `bucket` (the pace of the
    site's key), at most `max_workers` are in flight, each is retried by `policy`, all
    over `http`'s one client."""

    def __init__(
        self,
        http: ChargebeeHttp,
        bucket: Bucket,
        page_size: int = 100,
        max_workers: int | None = None,
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
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be 1 or more, not {max_workers}")
        self.http, self.bucket, self.page_size, self.policy = http, bucket, page_size, policy
        self.workers = max_workers or default_workers(bucket)
        self._in_flight = threading.BoundedSemaphore(self.workers)
        self._catalog = None if product_catalog == "auto" else product_catalog
        self._catalog_lock = threading.Lock()

    def get(self, what: str, path: str, params: dict[str, Any]) -> tuple[dict, httpx.Headers]:
        """One GET, paced, capped and retried; `what` names it in logs and errors."""

        def call() -> tuple[dict, httpx.Headers]:
            self.bucket.wait()
            with self._in_flight:
                return self.http.get(path, params)

        return with_retries(call, CLASSIFIER, what, self.policy)

    def catalog(self) -> str:
        """The site's Product Catalog, "v1" or "v2": the setting, or else what
        `GET /configurations` says (asked once per run, under a lock: resources run in
        threads). A site that does not name it is on 2.0, the only catalog of sites
        created since May 2021."""
        with self._catalog_lock:
            if self._catalog is None:
                body, _ = self.get("chargebee configuration", "/configurations", {})
                versions = [c.get("product_catalog_version") for c in body["configurations"]]
                self._catalog = next((v for v in versions if v in CATALOGS), "v2")
            return self._catalog

    def serves(self, name: str) -> bool:
        """Whether this site's catalog has endpoint `name`."""
        wanted = ENDPOINTS[name].catalog
        return wanted is None or wanted == self.catalog()

    def pages(self, name: str, since: int | None) -> Iterator[Page]:
        """Every page of endpoint `name` changed since `since` (all of it if None), one
        request at a time."""
        endpoint = ENDPOINTS[name]
        params = list_params(endpoint, self.page_size, since)
        offset = None
        while True:
            page_params = {**params, "offset": offset} if offset else params
            body, headers = self.get(f"chargebee {name}", f"/{name}", page_params)
            records = [entry[endpoint.entry] for entry in body["list"]]
            yield Page(records, server_time(headers))
            offset = body.get("next_offset")
            if not offset:
                return

    def opening(self, name: str) -> Opening:
        """The first page of a full listing of `name` and what the listing covers, in one
        request: its records from the oldest creation on (no time filter), answered with
        the server's clock. The span runs from the oldest record's creation to the
        server's `Date` (inclusive): a record created later has an `updated_at` after the
        cursor taken from that clock, so the next incremental run lists it. The span's
        start matters: the listing's split estimates density from it, and this page is
        the listing's first, so the split starts one round trip after the run does. Only
        an answer without a `Date` costs a second request, for the newest record."""
        endpoint = ENDPOINTS[name]
        field = endpoint.created
        params: dict[str, Any] = {"limit": self.page_size, "sort_by": {"asc": field}}
        if endpoint.include_deleted:
            params["include_deleted"] = True
        body, headers = self.get(f"chargebee {name}", f"/{name}", params)
        records = [entry[endpoint.entry] for entry in body["list"]]
        now = server_time(headers)
        if not records:
            return Opening(None, now, None)
        end = now if now is not None else self._newest(name)
        span = (records[0][field], max(end, records[-1][field]) + 1)
        return Opening(span, now, slices.Page(records, body.get("next_offset")))

    def _newest(self, name: str) -> int:
        """The newest record's creation time (one one-record page, newest first)."""
        endpoint = ENDPOINTS[name]
        params: dict[str, Any] = {"limit": 1, "sort_by": {"desc": endpoint.created}}
        if endpoint.include_deleted:
            params["include_deleted"] = True
        body, _ = self.get(f"chargebee {name} newest", f"/{name}", params)
        return body["list"][0][endpoint.entry][endpoint.created]

    def windows(self, name: str, opening: Opening | None = None) -> CreatedWindows:
        """The window lister of `name`'s sliced full listing; with the listing's
        `opening`, its first window's first page is that page, not a request."""
        return CreatedWindows(self, name, opening)

    def server_time(self) -> datetime | None:
        """Chargebee's clock now: the `Date` of a one-customer listing (limit=1)."""
        _, headers = self.get("chargebee clock", "/customers", {"limit": 1})
        at = server_time(headers)
        return datetime.fromtimestamp(at, UTC) if at is not None else None


class CreatedWindows:
    """One endpoint listed by windows of its creation time ([lo, hi), oldest first, the
    cursor Chargebee's `next_offset`): `dlt_sources.slices`' WindowLister. The first
    window of a new listing is answered once from its `opening` (the same records: the
    engine drops any past the window's end, and the page's `next_offset` continues under
    the window's filters, as a split window's does)."""

    descending = False

    def __init__(self, lister: ChargebeeLister, name: str, opening: Opening | None = None):
        endpoint = ENDPOINTS[name]
        if endpoint.created is None:
            raise ValueError(f"chargebee {name} has no creation field to slice on")
        self.lister, self.endpoint, self.path = lister, endpoint, f"/{name}"
        self.name = f"chargebee {name}"
        self.field: str = endpoint.created
        self._opened: dict[slices.Window, slices.Page] = {}
        if opening is not None and opening.span is not None and opening.page is not None:
            self._opened[slices.Window(*opening.span)] = opening.page

    def page(self, window: slices.Window) -> slices.Page:
        opened = self._opened.pop(window, None)  # atomic: the workers are threads
        if opened is not None:
            return opened
        params = window_params(self.endpoint, self.lister.page_size, window)
        body, _ = self.lister.get(self.name, self.path, params)
        records = [entry[self.endpoint.entry] for entry in body["list"]]
        return slices.Page(records, body.get("next_offset"))

    def stamp(self, record: dict) -> int:
        return record[self.field]
