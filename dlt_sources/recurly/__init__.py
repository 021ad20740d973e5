"""dlt source for Recurly (API v2021-02-25) through the official recurly SDK.

Six resources, one table each, merged on Recurly's `id`: `customers` (Recurly accounts;
`code` is the merchant's customer id), `subscriptions`, `plans`, `coupons`, `invoices`
and `coupon_redemptions` (both levels, read per account: see that resource).
Records are loaded as the API spells them, flattened by `common.to_arrow`: nested objects
become `a__b` columns (`account__code`, `plan__code`, `discount__type`), lists stay JSON
text (`currencies`, `coupon_redemptions`, `subscription_ids`, `line_items`). Money stays
in the API's major units as doubles (USD 49.0, JPY 4900.0); `*_at` fields are UTC
timestamps.

Incremental, per resource: `sort=updated_at&order=asc&begin_time=<cursor - lag>`, all
pages, with the cursor in dlt state (`dlt.sources.incremental("updated_at")`, committed
with the load package, so a failed run is simply re-run from the last committed cursor).
Why this loses nothing:
- ascending `updated_at` order: a record written while a run pages moves behind what the
  run has listed, so the same run lists it again, or, when it landed in the cursor's own
  second, the next run does (`begin_time` is inclusive);
- dlt's boundary dedup by `id` is off (`primary_key=()`): Recurly stamps `updated_at` to
  the second, so a record written twice in the cursor's second would be dropped as
  "already seen". Re-listed boundary records are merged on `id` instead, the newest
  `updated_at` winning (`dedup_sort`);
- `lag_seconds` re-reads the minute before the cursor, for writes committed after a
  listing passed their time stamp.
What `updated_at` cannot show: fields an object derives from others at read time. An
account's `has_*_subscription` flags are as of the account's own last update; the state
of a subscription belongs to the `subscriptions` table.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import dlt
import pyarrow as pa
from dlt.extract import DltResource

from billing_clients.retries import RateLimiter, RetryPolicy
from dlt_sources.common import sync_row
from dlt_sources.recurly import helpers
from dlt_sources.recurly.helpers import Settings


def updated_at_cursor(lag_seconds: float = 0) -> dlt.sources.incremental[datetime]:
    """The cursor every resource keeps: max `updated_at` loaded. No boundary dedup (see
    the module docstring); records without `updated_at` are kept, not dropped.

    The resources' own default has no lag: dlt merges an incremental passed in over the
    default field by field, skipping None, so a default lag could not be turned off."""
    return dlt.sources.incremental(
        "updated_at",
        lag=lag_seconds or None,
        primary_key=(),
        on_cursor_value_missing="include",
    )


# The resources' default cursor (dlt copies it per resource run; the source passes its own).
UPDATED_AT = updated_at_cursor()


def _recurly_resource(name: str) -> Callable:
    return dlt.resource(
        name=name,
        primary_key="id",
        write_disposition="merge",
        columns=helpers.column_hints(),
        parallelized=True,
    )


@_recurly_resource("customers")
def customers(
    settings: Settings, updated_at: dlt.sources.incremental[datetime] = UPDATED_AT
) -> Iterator[pa.Table]:
    """Recurly accounts (`/accounts`, unfiltered: closed accounts too, `state` inactive
    with `deleted_at`; the list has no state filter)."""
    yield from helpers.updated_since(settings, "customers", "/accounts", updated_at.start_value)


@_recurly_resource("subscriptions")
def subscriptions(
    settings: Settings, updated_at: dlt.sources.incremental[datetime] = UPDATED_AT
) -> Iterator[pa.Table]:
    """Subscriptions in every state (no `state` filter), with `account__code` and
    `plan__code` naming their customer and plan."""
    yield from helpers.updated_since(
        settings, "subscriptions", "/subscriptions", updated_at.start_value
    )


@_recurly_resource("plans")
def plans(
    settings: Settings, updated_at: dlt.sources.incremental[datetime] = UPDATED_AT
) -> Iterator[pa.Table]:
    """Plans of every state: no `state` filter, which the OpenAPI gives no default, so
    retired (`inactive`) plans that live subscriptions still bill are listed too. Prices
    per currency are in `currencies` (JSON, the plan's own first)."""
    yield from helpers.updated_since(settings, "plans", "/plans", updated_at.start_value)


@_recurly_resource("coupons")
def coupons(
    settings: Settings, updated_at: dlt.sources.incremental[datetime] = UPDATED_AT
) -> Iterator[pa.Table]:
    """Coupons of every state (the list has no state filter: expired ones, which existing
    redemptions still name, too); `discount__type` is percent or fixed
    (`discount__currencies`, JSON)."""
    yield from helpers.updated_since(settings, "coupons", "/coupons", updated_at.start_value)


@_recurly_resource("invoices")
def invoices(
    settings: Settings, updated_at: dlt.sources.incremental[datetime] = UPDATED_AT
) -> Iterator[pa.Table]:
    """Invoices of every type (charge, credit, legacy) and state, unfiltered;
    `subscription_ids` (JSON) links subscriptions."""
    yield from helpers.updated_since(settings, "invoices", "/invoices", updated_at.start_value)


@dlt.resource(
    name="coupon_redemptions",
    primary_key="id",
    write_disposition="merge",
    columns=helpers.column_hints(),
)
def coupon_redemptions(settings: Settings, lag_seconds: float = 0) -> Iterator[pa.Table]:
    """Coupon redemptions of both levels (`subscription_id` null = account level, which
    Recurly lists only under the account), read per account for the accounts updated
    since this resource's account cursor. That cursor (the last listed account's
    `updated_at`, less `lag_seconds`) is kept in the resource's dlt state, committed with
    the load package like the incremental cursors. A redemption moves its account's
    `updated_at` (an assumption recorded in the decision log): a first sync costs one
    request per account."""
    state = dlt.current.resource_state()
    stored = state.get("accounts_updated_at")
    since = datetime.fromisoformat(stored) - timedelta(seconds=lag_seconds) if stored else None
    for table, last in helpers.account_redemptions(settings, since):
        if table is not None:
            yield table
        state["accounts_updated_at"] = max(stored or "", last.isoformat())


@dlt.resource(name="syncs", write_disposition="append")
def syncs(settings: Settings) -> Iterator[dict]:
    """One row per run: Recurly's clock at its start, the validation time T of the marts."""
    yield sync_row(helpers.server_time(settings))


@dlt.source(name="recurly")
def recurly_source(
    api_key: str = dlt.secrets.value,
    base_url: str | None = None,
    region: str | None = None,
    page_size: int = helpers.MAX_PAGE_SIZE,
    max_workers: int = helpers.DEFAULT_MAX_WORKERS,
    requests_per_second: float | None = helpers.DEFAULT_REQUESTS_PER_SECOND,
    lag_seconds: float = helpers.DEFAULT_LAG_SECONDS,
    retry_policy: RetryPolicy | None = None,
) -> list[DltResource]:
    """Recurly customers, subscriptions, plans, coupons, invoices and coupon redemptions,
    incremental.

    Args:
        api_key: a private API key (`SOURCES__RECURLY__API_KEY`); never logged or stored.
        base_url: another API host, e.g. the sandbox (`SOURCES__RECURLY__BASE_URL`);
            None = Recurly, in the site's region.
        region: the site's data region (`SOURCES__RECURLY__REGION`, config
            `sources.recurly.region`): `us` (v3.recurly.com, the default) or `eu`
            (v3.eu.recurly.com). The write-backs read the same setting.
        page_size: records per page, 1-200 (200 = fewest requests against the limit).
        max_workers: API requests in flight at once across the resources, which page
            concurrently (each on its own client). Default 5, one per resource.
        requests_per_second: client-side pace shared by all resources. Default 5/s
            (300/min): under a sandbox site's 400 requests/min and a production site's
            1,000 GET/min. None or 0 = unpaced (local sandbox only).
        lag_seconds: how far before the cursor each incremental run starts. Default 60.
        retry_policy: attempts and backoff for 429, 5xx and dropped connections.
    """
    if not 1 <= page_size <= helpers.MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1 to {helpers.MAX_PAGE_SIZE}, not {page_size}")
    settings = Settings(
        api_key=api_key,
        base_url=base_url,
        region=region,
        page_size=page_size,
        limiter=RateLimiter(requests_per_second),
        slots=threading.BoundedSemaphore(max_workers),
        retry_policy=retry_policy,
    )
    return [
        *(
            resource(settings, updated_at=updated_at_cursor(lag_seconds))
            for resource in (customers, subscriptions, plans, coupons, invoices)
        ),
        coupon_redemptions(settings, lag_seconds=lag_seconds),
        syncs(settings),
    ]
