"""Stripe API access for the dlt source: raw JSON pages through the official SDK, retries,
pacing, and the event log that makes later runs incremental.

Why raw pages: the SDK's raw request path (`StripeClient.raw_request`'s own requestor)
keeps its auth, API version, network retries and error classes but skips its object model
(~5x slower here). `raw_request` itself would still parse each body with `json` into
`OrderedDict`s, 4.5x slower than orjson into plain dicts (45 against 10 ms per 1,000
invoices): a 2xx body is parsed once with orjson, any other is handed back to the SDK,
which raises its error class for it.

Why events: Stripe objects carry no `updated` timestamp, so the only record of what
changed is the event log, which Stripe keeps for 30 days. Each resource keeps its own
cursor, so a resource loaded alone (one Dagster asset) never moves another's cursor.

Why nothing is lost: before listing anything a run reads the newest events; their
`created` second becomes the next cursor. Any change made after that read, even one to a
record on a page already listed, is an event at or after that second, and the next run
lists events with `created[gte]` (inclusive: same-second events are kept) and refetches
those objects. The cursor is stored only after the run's last page, in dlt state, which
dlt commits with the load: a run that dies keeps the previous cursor, and merge on `id`
absorbs what the re-run reads twice. A cursor too old for the 30-day window means events
may be gone, so the run lists everything again.

Full listings are sliced (`dlt_sources.slices`): `created[gte]`/`created[lt]` windows
listed concurrently, from 1970 to the server's clock at the run's start (+1 s, as
the upper bound is exclusive). Objects created later are events after the cursor, read by
the next run. A listing cut short by a checkpoint keeps its windows in `state["slices"]`
and the cursor taken before it in `state["slices_cursor"]`; the cursor becomes the real
one only when the last window is listed, so nothing changed meanwhile is lost.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import orjson
import stripe

from billing_clients.pacing import TokenBucket
from billing_clients.retries import RetryPolicy, http_date, with_retries
from billing_clients.stripe import CLASSIFIER
from dlt_sources.common import Progress, workers_for
from dlt_sources.slices import PENDING_CURSOR_KEY, STATE_KEY, Page, Window, sliced_listing

log = logging.getLogger("retention.extract.stripe")

EVENT_RETENTION = timedelta(days=30)
# A cursor this close to the end of the 30-day window falls back to a full listing: its
# oldest events could expire while the run is still paging through them.
WINDOW_MARGIN = timedelta(hours=1)
EVENTS = "events"
# How many of the newest events a run reads first (one request either way).
NEWEST_EVENTS = 10
# A cursor taken from the server's clock stays this far behind it: an event stamped just
# before the `Date` of the first request may not be listed yet when that request runs.
CLOCK_MARGIN = timedelta(minutes=5)
# Stripe expands at most four levels, and on a list `data.` is the first of them.
MAX_EXPAND_DEPTH = 4
# Where a full listing starts: 1970. A later floor (Stripe's founding, 2010) would save a
# few empty windows on the first split, but objects can carry older times (Stripe's own
# fixtures are stamped 2009) and a floor too late loses them silently.
LISTING_FLOOR = 0
# A list page of 100 expanded objects takes 300-600 ms on api.stripe.com: the workers that
# keep the pace are the rate times this (dlt_sources.common.workers_for).
LATENCY_SECONDS = 0.5
# Without pacing (the local sandbox, no latency) more threads only contend for the cores.
UNPACED_WORKERS = 4
# A bucket per named operation: `billing_clients.pacing.shared_bucket(..., endpoint=...)`
# for the source, which paces each operation at Stripe's 25 requests/s under the key's
# bucket in live mode (docs.stripe.com/rate-limits), and returns the key's bucket elsewhere.
Pacing = Callable[[str], TokenBucket]


def operation_of(path: str) -> str:
    """The named operation a GET path belongs to, as Stripe counts its limit: the object's
    id replaced, so `/v1/invoices/in_1/lines` and `/v1/invoices/in_2/lines` are one,
    `GET /v1/invoices/{id}/lines`."""
    parts = path.split("/")  # "", "v1", resource, id, ...
    named = "/".join([*parts[:3], "{id}", *parts[4:]]) if len(parts) > 3 else path
    return f"GET {named}"


@dataclass(frozen=True)
class Endpoint:
    """One Stripe list endpoint and the events that announce a change to its objects.

    `event_filter` narrows `/v1/events` to this object's events (`type` takes a `*`
    wildcard, `types` a list of exact names); `object` is the events' `data.object.object`.
    `expand` names fields of one object that Stripe sends only when asked (paths inside
    the object; a list asks for `data.<path>`, a retrieve for `<path>`).
    `deleted_event` is the event of a deletion: Stripe lists a deleted object no more and
    a retrieve answers a stub (`{id, object, deleted}`) or 404, so the object the event
    carries, marked `deleted: true`, is what the table keeps of it.
    `via` names events about another object that change this one: (that object's type,
    its field holding this object's id), e.g. a customer's discount.
    """

    path: str
    object: str
    event_filter: dict[str, Any]
    list_params: dict[str, Any] = field(default_factory=dict)
    expand: tuple[str, ...] = ()
    deleted_event: str | None = None
    via: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for path in self.expand:
            if len(path.split(".")) + 1 > MAX_EXPAND_DEPTH:
                raise ValueError(f"{self.path}: data.{path} is deeper than Stripe expands")

    def list_query(self) -> dict[str, Any]:
        expand = {"expand": [f"data.{path}" for path in self.expand]} if self.expand else {}
        return {**self.list_params, **expand}

    def retrieve_query(self) -> dict[str, Any]:
        return {"expand": list(self.expand)} if self.expand else {}


ENDPOINTS: dict[str, Endpoint] = {
    # `customer.*` would also match every subscription event: name the customer's own,
    # and those of its customer-level discount (`customer.discount`, a Discount object).
    "customers": Endpoint(
        "/v1/customers",
        "customer",
        {
            "types": [
                "customer.created",
                "customer.updated",
                "customer.deleted",
                "customer.discount.created",
                "customer.discount.updated",
                "customer.discount.deleted",
            ]
        },
        deleted_event="customer.deleted",
        via=(("discount", "customer"),),
    ),
    # Without `status=all` Stripe leaves canceled subscriptions out of the list.
    # `discounts` (the subscription's and each item's) are ids unless expanded; a Discount
    # names its coupon in `source.coupon`.
    "subscriptions": Endpoint(
        "/v1/subscriptions",
        "subscription",
        {"type": "customer.subscription.*"},
        {"status": "all"},
        ("discounts", "items.data.discounts"),
    ),
    # A tiered price's `tiers` and a price's other currencies (`currency_options`: what a
    # subscription in another currency bills) are sent only when expanded. Without an
    # `active` filter Stripe lists archived prices too.
    "prices": Endpoint(
        "/v1/prices", "price", {"type": "price.*"}, expand=("tiers", "currency_options")
    ),
    "products": Endpoint(
        "/v1/products", "product", {"type": "product.*"}, deleted_event="product.deleted"
    ),
    "coupons": Endpoint(
        "/v1/coupons", "coupon", {"type": "coupon.*"}, deleted_event="coupon.deleted"
    ),
    "invoices": Endpoint("/v1/invoices", "invoice", {"type": "invoice.*"}),
    EVENTS: Endpoint("/v1/events", "event", {}),
}


# --------------------------------------------------------------------------- cursor


@dataclass(frozen=True)
class Cursor:
    """Where the next run starts reading events: `created[gte]=created`, skipping the
    events in `seen` (already reflected by the run that stored the cursor)."""

    created: int
    seen: tuple[str, ...] = ()

    @classmethod
    def from_state(cls, value: dict | None) -> Cursor | None:
        if not value:
            return None
        return cls(int(value["created"]), tuple(value.get("seen", ())))

    def to_state(self) -> dict:
        return {"created": self.created, "seen": list(self.seen)}


@dataclass(frozen=True)
class Start:
    """What a run learns before it lists anything: the cursor to store when it succeeds
    (None if the account has no event and the server sent no time), and the server's
    clock from its `Date` header (None if absent)."""

    cursor: Cursor | None
    server_now: datetime | None


# --------------------------------------------------------------------------- API


class StripeApi:
    """GET requests through one SDK client, shared by the source's threads (the SDK keeps a
    session per thread). Every request waits for its operation's bucket (`pacing`, asked
    once per operation) and goes through `with_retries`. `max_workers` requests at once
    per resource (a full listing's windows, an incremental run's refetches); None = enough
    to keep one operation's pace through Stripe's latency. `checkpoint_seconds`: a full listing stops starting requests
    after that long and leaves the rest to the next run (None: to the end)."""

    def __init__(
        self,
        client: stripe.StripeClient,
        pacing: Pacing,
        page_size: int = 100,
        max_workers: int | None = None,
        policy: RetryPolicy | None = None,
        checkpoint_seconds: float | None = None,
    ):
        if not 1 <= page_size <= 100:
            raise ValueError(f"page_size must be 1..100 (Stripe's limit), not {page_size}")
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be 1 or more (or None), not {max_workers}")
        self.client, self.pacing, self.policy = client, pacing, policy
        self.page_size, self.checkpoint_seconds = page_size, checkpoint_seconds
        self._buckets: dict[str, TokenBucket] = {}
        self._buckets_lock = threading.Lock()
        # Every run reads /v1/events first; each list operation has the same pace.
        self.max_workers = max_workers or workers_for(
            self.bucket("/v1/events").rate, LATENCY_SECONDS, UNPACED_WORKERS
        )

    def bucket(self, path: str) -> TokenBucket:
        """The bucket of the operation `path` belongs to, asked of `pacing` once (it reads
        the settings) and kept."""
        operation = operation_of(path)
        with self._buckets_lock:
            bucket = self._buckets.get(operation)
            if bucket is None:
                bucket = self._buckets[operation] = self.pacing(operation)
            return bucket

    def get(self, path: str, **params: Any) -> tuple[dict, dict[str, str]]:
        """One GET: the parsed JSON body and the response headers (lower-cased names)."""

        bucket = self.bucket(path)

        def call() -> tuple[dict, Mapping[str, str]]:
            bucket.wait()  # an operation's bucket takes from the key's too
            return self._request(path, params)

        body, headers = with_retries(call, CLASSIFIER, f"stripe GET {path}", self.policy)
        return body, {str(k).lower(): v for k, v in dict(headers).items()}

    def _request(self, path: str, params: dict[str, Any]) -> tuple[dict, Mapping[str, str]]:
        """One GET through the SDK's requestor, as `StripeClient.raw_request` sends it; a
        2xx body parsed with orjson (see the module's docstring), anything else (an error
        status, a body orjson refuses) left to the SDK, which raises its error for it."""
        requestor = self.client._requestor  # raw_request's own; it has no public handle
        body, code, headers = requestor.request_raw(
            "get", path, params, {}, base_address="api", api_mode="V1", usage=["raw_request"]
        )
        if 200 <= code < 300:
            with contextlib.suppress(orjson.JSONDecodeError):
                return orjson.loads(body), headers
        return requestor._interpret_response(body, code, headers, "V1").data, headers

    def pages(self, path: str, params: dict[str, Any]) -> Iterator[list[dict]]:
        """Every page of a list, newest first, following `starting_after`. A record
        changed while paging keeps its place (lists are ordered by `created`), so it is
        listed once, in whichever version the page showed."""
        after: str | None = None
        while True:
            cursor = {"starting_after": after} if after else {}
            body, _ = self.get(path, **params, **cursor, limit=self.page_size)
            data = body["data"]
            if data:
                yield data
            if not body["has_more"] or not data:
                return
            after = data[-1]["id"]

    def with_all_items(self, subscriptions: list[dict]) -> list[dict]:
        """The subscriptions with every item. Stripe embeds a subscription's first items
        only (`items.has_more` when there are more; a subscription has up to 20), so a cut
        list is completed from `/v1/subscription_items`, item discounts expanded as the
        subscription's are."""
        return self._completed(
            subscriptions,
            "items",
            lambda sub: "/v1/subscription_items",
            lambda sub: {"subscription": sub["id"], "expand": ["data.discounts"]},
        )

    def with_all_lines(self, invoices: list[dict]) -> list[dict]:
        """The invoices with every line (one per subscription item, and more): Stripe
        embeds the first page only, the rest come from `/v1/invoices/{id}/lines`."""
        return self._completed(
            invoices,
            "lines",
            lambda invoice: f"/v1/invoices/{quote(invoice['id'], safe='')}/lines",
            lambda invoice: {},
        )

    def _completed(
        self,
        page: list[dict],
        field: str,
        path: Callable[[dict], str],
        query: Callable[[dict], dict[str, Any]],
    ) -> list[dict]:
        """The page with each object's embedded list `field` complete: read again from
        `path(obj)` where the embedded page says there is more, `max_workers` objects at a
        time (one after another, a page with ten cut lists waited ten round trips)."""
        cut = [i for i, obj in enumerate(page) if (obj.get(field) or {}).get("has_more")]
        if not cut:
            return page

        def complete(obj: dict) -> dict:
            data = [element for part in self.pages(path(obj), query(obj)) for element in part]
            return {**obj, field: {**obj[field], "data": data, "has_more": False}}

        page = list(page)
        with ThreadPoolExecutor(min(self.max_workers, len(cut)), "stripe-complete") as pool:
            for i, obj in zip(cut, pool.map(complete, [page[i] for i in cut]), strict=True):
                page[i] = obj
        return page

    def retrieve(self, path: str, ident: str, params: dict[str, Any] | None = None) -> dict | None:
        """One object by id; None (logged) when Stripe no longer has it: 404, or a deleted
        object's stub, which would blank the stored row (its deletion event, which the
        next run reads, keeps the object instead)."""
        try:
            obj = self.get(f"{path}/{quote(ident, safe='')}", **(params or {}))[0]
        except stripe.InvalidRequestError as exc:
            if exc.http_status != 404:
                raise
            log.warning("stripe %s/%s: gone (404), skipped", path, ident)
            return None
        if obj.get("deleted"):
            log.info("stripe %s/%s: deleted since its event, left to the next run", path, ident)
            return None
        return obj

    def retrieve_pages(
        self, path: str, idents: list[str], params: dict[str, Any] | None = None
    ) -> Iterator[list[dict]]:
        """Objects by id, `max_workers` requests at a time, in pages of `page_size`."""
        with ThreadPoolExecutor(self.max_workers, thread_name_prefix="stripe-get") as pool:
            for start in range(0, len(idents), self.page_size):
                chunk = idents[start : start + self.page_size]
                found = [o for o in pool.map(lambda i: self.retrieve(path, i, params), chunk) if o]
                if found:
                    yield found

    def start(self) -> Start:
        """Read the newest events before listing anything: every change made after this
        point is an event at or after the newest one's `created` second. The events of
        that second seen here are already reflected by what this run lists, so the next
        run skips them instead of refetching their objects again.

        On a quiet account the newest event can be weeks old; a cursor left there would
        age out of Stripe's 30-day event window and force full listings, so the cursor
        follows the server's clock (less CLOCK_MARGIN) when that is later."""
        body, headers = self.get("/v1/events", limit=NEWEST_EVENTS)
        server_now = http_date(headers.get("date"))
        floor = int((server_now - CLOCK_MARGIN).timestamp()) if server_now else None
        if body["data"]:
            created = body["data"][0]["created"]
            if floor is not None and floor > created:
                return Start(Cursor(floor), server_now)
            seen = tuple(e["id"] for e in body["data"] if e["created"] == created)
            return Start(Cursor(created, seen), server_now)
        return Start(None if floor is None else Cursor(floor), server_now)


