"""Recurly v2021-02-25 list calls for the dlt source: pages, retries, pacing, Arrow.

Why pages are read as raw JSON: the SDK's pager casts every record into its object model
and keeps no body for list pages (a `Page` carries no response). That model is slow
(~4,500 records/s against ~16,000 for the same pages parsed with orjson, measured on the
sandbox), sets fields its schema does not know to None outside strict mode, and turns
JPY's whole-number amounts into floats. So a page is requested the way the SDK's
`BaseClient._make_request` does it, on the client's own connection with the SDK's
headers (user agent, basic auth, the client's API version), answered through the SDK's
`Response` and, on an error status, raised as the SDK's own error class
(`Resource.cast_error`); only the body is parsed with orjson instead of cast. Later pages
are the answer's `next`, requested verbatim as the SDK's pager does (it carries every
filter).

Full listings (a first sync, or one a checkpoint left unfinished) go through the sliced
engine (`dlt_sources.slices`): `created_at` windows listed concurrently, each request on
an SDK client borrowed from the source's pool (`ClientPool`). Incremental runs list `updated_at` from the cursor, one
page after another, as before. Which one a run does, and the cursor it keeps, is
`resource_listing`'s to decide, from the resource's dlt state.
"""

from __future__ import annotations

import contextlib
import threading
from base64 import b64encode
from collections.abc import Callable, Iterator, MutableMapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from urllib.parse import quote, urlencode

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import recurly
from recurly import errors
from recurly.resource import Resource

from billing_clients.pacing import TokenBucket
from billing_clients.recurly import CLASSIFIER, reset_on_network_error
from billing_clients.retries import RetryPolicy, http_date, with_retries
from billing_clients.sdk import recurly_client
from dlt_sources.common import Progress, batched, to_arrow, workers_for
from dlt_sources.slices import PENDING_CURSOR_KEY, STATE_KEY, Page, Window, sliced_listing

MAX_PAGE_SIZE = 200  # the API's largest `limit`
# Requests in flight at once across the source, by default the pace times this round trip
# (`dlt_sources.common.workers_for`): a production site's ~14.7 requests/s (1,000 GET/min
# less the write headroom) through 1 s takes 16. A page takes 300-400 ms on an idle
# network, but a slow API, or a client on a busy machine, stretches it: 8 in flight (the
# session-6 default) kept the pace only while the mean stayed under 8 / 14.7 = 0.54 s,
# and fell to 0.69 of the limit at 100,000 customers beside the other sources. More than
# the pace needs only queue on the bucket.
LATENCY_SECONDS = 1.0
# Without pacing (the local sandbox): more threads only contend for the cores.
UNPACED_WORKERS = 8
# Re-read the last minute before the cursor every run: a write stamped just before a
# listing passed its time but committed after it would otherwise never be listed.
DEFAULT_LAG_SECONDS = 60.0

# Money and rates are JSON numbers in major units: 49.0 for USD but 4900 for JPY, so a page
# holding only JPY records would make an integer column where the next page makes a
# double. Columns whose last name part is one of these (`total`, `tax_info__rate`,
# `pending_change__unit_amount`) are always doubles; counts (`quantity`) stay integers.
DOUBLE_FIELDS = frozenset(
    {
        "unit_amount",
        "setup_fee",
        "add_ons_total",
        "subtotal",
        "subtotal_after_discount",
        "discount",
        "tax",
        "total",
        "refundable_amount",
        "paid",
        "balance",
        "amount",
        "rate",
    }
)
_TIMESTAMP = pa.timestamp("us", tz="UTC")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


# --------------------------------------------------------------------------- settings


@dataclass
class Settings:
    """What every resource of one source run shares: credentials, paging, pacing.

    `workers` threads list each full listing (and read redemptions); `slots` caps the
    requests in flight across all of them, `limiter` paces them all, and `clients` lends
    each request an SDK client (see ClientPool)."""

    api_key: str = field(repr=False)
    base_url: str | None = None
    region: str | None = None
    page_size: int = MAX_PAGE_SIZE
    limiter: TokenBucket = field(default_factory=lambda: TokenBucket(None))
    workers: int = UNPACED_WORKERS
    slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(UNPACED_WORKERS)
    )
    retry_policy: RetryPolicy | None = None
    lag_seconds: float = 0.0
    checkpoint_seconds: float | None = None
    clients: ClientPool = field(init=False, repr=False)
    clock: RunClock = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.clients = ClientPool(self.api_key, self.base_url, self.region)
        self.clock = RunClock(partial(_read_clock, self))


