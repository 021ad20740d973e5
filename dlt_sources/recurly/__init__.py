"""dlt source for Recurly (API v2021-02-25) through the official recurly SDK.

Six resources, one table each, merged on Recurly's `id`: `customers` (Recurly accounts;
`code` is the merchant's customer id), `subscriptions`, `plans`, `coupons`, `invoices`
and `coupon_redemptions` (both levels, read per account: see that resource).
Records are loaded as the API spells them, flattened by `common.to_arrow`: nested objects
become `a__b` columns (`account__code`, `plan__code`, `discount__type`), lists stay JSON
text (`currencies`, `coupon_redemptions`, `subscription_ids`, `line_items`). Money stays
in the API's major units as doubles (USD 49.0, JPY 4900.0); `*_at` fields are UTC
timestamps.

First sync, per resource: a full listing by `created_at` in windows listed concurrently
(`dlt_sources.slices`: `sort=created_at&order=asc`, `begin_time`/`end_time`, dense windows
split), each request on an SDK client of its own (a pool). It may stop at a checkpoint
(`checkpoint_seconds`): the pending windows stay in the resource's dlt state
(`slices`), the load commits them, and the next run continues them. The cursor the next
incremental run starts from is Recurly's clock before the listing began, kept aside
(`slices_cursor`) until the listing is complete: whatever was created or changed while it
ran has `updated_at` at or after that time.

Incremental, per resource: `sort=updated_at&order=asc&begin_time=<cursor - lag>`, all
pages, with the cursor (the newest `updated_at` listed) in the resource's dlt state,
committed with the load package, so a failed run is simply re-run from the last
committed cursor. Why this loses nothing:
- ascending `updated_at` order: a record written while a run pages moves behind what the
  run has listed, so the same run lists it again, or, when it landed in the cursor's own
  second, the next run does (`begin_time` is inclusive);
- no boundary dedup by `id`: Recurly stamps `updated_at` to the second, so a record
  written twice in the cursor's second must be listed again, not dropped as "already
  seen". Re-listed records are merged on `id`, the newest `updated_at` winning
  (`dedup_sort`);
- `lag_seconds` re-reads the minute before the cursor, for writes committed after a
  listing passed their time stamp.
What `updated_at` cannot show: fields an object derives from others at read time. An
account's `has_*_subscription` flags are as of the account's own last update; the state
of a subscription belongs to the `subscriptions` table.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import dlt
import pyarrow as pa
from dlt.extract import DltResource

from billing_clients.pacing import shared_bucket
from billing_clients.retries import RetryPolicy
from dlt_sources.common import sync_row
from dlt_sources.recurly import helpers
from dlt_sources.recurly.helpers import Settings
from dlt_sources.slices import DEFAULT_CHECKPOINT_SECONDS


def _recurly_resource(name: str) -> Callable:
    """A resource of Recurly records merged on `id`. `parallelized`: the resources page
    at the same time (an incremental run's listings are one page after another each)."""
    return dlt.resource(
        name=name,
        primary_key="id",
        write_disposition="merge",
        columns=helpers.column_hints(),
        parallelized=True,
    )


def _listed(settings: Settings, name: str, path: str) -> Iterator[pa.Table]:
    """A listed endpoint's run, with its state named: a parallelized resource's generator
    runs in a worker thread, where dlt cannot tell the resource from the call stack."""
    state = dlt.current.resource_state(name)
    yield from helpers.resource_listing(settings, name, path, state)


@_recurly_resource("customers")
def customers(settings: Settings) -> Iterator[pa.Table]:
    """Recurly accounts (`/accounts`, unfiltered: closed accounts too, `state` inactive
    with `deleted_at`; the list has no state filter)."""
    yield from _listed(settings, "customers", "/accounts")


@_recurly_resource("subscriptions")
def subscriptions(settings: Settings) -> Iterator[pa.Table]:
    """Subscriptions in every state (no `state` filter), with `account__code` and
    `plan__code` naming their customer and plan."""
    yield from _listed(settings, "subscriptions", "/subscriptions")


@_recurly_resource("plans")
def plans(settings: Settings) -> Iterator[pa.Table]:
    """Plans of every state: no `state` filter, which the OpenAPI gives no default, so
    retired (`inactive`) plans that live subscriptions still bill are listed too. Prices
    per currency are in `currencies` (JSON, the plan's own first)."""
    yield from _listed(settings, "plans", "/plans")


@_recurly_resource("coupons")
def coupons(settings: Settings) -> Iterator[pa.Table]:
    """Coupons of every state (the list has no state filter: expired ones, which existing
    redemptions still name, too); `discount__type` is percent or fixed
    (`discount__currencies`, JSON)."""
    yield from _listed(settings, "coupons", "/coupons")


@_recurly_resource("invoices")
def invoices(settings: Settings) -> Iterator[pa.Table]:
    """Invoices of every type (charge, credit, legacy) and state, unfiltered;
    `subscription_ids` (JSON) links subscriptions."""
    yield from _listed(settings, "invoices", "/invoices")


@_recurly_resource("coupon_redemptions")
def coupon_redemptions(settings: Settings) -> Iterator[pa.Table]:
    """Coupon redemptions of both levels (`subscription_id` null = account level, which
    Recurly lists only under the account), read per account, several accounts at once:
    every account on the first sync, then the accounts updated since this resource's
    account cursor (`accounts_updated_at` in its dlt state, less the lag), none at all on a
    site without coupons. A redemption moves its account's `updated_at` (an assumption
    recorded in the decision log): a first sync costs one request per account."""
    state = dlt.current.resource_state("coupon_redemptions")
    yield from helpers.account_redemptions(settings, state)


@dlt.resource(name="syncs", write_disposition="append")
def syncs(settings: Settings, continues_listing: bool = False) -> Iterator[dict]:
    """One row per sync: Recurly's clock at its start, the validation time T of the marts;
    none in a round that continues a full listing (`dlt_sources.common.sync_row`)."""
    if continues_listing:
        return
    yield sync_row(helpers.server_time(settings))


@dlt.source(name="recurly")
def recurly_source(
    api_key: str = dlt.secrets.value,
    base_url: str | None = None,
    region: str | None = None,
    page_size: int = helpers.MAX_PAGE_SIZE,
    max_workers: int | None = None,
    requests_per_second: float | str | None = "auto",
    lag_seconds: float = helpers.DEFAULT_LAG_SECONDS,
    checkpoint_seconds: float | None = DEFAULT_CHECKPOINT_SECONDS,
    retry_policy: RetryPolicy | None = None,
    continues_listing: bool = False,
) -> list[DltResource]:
    """Recurly customers, subscriptions, plans, coupons, invoices and coupon redemptions:
    a sliced full listing on the first sync, incremental after.

    Args:
        api_key: a private API key (`SOURCES__RECURLY__API_KEY`); never logged or stored.
        base_url: another API host, e.g. the sandbox (`SOURCES__RECURLY__BASE_URL`);
            None = Recurly, in the site's region.
        region: the site's data region (`SOURCES__RECURLY__REGION`, config
            `sources.recurly.region`): `us` (v3.recurly.com, the default) or `eu`
            (v3.eu.recurly.com). The write-backs read the same setting.
        page_size: records per page, 1-200 (200 = fewest requests against the limit).
        max_workers: API requests in flight at once across the resources (each on an
            SDK client of its own, kept with its connection for later requests), and
            the threads that list each full listing's windows and read redemptions.
            None (the default) = the pace times a 1 s round trip plus one
            (`helpers.default_workers`): 16 at a production site's limit, 7 at a
            sandbox site's, 8 unpaced.
        requests_per_second: the pace of every request with this key in the process
            (all resources, their workers and the write-backs: one shared bucket,
            `billing_clients.pacing.shared_bucket`). "auto" = the site's published
            limit (`SOURCES__RECURLY__SITE_MODE`: production 1,000 GET/min, sandbox
            400/min) less `SOURCES__RECURLY__RATE_HEADROOM` (0.1) for the cancel
            page's writes; a number = that many a second; None or 0 = unpaced (the
            local sandbox only).
        lag_seconds: how far before the cursor each incremental run starts. Default 60.
        checkpoint_seconds: a full listing stops starting windows after this long and
            the run ends, its progress in the resources' state; the next run goes on
            from there (`retention extract` runs again until it is done;
            `SOURCES__CHECKPOINT_SECONDS`, or `SOURCES__RECURLY__CHECKPOINT_SECONDS`;
            default 60 s: `dlt_sources.slices.DEFAULT_CHECKPOINT_SECONDS`). None = list
            to the end in one run.
        retry_policy: attempts and backoff for 429, 5xx and dropped connections.
        continues_listing: this run continues a full listing an earlier run left
            unfinished (the runner says so, `orchestration.checkpoints`): it writes no
            `syncs` row, so T stays the clock at the listing's start.
    """
    if not 1 <= page_size <= helpers.MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1 to {helpers.MAX_PAGE_SIZE}, not {page_size}")
    if max_workers is not None and max_workers < 1:
        raise ValueError(f"max_workers must be 1 or more, not {max_workers}")
    limiter = shared_bucket("recurly", api_key, requests_per_second)
    workers = max_workers or helpers.default_workers(limiter)
    settings = Settings(
        api_key=api_key,
        base_url=base_url,
        region=region,
        page_size=page_size,
        limiter=limiter,
        workers=workers,
        slots=threading.BoundedSemaphore(workers),
        retry_policy=retry_policy,
        lag_seconds=lag_seconds,
        checkpoint_seconds=checkpoint_seconds,
    )
    return [
        *(resource(settings) for resource in (customers, subscriptions, plans, coupons, invoices)),
        coupon_redemptions(settings),
        syncs(settings, continues_listing),
    ]