# --------------------------------------------------------------------------- windows


class CreatedWindows:
    """One endpoint listed by `created` windows for `dlt_sources.slices`: Stripe lists a
    window newest first, and `starting_after` (the last id of a page) continues it."""

    descending = True

    def __init__(self, api: StripeApi, name: str):
        self.api, self.endpoint, self.name = api, ENDPOINTS[name], f"stripe {name}"

    def page(self, window: Window) -> Page:
        params = {**self.endpoint.list_query(), "created": {"gte": window.lo, "lt": window.hi}}
        if window.cursor:
            params["starting_after"] = window.cursor
        body, _ = self.api.get(self.endpoint.path, **params, limit=self.api.page_size)
        data = body["data"]
        return Page(data, data[-1]["id"] if body["has_more"] and data else None)

    def stamp(self, record: dict) -> int:
        return int(record["created"])


def listing_span(server_now: datetime | None) -> tuple[int, int]:
    """[1970, the run's start by Stripe's clock + 1 s): what the full listing
    reads; objects created later reach the next run as events after the cursor. Without
    the server's clock, this machine's."""
    now = server_now or datetime.now(UTC)
    return LISTING_FLOOR, int(now.timestamp()) + 1


def full_listing(
    api: StripeApi,
    name: str,
    state: dict,
    span: tuple[int, int],
    progress: Progress | None = None,
) -> Iterator[list[dict]]:
    """Every object of the endpoint, sliced; when the last window is listed, the deletions
    Stripe still keeps, then the cursor taken before the listing becomes the resource's.
    A checkpoint before that leaves both in `state` for the next run. `progress`: the
    resource's line, which the listing adds its windows to."""
    endpoint = ENDPOINTS[name]
    yield from sliced_listing(
        CreatedWindows(api, name),
        state,
        span,
        workers=api.max_workers,
        checkpoint_seconds=api.checkpoint_seconds,
        progress=progress,
    )
    if state.get(STATE_KEY):
        return
    yield from deleted_still_kept(api, endpoint)
    _store_cursor(state, Cursor.from_state(state.pop(PENDING_CURSOR_KEY, None)))