class RunClock:
    """Recurly's clock at a run's start, read once per source run and shared by whoever
    asks: the `syncs` row (T) and every full listing's cursor. The first caller reads it
    (one request); the others, asking at the same moment from their own threads, wait
    for that answer instead of sending a request each (seven a run before). A listing
    that starts later than the reading gets a cursor a little earlier than its own
    start, which only re-reads more on the next incremental run: never less. A failed
    reading is not kept, so the next caller tries again."""

    def __init__(self, read: Callable[[], datetime | None]):
        self._read = read
        self._lock = threading.Lock()
        self._value: tuple[datetime | None] | None = None

    def now(self) -> datetime | None:
        """The run's clock (None: Recurly's answer had no usable `Date` header)."""
        with self._lock:
            if self._value is None:
                self._value = (self._read(),)
            return self._value[0]


def default_workers(limiter: TokenBucket) -> int:
    """Requests in flight that keep `limiter`'s pace through Recurly's latency (see
    LATENCY_SECONDS); UNPACED_WORKERS without a pace."""
    return workers_for(limiter.rate, LATENCY_SECONDS, UNPACED_WORKERS)


# --------------------------------------------------------------------------- pages


class ClientPool:
    """The SDK clients of one source run, lent out one request at a time. A Recurly
    client keeps one persistent connection and is not safe to share between threads, so
    a request borrows an idle client (or makes one when none is idle) and gives it back:
    each client serves one request at a time and keeps its connection open for the next,
    and no more clients exist than requests were ever in flight at once (a client costs
    ~30 ms of CPU to make, for its TLS context)."""

    def __init__(self, api_key: str, base_url: str | None, region: str | None):
        self._make = partial(recurly_client, api_key, base_url, region=region)
        self._idle: list[recurly.Client] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def lease(self) -> Iterator[recurly.Client]:
        with self._lock:
            client = self._idle.pop() if self._idle else None
        client = client or self._make()
        try:
            yield client
        finally:
            with self._lock:
                self._idle.append(client)


class RecurlyLister:
    """Lists endpoints, from any number of threads: each request borrows a client of the
    source's pool (`Settings.clients`) within its worker slot."""

    def __init__(self, settings: Settings):
        self.settings = settings
        basic = b64encode(f"{settings.api_key}:".encode("ascii")).decode("ascii")
        self._headers = {"User-Agent": recurly.USER_AGENT, "Authorization": f"Basic {basic}"}

    def get(self, path: str) -> dict:
        """One GET within a worker slot, paced by the shared bucket; no retry here. The
        slot is taken first, so the token's time is when the request goes out (a request
        paced first and then kept waiting for a slot would go out late, in a bunch)."""
        with self.settings.slots:
            self.settings.limiter.wait()
            return self._request(path)

    def date(self, path: str) -> str | None:
        """The `Date` header of one paced GET (with retries): the API's clock."""

        def call() -> recurly.Response:
            with self.settings.slots:
                self.settings.limiter.wait()
                return self._response(path)

        return with_retries(call, CLASSIFIER, "recurly clock", self.settings.retry_policy).date

    def _request(self, path: str) -> dict:
        return orjson.loads(self._response(path).body)

    def _response(self, path: str) -> recurly.Response:
        with self.settings.clients.lease() as client, reset_on_network_error(client):
            connection = client._BaseClient__conn
            accept = f"application/vnd.recurly.{client.api_version()}"  # the SDK's version
            connection.request("GET", path, headers={**self._headers, "Accept": accept})
            response = recurly.Response(connection.getresponse(), recurly.Request("GET", path))
        if response.status >= 400:
            raise Resource.cast_error(response) if response.body else _bodiless_error(response)
        return response

    def fetch(self, url: str, what: str) -> dict:
        """One page: a paced GET, retried on rate limits and transient failures."""
        return with_retries(partial(self.get, url), CLASSIFIER, what, self.settings.retry_policy)

    def pages(self, path: str, params: dict[str, str | int], what: str) -> Iterator[list[dict]]:
        """Every page's records, following `next` verbatim until `has_more` is false."""
        url: str | None = f"{path}?{urlencode(params)}"
        while url:
            page = self.fetch(url, what)
            yield page["data"]
            url = page["next"] if page["has_more"] else None


