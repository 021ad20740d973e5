"""dlt source for Stripe: customers, subscriptions, prices, products, coupons, invoices and
the events that announce their changes, one table each, merged on `id`.

First run: every object is listed (subscriptions with `status=all`, so canceled ones too).
Later runs read `/v1/events` from each resource's cursor and refetch only the objects the
events name (read back from their list in `created` windows around them, or by id),
because Stripe objects have no `updated` field to filter a list on. The
cursor follows Stripe's clock when the account is quiet, so only runs more than Stripe's
30-day event window apart fall back to a full listing (logged with why).
See `helpers.py` for why this loses nothing.

Objects are read at the API version the SDK pins (2026-10-28.endive): a subscription's plan,
price, quantity and periods are on its items, its coupons on `discounts`, which are ids
unless expanded, so listings ask for `expand[]=data.discounts` (retrieves `discounts`);
prices ask for `data.tiers` and `data.currency_options` (the amounts a subscription in
another currency bills), which Stripe sends only when expanded. Stripe expands four
levels at most, `data.` counting as one (`Endpoint` refuses a deeper path).

Deleted customers, coupons and products are listed no more: their deletion events carry
their last state, which the table keeps with `deleted = true` (on a full listing, the
deletions of the last 30 days; older ones are beyond any API's reach).

Records keep Stripe's own shape and units: amounts in the currency's minor unit (JPY has
none, so 4900 is ¥4,900), times as epoch seconds. Nested objects become `a__b` columns and
lists (subscription items, invoice lines, discounts) one JSON text column each; events
carry their object as JSON text (`data__object`).

First runs list each resource in `created` windows, several at once (`max_workers` per
resource), splitting the windows where objects are dense (`dlt_sources.slices`); a run
given `checkpoint_seconds` loads what it listed by then and the next run continues.

Limits: Stripe allows 100 read requests/s in live mode and 25/s in test mode. Every request
of the key in the process waits on one token bucket (`billing_clients.pacing`), by default
at the key's mode's limit less the headroom kept for the cancel page's writes, and on its
operation's bucket (Stripe allows 25 requests/s on each named operation, e.g. `GET
/v1/invoices`): one resource alone cannot use the whole live limit, four at once can.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import dlt
import pyarrow as pa
from dlt.extract.resource import DltResource

from billing_clients.pacing import TokenBucket, shared_bucket
from billing_clients.retries import RetryPolicy, http_date
from billing_clients.sdk import stripe_client
from dlt_sources.common import Progress, batched, sync_row, to_arrow
from dlt_sources.slices import DEFAULT_CHECKPOINT_SECONDS
from dlt_sources.stripe.helpers import StripeApi, event_row, sync

_MERGED = {"primary_key": "id", "write_disposition": "merge", "parallelized": True}


def _tables(
    api: StripeApi, name: str, shape: Callable[[list[dict]], list[dict]] | None = None
) -> Iterator[pa.Table]:
    """The resource's records for this run in Arrow tables of 1,000 or more
    (`common.batched`: dlt's extract pays per table)."""
    # Named explicitly: parallelized resources run in dlt's worker threads, where dlt
    # cannot always tell which resource is asking.
    state = dlt.current.resource_state(name)
    progress = Progress(f"stripe {name}")

    def pages() -> Iterator[list[dict]]:
        for page in sync(api, name, state, progress):
            progress.page(len(page))
            yield page if shape is None else shape(page)

    for batch in batched(pages()):
        yield to_arrow(batch)
    progress.done()


@dlt.resource(name="customers", **_MERGED)
def customers(api: StripeApi) -> Iterator[pa.Table]:
    yield from _tables(api, "customers")


@dlt.resource(name="subscriptions", **_MERGED)
def subscriptions(api: StripeApi) -> Iterator[pa.Table]:
    """Every status, canceled included; `items__data` (the items, with their price, plan,
    quantity and periods; every item, also past the first ones Stripe embeds) and
    `discounts` (expanded Discount objects) are JSON text."""
    yield from _tables(api, "subscriptions", api.with_all_items)


@dlt.resource(name="prices", **_MERGED)
def prices(api: StripeApi) -> Iterator[pa.Table]:
    """Active and archived prices; `tiers` and `currency_options` (JSON text), which Stripe
    sends only when expanded."""
    yield from _tables(api, "prices")


@dlt.resource(name="products", **_MERGED)
def products(api: StripeApi) -> Iterator[pa.Table]:
    yield from _tables(api, "products")


@dlt.resource(name="coupons", **_MERGED)
def coupons(api: StripeApi) -> Iterator[pa.Table]:
    yield from _tables(api, "coupons")


@dlt.resource(name="invoices", **_MERGED)
def invoices(api: StripeApi) -> Iterator[pa.Table]:
    """`lines__data` holds the invoice lines as JSON (every line, also past the first
    page Stripe embeds)."""
    yield from _tables(api, "invoices", api.with_all_lines)


@dlt.resource(name="events", **_MERGED)
def events(api: StripeApi) -> Iterator[pa.Table]:
    """The events Stripe kept (30 days) on the first run, then those since the cursor."""
    yield from _tables(api, "events", lambda page: [event_row(event) for event in page])


@dlt.resource(name="syncs", write_disposition="append")
def syncs(api: StripeApi, continues_listing: bool = False) -> Iterator[dict]:
    """One row per sync: Stripe's clock at its start, the validation time T of the marts;
    none in a round that continues a full listing (`dlt_sources.common.sync_row`)."""
    if continues_listing:
        return
    _, headers = api.get("/v1/events", limit=1)
    yield sync_row(http_date(headers.get("date")))


@dlt.source(name="stripe")
def stripe_source(
    api_key: str = dlt.secrets.value,
    base_url: str | None = None,
    page_size: int = 100,
    max_workers: int | None = None,
    requests_per_second: float | str | None = "auto",
    retry_policy: RetryPolicy | None = None,
    checkpoint_seconds: float | None = DEFAULT_CHECKPOINT_SECONDS,
    continues_listing: bool = False,
) -> list[DltResource]:
    """Stripe billing objects and events.

    Args:
        api_key: secret or restricted key with read access (`SOURCES__STRIPE__API_KEY`).
        base_url: another API address (the sandbox); None = api.stripe.com.
        page_size: objects per list page, 1..100 (Stripe's maximum).
        max_workers: requests in flight at once per resource: the windows of a full
            listing, an incremental run's read-back groups and refetches by id, a page's
            cut embedded lists being completed. None = the pace of one
            operation (Stripe allows 25/s on each, beside the key's global limit) times
            Stripe's latency (0.5 s) plus one: 13 in live mode, 12 in test mode; 4
            unpaced.
        requests_per_second: the pace of every request with this key in the process
            (`billing_clients.pacing.shared_bucket`): "auto" = the setting
            `SOURCES__STRIPE__REQUESTS_PER_SECOND`, else the key's mode's published limit
            (live 100/s, test 25/s) less the headroom kept for the cancel page's writes
            (`SOURCES__STRIPE__RATE_HEADROOM`); a number = that pace; None/0 = none.
        retry_policy: attempts and backoff for 429s, 5xx and dropped connections
            (the SDK itself retries 5xx and connections 3 times first).
        checkpoint_seconds: a full listing stops starting requests after this long, and
            the run loads what it has, keeping the windows still to list in the state
            for the next run (`SOURCES__CHECKPOINT_SECONDS`, or
            `SOURCES__STRIPE__CHECKPOINT_SECONDS`; default 60 s:
            `dlt_sources.slices.DEFAULT_CHECKPOINT_SECONDS`). None = list to the end in
            one run.
        continues_listing: this run continues a full listing an earlier run left
            unfinished (the runner says so, `orchestration.checkpoints`): it writes no
            `syncs` row, so T stays the clock at the listing's start.
    """

    def pacing(operation: str) -> TokenBucket:
        return shared_bucket("stripe", api_key, requests_per_second, endpoint=operation)

    api = StripeApi(
        stripe_client(api_key, base_url),
        pacing,
        page_size=page_size,
        max_workers=max_workers,
        policy=retry_policy,
        checkpoint_seconds=checkpoint_seconds,
    )
    return [
        customers(api),
        subscriptions(api),
        prices(api),
        products(api),
        coupons(api),
        invoices(api),
        events(api),
        syncs(api, continues_listing),
    ]