def _store_cursor(state: dict, cursor: Cursor | None) -> None:
    if cursor is None:
        state.pop("cursor", None)
    else:
        state["cursor"] = cursor.to_state()


# --------------------------------------------------------------------------- sync


def full_listing_reason(previous: Cursor | None, server_now: datetime | None) -> str | None:
    """Why this run must list everything, or None when the events since `previous` are
    all still kept. The window is judged by the server's clock, never the local one."""
    if previous is None:
        return "first run"
    if server_now is None:
        return "the server sent no Date header, so the event window cannot be checked"
    oldest_safe = server_now - EVENT_RETENTION + WINDOW_MARGIN
    if previous.created < int(oldest_safe.timestamp()):
        age = server_now - datetime.fromtimestamp(previous.created, server_now.tzinfo)
        return (
            f"the cursor is {age.days} days old (server time {server_now.isoformat()}), "
            "beyond Stripe's 30-day event window: events may be lost, listing everything"
        )
    return None


def events_since(api: StripeApi, previous: Cursor, event_filter: dict) -> Iterator[list[dict]]:
    """Pages of the events at or after the cursor's second, minus those it already saw."""
    params = {**event_filter, "created": {"gte": previous.created}}
    for page in api.pages("/v1/events", params):
        fresh = [event for event in page if event["id"] not in previous.seen]
        if fresh:
            yield fresh


