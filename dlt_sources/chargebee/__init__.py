"""dlt source for Chargebee (API v2, Product Catalog 1.0 or 2.0) through the official SDK.

Resources, one table each, merged on `id`: customers, subscriptions, coupons, invoices,
and the catalog: items and item_prices on Product Catalog 2.0, plans and addons on 1.0
(each catalog's endpoints answer 400 on the other). The catalog is the
`product_catalog` setting, or by default what `GET /configurations` says; the other
catalog's resources load nothing. Records are loaded as the API sends them (amounts in
minor units, timestamps in epoch seconds), nested objects flattened to `a__b` columns and
lists (subscription_items, addons, coupons, tiers, line_items, ...) kept as JSON text.

A first run lists customers, subscriptions and invoices whole by windows of their
creation time (`created_at`, the invoice `date`), several windows at once
(`dlt_sources.slices`): the pace of the site's key, not the round trip, sets the speed.
Its progress is in the resource's dlt state: a run stopped at a checkpoint
(`checkpoint_seconds`) loads what it listed and the next run lists only the windows left,
and a killed run's successor resumes from the last committed checkpoint. The incremental
cursor is taken before the listing starts and stored when it ends. The other
resources, small, are listed whole in one sequence.

Incremental and loss-free: later runs list `updated_at[after]` the resource's cursor minus
one second, in ascending `updated_at` (coupons: created_at, the only order Chargebee offers
for them) with `include_deleted=true` where the endpoint takes it. The first run never
filters on `updated_at`, because Chargebee keeps old records without `updated_at` and a
filter would skip them. The cursors live in dlt resource state, which dlt commits with
the load package: a run that fails loads nothing and moves no cursor, and the next run
lists the same window again. See `helpers.next_cursor`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import dlt
import pyarrow as pa
from dlt.extract.resource import DltResource

from billing_clients.chargebee import ChargebeeHttp
from billing_clients.pacing import shared_bucket
from billing_clients.retries import RetryPolicy
from billing_clients.sdk import chargebee_client
from dlt_sources.chargebee.helpers import (
    CLOCK_MARGIN_SECONDS,
    ENDPOINTS,
    ChargebeeLister,
    Seen,
    default_workers,
    next_cursor,
)
from dlt_sources.common import Progress, batched, sync_row, to_arrow
from dlt_sources.slices import (
    DEFAULT_CHECKPOINT_SECONDS,
    PENDING_CURSOR_KEY,
    STATE_KEY,
    sliced_listing,
)

log = logging.getLogger("retention.extract.chargebee")

COLUMNS = {
    # A record changed while its listing runs is listed twice in one run; the page it came
    # in orders the copies, so the merge keeps the later one.
    "_page_seq": {"data_type": "bigint", "dedup_sort": "desc"},
}


def changed_records(
    lister: ChargebeeLister, name: str, checkpoint_seconds: float | None = None
) -> Iterator[pa.Table]:
    """The records of endpoint `name` changed since this resource's cursor, as Arrow
    tables; a first run of a sliced endpoint lists it by windows instead. The cursor
    moves only once the listing is complete."""
    if not lister.serves(name):
        log.info("chargebee %s: not on this site's Product Catalog %s", name, lister.catalog())
        return
    state = dlt.current.resource_state(name)  # by name: parallel resources run in threads
    if state.get("cursor") is None and ENDPOINTS[name].created is not None:
        yield from tables(full_listing(lister, name, state, checkpoint_seconds))
    else:
        yield from tables(incremental_listing(lister, name, state))


def tables(pages: Iterable[list[dict]]) -> Iterator[pa.Table]:
    """The pages' records in Arrow tables of at least `common.BATCH_RECORDS` (`batched`),
    each record stamped with its page's number (`_page_seq`), so a record listed twice in
    one run is merged as its later copy."""
    stamped = (
        [record | {"_page_seq": seq} for record in records]
        for seq, records in enumerate(pages, start=1)
    )
    for batch in batched(stamped):
        yield to_arrow(batch)


def incremental_listing(lister: ChargebeeLister, name: str, state: dict) -> Iterator[list[dict]]:
    """The records changed since the state's cursor (all of them without one), page by
    page in `updated_at` order; the cursor is moved when the last page is in."""
    since = state.get("cursor")
    log.info("chargebee %s: listing %s", name, "all" if since is None else f"since {since}")
    progress = Progress(f"chargebee {name}")
    seen = Seen()
    for page in lister.pages(name, since):
        seen.add(page)
        progress.page(len(page.records))
        yield page.records
    progress.done()
    state["cursor"] = next_cursor(ENDPOINTS[name], since, seen)


def full_listing(
    lister: ChargebeeLister, name: str, state: dict, checkpoint_seconds: float | None
) -> Iterator[list[dict]]:
    """Every record of `name` by windows of its creation time, resumed from the state's
    pending windows if a run left some. A new listing opens with one request
    (`ChargebeeLister.opening`), its first page, which also reads the server's clock:
    less CLOCK_MARGIN_SECONDS it is the cursor the resource keeps when the listing ends,
    so the next incremental run lists everything created or changed meanwhile (a record
    changed during the listing may move to a window already listed)."""
    opening = None
    if not state.get(STATE_KEY):
        opening = lister.opening(name)
        now = opening.now
        state[PENDING_CURSOR_KEY] = None if now is None else now - CLOCK_MARGIN_SECONDS
        log.info("chargebee %s: full listing of created %s", name, opening.span or "nothing")
    progress = Progress(f"chargebee {name}")  # one line: the records, and the windows
    for records in sliced_listing(
        lister.windows(name, opening),
        state,
        (opening and opening.span) or (0, 0),
        workers=lister.workers,
        checkpoint_seconds=checkpoint_seconds,
        progress=progress,
    ):
        progress.page(len(records))
        yield records
    progress.done()
    if not state.get(STATE_KEY):
        state["cursor"] = state.pop(PENDING_CURSOR_KEY, None)


# parallelized: the resources page concurrently in dlt's extract threads; the lister caps
# the requests in flight and their pace across all of them. No resource argument has a
# default: dlt (1.31) wraps such a function for config injection, and a wrapped generator
# function is then run in the main thread, one resource after another, `parallelized` or
# not (customers, subscriptions and invoices did so, their listings' pages handed on one
# resource at a time).
_MERGED = {
    "primary_key": "id",
    "write_disposition": "merge",
    "columns": COLUMNS,
    "parallelized": True,
}


@dlt.resource(name="customers", **_MERGED)
def customers(lister: ChargebeeLister, checkpoint_seconds: float | None) -> Iterator[pa.Table]:
    """Customers, deleted ones included (`deleted` true)."""
    yield from changed_records(lister, "customers", checkpoint_seconds)


@dlt.resource(name="subscriptions", **_MERGED)
def subscriptions(lister: ChargebeeLister, checkpoint_seconds: float | None) -> Iterator[pa.Table]:
    """Subscriptions with their status as of the listing; items and coupons as JSON."""
    yield from changed_records(lister, "subscriptions", checkpoint_seconds)


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
def invoices(lister: ChargebeeLister, checkpoint_seconds: float | None) -> Iterator[pa.Table]:
    """Invoices, deleted ones included; line items as JSON."""
    yield from changed_records(lister, "invoices", checkpoint_seconds)


@dlt.resource(name="syncs", write_disposition="append")
def syncs(lister: ChargebeeLister, continues_listing: bool = False) -> Iterator[dict]:
    """One row per sync: Chargebee's clock at its start (the `Date` of a one-customer
    listing), the validation time T of the marts; none in a round that continues a full
    listing (`dlt_sources.common.sync_row`)."""
    if continues_listing:
        return
    yield sync_row(lister.server_time())


@dlt.source(name="chargebee")
def chargebee_source(
    api_key: str = dlt.secrets.value,
    site: str | None = None,
    base_url: str | None = None,
    page_size: int = 100,
    max_workers: int | None = None,
    requests_per_second: float | str | None = "auto",
    retry_policy: RetryPolicy | None = None,
    product_catalog: str = "auto",
    checkpoint_seconds: float | None = DEFAULT_CHECKPOINT_SECONDS,
    continues_listing: bool = False,
) -> list[DltResource]:
    """Chargebee customers, subscriptions, catalog (items and item prices, or plans and
    add-ons), coupons, invoices.

    Args:
        api_key: a read-only API key (`SOURCES__CHARGEBEE__API_KEY`).
        site: the site name, `<site>.chargebee.com` (`SOURCES__CHARGEBEE__SITE`); needed
            unless `base_url` is given.
        base_url: another API address (the sandbox); None = the site on chargebee.com.
        page_size: records per list page, 1..100 (Chargebee's maximum).
        max_workers: requests in flight at once across the resources and the windows of
            their full listings (Chargebee allows 50 concurrent GETs on its smallest
            plan); None = enough to keep the pace through Chargebee's latency
            (`helpers.default_workers`).
        requests_per_second: the pace of every request with this key in the process
            (`billing_clients.pacing.shared_bucket`): "auto" = the setting
            `SOURCES__CHARGEBEE__REQUESTS_PER_SECOND`, else the site plan's published
            limit (`SOURCES__CHARGEBEE__PLAN`) less the headroom kept for the cancel
            page's writes; a number = that pace; None/0 = none.
        retry_policy: attempts and backoff for 429s (honouring Retry-After), 5xx and
            dropped connections; the SDK's own retries stay off.
        product_catalog: the site's Product Catalog, `v1`, `v2`, or `auto`
            (`SOURCES__CHARGEBEE__PRODUCT_CATALOG`; default: ask `GET /configurations`).
        checkpoint_seconds: a first run's full listing stops starting requests after this
            long, and the run loads what it has, keeping the windows still to list in the
            state for the next run (`SOURCES__CHECKPOINT_SECONDS`, or
            `SOURCES__CHARGEBEE__CHECKPOINT_SECONDS`; default 60 s:
            `dlt_sources.slices.DEFAULT_CHECKPOINT_SECONDS`). None = list to the end in
            one run.
        continues_listing: this run continues a full listing an earlier run left
            unfinished (the runner says so, `orchestration.checkpoints`): it writes no
            `syncs` row, so T stays the clock at the listing's start.
    """
    if not base_url and not site:
        raise ValueError("chargebee: give `site` (SOURCES__CHARGEBEE__SITE) or a `base_url`")
    client = chargebee_client(api_key, site=site or "local", base_url=base_url)
    bucket = shared_bucket("chargebee", api_key, requests_per_second)
    workers = max_workers or default_workers(bucket)
    lister = ChargebeeLister(
        ChargebeeHttp(client, max_connections=workers),
        bucket,
        page_size=page_size,
        max_workers=workers,
        policy=retry_policy,
        product_catalog=product_catalog,
    )
    return [
        customers(lister, checkpoint_seconds),
        subscriptions(lister, checkpoint_seconds),
        items(lister),
        item_prices(lister),
        plans(lister),
        addons(lister),
        coupons(lister),
        invoices(lister, checkpoint_seconds),
        syncs(lister, continues_listing),
    ]