def _bodiless_error(response: recurly.Response) -> recurly.ApiError:
    """An error status without a body (a proxy's 502/503). The SDK raises a bare ApiError
    here; the status's own class, as `cast_error` picks for a non-JSON body, keeps a 5xx
    recognisable as one."""
    name = errors.ERROR_MAP.get(response.status)
    error_class = getattr(errors, name) if name else recurly.ApiError
    return error_class(
        f"Unexpected {response.status} Error. Recurly Request Id: {response.request_id}", None
    )


class CreatedAtWindows:
    """The sliced engine's `WindowLister` for one endpoint: `sort=created_at&order=asc`
    from `begin_time` to `end_time`. `created_at` never changes, so a record written while
    the listing runs stays in its window (its new version is the next incremental run's).
    Recurly's two bounds are inclusive: the window's exclusive `hi` is asked for as the
    end, and records stamped at `hi` (the next window's) are dropped here; asking for
    `hi - 1` instead would lose a record stamped between the two seconds if the API keeps
    sub-second times. A window continues with its `next` path, requested verbatim (it
    carries every filter)."""

    descending = False

    def __init__(self, settings: Settings, name: str, path: str):
        self.name, self.path, self.settings = f"recurly {name}", path, settings
        self.lister = RecurlyLister(settings)

    def page(self, window: Window) -> Page:
        """One request (and its retries), on a client borrowed from the source's pool."""
        url = window.cursor or self.first_url(window)
        body = self.lister.fetch(url, f"{self.name} page")
        inside = [r for r in body["data"] if window.lo <= self.stamp(r) < window.hi]
        return Page(inside, body["next"] if body["has_more"] else None)

    def first_url(self, window: Window) -> str:
        params = {
            "limit": self.settings.page_size,
            "sort": "created_at",
            "order": "asc",
            "begin_time": format_time(datetime.fromtimestamp(window.lo, UTC)),
            "end_time": format_time(datetime.fromtimestamp(window.hi, UTC)),
        }
        return f"{self.path}?{urlencode(params)}"

    @staticmethod
    def stamp(record: dict) -> int:
        """`created_at` in whole epoch seconds (floored)."""
        return int(parse_time(record["created_at"]).timestamp())


def _read_clock(settings: Settings) -> datetime | None:
    """Recurly's clock now, from the `Date` of a one-record account listing."""
    return http_date(RecurlyLister(settings).date("/accounts?limit=1"))


def server_time(settings: Settings) -> datetime | None:
    """Recurly's clock at the run's start (`Settings.clock`: one request per run)."""
    return settings.clock.now()


def api_clock(settings: Settings) -> datetime:
    """Recurly's clock, required: a full listing's cursor is the API's time before it
    began, and the local clock may not be the one Recurly stamps records with."""
    now = server_time(settings)
    if now is None:
        raise RuntimeError(
            "Recurly answered without a Date header: a full listing needs the API's clock "
            "to know where the next incremental run starts. Check the base URL points at "
            "Recurly (or the sandbox), not at a proxy that strips headers."
        )
    return now


def format_time(value: datetime) -> str:
    """Recurly's timestamp spelling; sub-second parts are dropped (floor), so a begin_time
    made from a cursor never starts after it."""
    return value.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(value: str) -> datetime:
    """An API timestamp (ISO 8601, `Z` for UTC) as an aware datetime."""
    return datetime.fromisoformat(value).astimezone(UTC)


# --------------------------------------------------------------------------- runs and cursors


UPDATED_AT = "updated_at"  # a resource's cursor: the newest `updated_at` it has listed
ACCOUNTS_UPDATED_AT = "accounts_updated_at"  # coupon_redemptions': its accounts' newest


def stored_cursor(state: MutableMapping, key: str) -> datetime | None:
    """The resource's cursor; None before its first full listing completed (or while
    one is unfinished). Sources before the sliced listings kept it in dlt's incremental
    state: that value is read once, so an upgrade does not start over with a full sync."""
    if state.get(STATE_KEY):
        return None
    value = state.get(key)
    if value is None and key == UPDATED_AT:
        value = state.get("incremental", {}).get(UPDATED_AT, {}).get("last_value")
    if value is None:
        return None
    return value.astimezone(UTC) if isinstance(value, datetime) else parse_time(str(value))


def _advance(state: MutableMapping, key: str, records: list[dict]) -> None:
    """Move the cursor to the newest `updated_at` among `records`, never back."""
    stamps = [parse_time(r["updated_at"]) for r in records if r.get("updated_at")]
    current = stored_cursor(state, key)
    newest = max([*stamps, *([current] if current else [])], default=None)
    if newest is not None:
        state[key] = newest.isoformat()