def changed_objects(
    events: Iterable[list[dict]], endpoint: Endpoint
) -> tuple[dict[str, int | None], list]:
    """What the events say changed, each object once by its newest event (events come
    newest first): the ids to refetch, each with its `created` second when the event
    carried the object itself (None when it carried another, e.g. a customer's discount),
    and the deleted objects as their deletion event carried them, marked `deleted: true`."""
    newest: dict[str, dict] = {}
    via = dict(endpoint.via)
    for page in events:
        for event in page:
            obj = event["data"]["object"]
            kind = obj.get("object")
            ident = obj.get("id") if kind == endpoint.object else obj.get(via.get(kind, ""))
            if isinstance(ident, str) and ident:
                newest.setdefault(ident, event)
    deleted = [deleted_row(event) for event in newest.values() if _is_deletion(event, endpoint)]
    gone = {row["id"] for row in deleted}
    changed = {ident: _created(event, endpoint) for ident, event in newest.items()}
    return {ident: stamp for ident, stamp in changed.items() if ident not in gone}, deleted


def _created(event: dict, endpoint: Endpoint) -> int | None:
    """The `created` second of the object an event carries, if it is the endpoint's own."""
    obj = event["data"]["object"]
    created = obj.get("created") if obj.get("object") == endpoint.object else None
    return created if isinstance(created, int) else None


