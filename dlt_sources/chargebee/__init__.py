"""dlt source for Chargebee (API v2, Product Catalog 1.0 or 2.0) through the official SDK.

Resources, one table each, merged on `id`: customers, subscriptions, coupons, invoices,
and the catalog: items and item_prices on Product Catalog 2.0, plans and addons on 1.0
(each catalog's endpoints answer 400 on the other). The catalog is the
`product_catalog` setting, or by default what `GET /configurations` says; the other
catalog's resources load nothing. Records are loaded as the API sends them (amounts in
minor units, timestamps in epoch seconds), nested objects flattened to `a__b` columns and
lists (subscription_items, addons, coupons, tiers, line_items, ...) kept as JSON text.

Incremental and loss-free: the first run lists everything, with no `updated_at` filter,
because Chargebee keeps old records without `updated_at` and a filter would skip them.
Later runs list `updated_at[after]` the resource's cursor minus one second, in ascending
`updated_at` (coupons: created_at, the only order Chargebee offers for them) with
`include_deleted=true` where the endpoint takes it. The cursors live in dlt resource
state, which dlt commits with the load package: a run that fails loads nothing and moves
no cursor, and the next run lists the same window again. See `helpers.next_cursor`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import dlt
import pyarrow as pa
from dlt.extract.resource import DltResource

from billing_clients.retries import RateLimiter, RetryPolicy
from billing_clients.sdk import chargebee_client
from dlt_sources.chargebee.helpers import ENDPOINTS, ChargebeeLister, Seen, next_cursor
from dlt_sources.common import Progress, sync_row, to_arrow

log = logging.getLogger("retention.extract.chargebee")

COLUMNS = {
    # A record changed while its listing runs is listed twice in one run; the page it came
    # in orders the copies, so the merge keeps the later one.
    "_page_seq": {"data_type": "bigint", "dedup_sort": "desc"},
}


def changed_records(lister: ChargebeeLister, name: str) -> Iterator[pa.Table]:
    """The records of endpoint `name` changed since this resource's cursor, one Arrow
    table per page; the cursor moves only once the listing is complete."""
    if not lister.serves(name):
        log.info("chargebee %s: not on this site's Product Catalog %s", name, lister.catalog())
        return
    state = dlt.current.resource_state(name)  # by name: parallel resources run in threads
    since = state.get("cursor")
    log.info("chargebee %s: listing %s", name, "all" if since is None else f"since {since}")
    progress = Progress(f"chargebee {name}")
    seen = Seen()
    for seq, page in enumerate(lister.pages(name, since), start=1):
        seen.add(page)
        progress.page(len(page.records))
        if page.records:
            yield to_arrow(page.records, extra={"_page_seq": seq})
    progress.done()
    state["cursor"] = next_cursor(ENDPOINTS[name], since, seen)


# parallelized: the resources page concurrently in dlt's extract threads; the lister caps
# the requests in flight and their pace across all of them.
_MERGED = {
    "primary_key": "id",
    "write_disposition": "merge",
    "columns": COLUMNS,
    "parallelized": True,
}


@dlt.resource(name="customers", **_MERGED)
def customers(lister: ChargebeeLister) -> Iterator[pa.Table]:
    """Customers, deleted ones included (`deleted` true)."""
    yield from changed_records(lister, "customers")


@dlt.resource(name="subscriptions", **_MERGED)
def subscriptions(lister: ChargebeeLister) -> Iterator[pa.Table]:
    """Subscriptions with their status as of the listing; items and coupons as JSON."""
    yield from changed_records(lister, "subscriptions")


@dlt.resource(name="items", **_MERGED)
def items(lister: ChargebeeLister) -> Iterator[pa.Table]:
    """Catalog items (products): plans, addons and charges."""
    yield from changed_records(lister, "items")


@dlt.resource(name="item_prices", **_MERGED)
def item_prices(lister: ChargebeeLister) -> Iterator[pa.Table]:
    """Item prices (what a subscription is on): price in minor units, period."""
    yield from changed_records(lister, "item_prices")


@dlt.resource(name="plans", **_MERGED)
def plans(lister: ChargebeeLister) -> Iterator[pa.Table]:
    """Product Catalog 1.0 plans (what a subscription is on): price, pricing model, tiers."""
    yield from changed_records(lister, "plans")


@dlt.resource(name="addons", **_MERGED)
def addons(lister: ChargebeeLister) -> Iterator[pa.Table]:
    """Product Catalog 1.0 add-ons: recurring or one-time, price, pricing model, tiers."""
    yield from changed_records(lister, "addons")


@dlt.resource(name="coupons", **_MERGED)
def coupons(lister: ChargebeeLister) -> Iterator[pa.Table]:
    """Coupons; listed in created_at order, so their cursor is the listing's start."""
    yield from changed_records(lister, "coupons")


@dlt.resource(name="invoices", **_MERGED)
def invoices(lister: ChargebeeLister) -> Iterator[pa.Table]:
    """Invoices, deleted ones included; line items as JSON."""
    yield from changed_records(lister, "invoices")


@dlt.resource(name="syncs", write_disposition="append")
def syncs(lister: ChargebeeLister) -> Iterator[dict]:
    """One row per run: Chargebee's clock at its start (the `Date` of a one-customer
    listing), the validation time T of the marts."""
    yield sync_row(lister.server_time())


@dlt.source(name="chargebee")
def chargebee_source(
    api_key: str = dlt.secrets.value,
    site: str | None = None,
    base_url: str | None = None,
    page_size: int = 100,
    max_workers: int = 2,
    requests_per_second: float | None = 2.5,
    retry_policy: RetryPolicy | None = None,
    product_catalog: str = "auto",
) -> list[DltResource]:
    """Chargebee customers, subscriptions, catalog (items and item prices, or plans and
    add-ons), coupons, invoices.

    Args:
        api_key: a read-only API key (`SOURCES__CHARGEBEE__API_KEY`).
        site: the site name, `<site>.chargebee.com` (`SOURCES__CHARGEBEE__SITE`); needed
            unless `base_url` is given.
        base_url: another API address (the sandbox); None = the site on chargebee.com.
        page_size: records per list page, 1..100 (Chargebee's maximum).
        max_workers: requests in flight at once across the resources, which page
            concurrently (Chargebee allows 50 concurrent GETs on its smallest plan).
        requests_per_second: client-side pace of all requests together. 2.5/s is 150 a
            minute, the lowest published limit (test sites and the Starter plan); raise it
            to your plan's (Performance 1,000/min, Enterprise 3,500/min). None/0 = none.
        retry_policy: attempts and backoff for 429s (honouring Retry-After), 5xx and
            dropped connections; the SDK's own retries stay off.
        product_catalog: the site's Product Catalog, `v1`, `v2`, or `auto`
            (`SOURCES__CHARGEBEE__PRODUCT_CATALOG`; default: ask `GET /configurations`).
    """
    if not base_url and not site:
        raise ValueError("chargebee: give `site` (SOURCES__CHARGEBEE__SITE) or a `base_url`")
    client = chargebee_client(api_key, site=site or "local", base_url=base_url)
    lister = ChargebeeLister(
        client,
        RateLimiter(requests_per_second),
        page_size=page_size,
        max_workers=max_workers,
        policy=retry_policy,
        product_catalog=product_catalog,
    )
    return [
        customers(lister),
        subscriptions(lister),
        items(lister),
        item_prices(lister),
        plans(lister),
        addons(lister),
        coupons(lister),
        invoices(lister),
        syncs(lister),
    ]