def resource_listing(
    settings: Settings, name: str, path: str, state: MutableMapping
) -> Iterator[pa.Table]:
    """One resource's run, one Arrow table per 1,000 records or more (`common.batched`:
    dlt's extract pays per table): an incremental listing
    from the cursor in `state` (its dlt resource state), or, with no cursor yet or a full
    listing unfinished, the sliced full listing (see `full_listing`)."""
    cursor = stored_cursor(state, UPDATED_AT)
    if cursor is not None:
        begin = cursor - timedelta(seconds=settings.lag_seconds)
        yield from updated_since(settings, name, path, begin, state)
        return
    windows = CreatedAtWindows(settings, name, path)
    for records in batched(full_listing(settings, windows, state, UPDATED_AT)):
        yield page_table(records)


def full_listing(
    settings: Settings,
    windows: CreatedAtWindows,
    state: MutableMapping,
    cursor_key: str,
    began: datetime | None = None,
    workers: int | None = None,
) -> Iterator[list[dict]]:
    """Every record of `windows`' endpoint created before the listing began, through the
    sliced engine (concurrent windows, progress in `state["slices"]`, resumed from there
    after a checkpoint). The cursor is the API's clock before the first page (`began`, or
    read now), kept aside until the listing is complete and then stored as
    `state[cursor_key]`: anything created or changed while the listing ran, whether or
    not the listing saw it, has `updated_at` at or after it, so the next incremental run
    reads it. `workers`: requests in flight for this listing (None: `settings.workers`)."""
    span = (0, 0)  # ignored by the engine when it resumes state["slices"]
    if not state.get(STATE_KEY):
        began = began or api_clock(settings)
        state[PENDING_CURSOR_KEY] = began.isoformat()
        span = (0, int(began.timestamp()) + 1)
    progress = Progress(windows.name)  # one line: the records, and the windows
    for records in sliced_listing(
        windows,
        state,
        span,
        workers=workers or settings.workers,
        checkpoint_seconds=settings.checkpoint_seconds,
        progress=progress,
    ):
        progress.page(len(records))
        yield records
    progress.done()
    if not state.get(STATE_KEY):
        state[cursor_key] = state.pop(PENDING_CURSOR_KEY)


def updated_since(
    settings: Settings,
    name: str,
    path: str,
    begin: datetime | None,
    state: MutableMapping | None = None,
) -> Iterator[pa.Table]:
    """Records of one endpoint in `updated_at` order from `begin` (inclusive; None = all),
    in Arrow tables of 1,000 records or more; `state`'s cursor follows the pages (dlt
    commits it with the load, after the last table). Ascending `updated_at`
    is what makes a run loss-free: a record written while the run pages moves behind the
    records already listed, so this run lists it again later, or the next run does (its
    `updated_at` >= the cursor)."""
    progress = Progress(f"recurly {name}")

    def pages() -> Iterator[list[dict]]:
        for records in _updated_pages(settings, RecurlyLister(settings), path, begin, name):
            progress.page(len(records))
            if records and state is not None:
                _advance(state, UPDATED_AT, records)
            yield records

    for batch in batched(pages()):
        yield page_table(batch)
    progress.done()


def _updated_pages(
    settings: Settings, lister: RecurlyLister, path: str, begin: datetime | None, name: str
) -> Iterator[list[dict]]:
    return lister.pages(path, _listing_params(settings, begin), f"recurly {name} page")


def _listing_params(settings: Settings, begin: datetime | None) -> dict[str, str | int]:
    """`updated_at` ascending from `begin` (inclusive; None = all): see `updated_since`."""
    params: dict[str, str | int] = {
        "limit": settings.page_size,
        "sort": "updated_at",
        "order": "asc",
    }
    if begin is not None:
        params["begin_time"] = format_time(begin)
    return params


# --------------------------------------------------------------------------- redemptions


# Accounts listed ahead of the redemption readers: one page of accounts (200 requests of
# redemptions, ~14 s at a production site's pace) in flight. More would only be read
# past a checkpoint: every account page a run has handed over is read before it ends.
ACCOUNT_PAGES_AHEAD = 1