def refetched(api: StripeApi, name: str, changed: dict[str, int | None]) -> Iterator[list[dict]]:
    """The changed objects as Stripe has them now: those whose `created` second is known
    read back from the list endpoint (`listed_by_created`: one page holds up to 100, and
    changes cluster), the rest (and any the list did not show) one by one by id."""
    endpoint = ENDPOINTS[name]
    stamped = {ident: stamp for ident, stamp in changed.items() if stamp is not None}
    found: set[str] = set()
    for page in listed_by_created(api, name, stamped):
        found.update(record["id"] for record in page)
        yield page
    rest = [ident for ident in changed if ident not in found]
    yield from api.retrieve_pages(endpoint.path, rest, endpoint.retrieve_query())


def listed_by_created(api: StripeApi, name: str, wanted: dict[str, int]) -> Iterator[list[dict]]:
    """The objects `wanted` (id -> `created` second) as the list endpoint shows them,
    with the list's expansions, in `max_workers` groups of neighbouring seconds listed at
    once (`_walk`). Never more requests than ids, but for ties in one second; those
    not listed are left out (the caller retrieves them)."""
    if not wanted:
        return
    ordered = sorted(wanted.items(), key=lambda item: item[1], reverse=True)
    size = -(-len(ordered) // api.max_workers)  # ceiling
    groups = [dict(ordered[i : i + size]) for i in range(0, len(ordered), size)]
    lister = CreatedWindows(api, name)
    with ThreadPoolExecutor(len(groups), thread_name_prefix="stripe-list") as pool:
        for found in pool.map(lambda group: _walk(lister, group), groups):
            if found:
                yield found


def _walk(lister: CreatedWindows, wanted: dict[str, int]) -> list[dict]:
    """The `wanted` objects found by listing [oldest, newest second + 1) newest first,
    jumping past the seconds where nothing is wanted: after each page, the next request
    starts at the newest second still wanted below the page (its cursor is kept only when
    that second is the page's last, which it may not have finished). A wanted object
    passed over is not listed (deleted since its event, or listed no more)."""
    pending, found = dict(wanted), []
    lo = min(pending.values())
    window = Window(lo, max(pending.values()) + 1)
    while pending:
        page = lister.page(window)
        found += [r for r in page.records if pending.pop(r["id"], None) is not None]
        if page.cursor is None:
            break
        last = lister.stamp(page.records[-1])
        pending = {ident: stamp for ident, stamp in pending.items() if stamp <= last}
        top = max(pending.values(), default=None)
        if top is not None:
            window = Window(lo, last + 1, page.cursor) if top == last else Window(lo, top + 1)
    return found


def deleted_row(event: dict) -> dict:
    """A deleted object as its deletion event carried it (its last state), marked deleted."""
    return {**event["data"]["object"], "deleted": True}


def deleted_still_kept(api: StripeApi, endpoint: Endpoint) -> Iterator[list[dict]]:
    """On a full listing, the objects Stripe lists no more but whose deletion events it
    still keeps (30 days): older deletions are out of reach of any API."""
    if endpoint.deleted_event is None:
        return
    for page in api.pages("/v1/events", {"type": endpoint.deleted_event}):
        rows = [deleted_row(event) for event in page if _is_deletion(event, endpoint)]
        if rows:
            yield rows


def _is_deletion(event: dict, endpoint: Endpoint) -> bool:
    return (
        event["type"] == endpoint.deleted_event
        and event["data"]["object"].get("object") == endpoint.object
    )


def sync(
    api: StripeApi, name: str, state: dict, progress: Progress | None = None
) -> Iterator[list[dict]]:
    """Pages of one resource's records for this run, then the new cursor into `state`;
    a full listing adds its windows to the resource's `progress` line.

    The cursor is read before anything is listed and stored only after the last page was
    handed over; dlt commits resource state with the load, so a run that dies midway
    leaves the previous cursor in place and the next run reads the same events again
    (merge on id absorbs the repeats). A full listing left unfinished at a checkpoint
    (`state["slices"]`) is continued first, whatever else the run would do.
    """
    endpoint = ENDPOINTS[name]
    if state.get(STATE_KEY):
        yield from full_listing(api, name, state, (0, 0), progress)
        return
    previous = Cursor.from_state(state.get("cursor"))
    start = api.start()
    reason = full_listing_reason(previous, start.server_now)
    if reason is not None:
        level = logging.INFO if previous is None else logging.WARNING
        log.log(level, "stripe %s: full listing (%s)", name, reason)
        state[PENDING_CURSOR_KEY] = start.cursor and start.cursor.to_state()
        yield from full_listing(api, name, state, listing_span(start.server_now), progress)
        return
    if name == EVENTS:
        yield from events_since(api, previous, endpoint.event_filter)
    else:
        events = events_since(api, previous, endpoint.event_filter)
        changed, deleted = changed_objects(events, endpoint)
        if deleted:
            yield deleted
        log.info(
            "stripe %s: %d changed since %s, refetching",
            name,
            len(changed),
            datetime.fromtimestamp(previous.created, start.server_now.tzinfo).isoformat(),
        )
        yield from refetched(api, name, changed)
    _store_cursor(state, start.cursor)


def event_row(event: dict) -> dict:
    """An event for the `events` table: the object it carries (and its previous values)
    as JSON text, so one table holds events about every kind of object without a column
    per field of each; `data__object_id`/`data__object_type` say what it is about."""
    data = event.get("data") or {}
    obj = data.get("object") or {}
    previous = data.get("previous_attributes")
    row = {key: value for key, value in event.items() if key != "data"}
    row["data__object_id"] = obj.get("id")
    row["data__object_type"] = obj.get("object")
    row["data__object"] = orjson.dumps(obj).decode()
    row["data__previous_attributes"] = None if previous is None else orjson.dumps(previous).decode()
    return row