def account_redemptions(settings: Settings, state: MutableMapping) -> Iterator[pa.Table]:
    """Coupon redemptions of both levels, in tables of 1,000 records or more.

    Recurly lists them only per account (`/accounts/{id}/coupon_redemptions`: there is
    no site-wide list, an account carries none, a subscription only its own
    subscription-level ones, an invoice only those that discounted it). So: the accounts
    updated since the cursor in `state` (all of them, by the sliced listing, on the first
    sync), and each one's redemptions, read by `settings.workers` threads under the
    shared pace, fed without a pause between pages of accounts (`_as_completed`). A
    site that has no coupon at all can have no redemption: then not one account is read,
    and the cursor moves to the API's clock before the check."""
    lister = RecurlyLister(settings)
    progress = Progress("recurly coupon_redemptions")
    pages = _redemption_accounts(settings, lister, state)
    ids = (account["id"] for accounts in pages for account in accounts)
    pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="recurly-redemptions")
    try:
        found = _as_completed(pool, partial(_redemptions_of, lister), ids, 2 * settings.workers)
        for records in batched(_counted(found, progress)):
            yield page_table(records)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    progress.done()


def _as_completed(
    pool: ThreadPoolExecutor, read: Callable[[str], list[dict]], ids: Iterator[str], ahead: int
) -> Iterator[list[dict]]:
    """`read(id)` for every id, at most `ahead` submitted and not yet handed over, each
    result as soon as it is done. Not `Executor.map`: it submits every id first (the
    whole account listing at once, checkpoint or not) and hands results over in order (one
    slow account would hold up the rest). `ahead` twice the threads keeps them busy while
    the consumer hands a table to dlt. Every id taken is read before this returns."""
    running: set[Future[list[dict]]] = set()
    for ident in ids:
        if len(running) >= ahead:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in done)
        running.add(pool.submit(read, ident))
    for future in as_completed(running):
        yield future.result()


def _counted(found: Iterator[list[dict]], progress: Progress) -> Iterator[list[dict]]:
    """Each account's redemptions, counted in the log as one page each."""
    for records in found:
        progress.page(len(records))
        yield records


def _redemption_accounts(
    settings: Settings, lister: RecurlyLister, state: MutableMapping
) -> Iterator[list[dict]]:
    """Pages of the accounts whose redemptions this run reads (see account_redemptions)."""
    resuming = bool(state.get(STATE_KEY))
    began = None if resuming else api_clock(settings)
    if began is not None and not _site_has_coupons(lister):
        state[ACCOUNTS_UPDATED_AT] = began.isoformat()
        return
    cursor = stored_cursor(state, ACCOUNTS_UPDATED_AT)
    if cursor is None:
        windows = CreatedAtWindows(settings, "accounts (redemptions)", "/accounts")
        yield from full_listing(
            settings, windows, state, ACCOUNTS_UPDATED_AT, began, ACCOUNT_PAGES_AHEAD
        )
        return
    begin = cursor - timedelta(seconds=settings.lag_seconds)
    for accounts in _updated_pages(settings, lister, "/accounts", begin, "accounts"):
        yield accounts
        _advance(state, ACCOUNTS_UPDATED_AT, accounts)


def _site_has_coupons(lister: RecurlyLister) -> bool:
    """Whether the site has any coupon, of any state (the list has no state filter)."""
    return bool(lister.fetch("/coupons?limit=1", "recurly coupons (any)")["data"])


def _redemptions_of(lister: RecurlyLister, account_id: str) -> list[dict]:
    """Every redemption of one account, both levels."""
    path = f"/accounts/{quote(account_id, safe='')}/coupon_redemptions"
    params = {"limit": MAX_PAGE_SIZE}
    pages = lister.pages(path, params, "recurly redemptions")
    return [record for page in pages for record in page]


def page_table(records: list[dict]) -> pa.Table:
    """A page as one flat Arrow table whose types do not depend on the page (dlt refuses
    to buffer pages of one table with different Arrow types): money as float64, every
    `*_at` field (ISO-8601 text in the API) as a UTC timestamp in microseconds (DuckDB's
    precision)."""
    table = to_arrow(records)
    for index, name in enumerate(table.column_names):
        column = table.column(index)
        if name.rpartition("__")[2] in DOUBLE_FIELDS and pa.types.is_integer(column.type):
            kind = pa.float64()
        elif pa.types.is_string(column.type) and name.endswith("_at"):
            kind = _TIMESTAMP
        else:
            continue
        table = table.set_column(index, name, pc.cast(column, kind))
    return table


def column_hints() -> dict[str, dict]:
    """The newest copy of a record listed twice in one run (written while the run paged)
    wins the merge (`dedup_sort`); other types come from the Arrow pages."""
    timestamp = {"data_type": "timestamp", "timezone": True}
    return {"created_at": timestamp, "updated_at": {**timestamp, "dedup_sort": "desc"}}
