"""Recurly API v2021-02-25 emulator: the recurly 4.x SDK works against it unmodified.

What the SDK relies on, and this server therefore does (see recurly/base_client.py,
response.py, resource.py, pager.py):

- every response carries `X-Request-Id` (an error without it crashes the SDK) and
  `Recurly-Version`; errors are `{"error": {"type", "message", "params"}}` served as
  `application/json` (the SDK only reads the error type from a JSON content type, and maps
  `type` to its exception class: not_found -> NotFoundError, rate_limited ->
  RateLimitedError, validation -> ValidationError);
- lists are `{"object": "list", "has_more", "next", "data"}` and the pager requests `next`
  verbatim, so `next` repeats the request's own query (every filter) plus an opaque cursor
  holding the last (sort value, id) of the page;
- paths name records by id or by a prefixed natural key (`code-`, `uuid-`, `number-`).

Reads are rendered from the neutral store at the sandbox clock's `now`
(sandbox/recurly_render.py); writes change the neutral record by the brief's conventions
and `store.touch` it, so `sort=updated_at` lists see them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import itertools
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import unquote, urlencode

import orjson

from sandbox.billing import add_interval, current_period, is_ended, plan_in_currency
from sandbox.network import RECURLY_PER_MINUTE, RECURLY_WINDOW_SECONDS, Verdict
from sandbox.recurly_render import (
    IdIndex,
    RecurlyRenderer,
    billing_currency,
    coupon_codes,
    current_term,
    derived_id,
    derived_uuid,
    happened,
    in_trial,
    invoice_state,
    is_plan,
    pause_cycle_start,
    pause_pending_or_running,
    redemption_resource,
    subscription_state,
)
from sandbox.scenario import ID_FIELD
from sandbox.server import ADMIN_PREFIX, ApiError, Emulator, Request, Response
from sandbox.store import SystemStore

API_VERSION = "v2021-02-25"
ACCEPTED_MEDIA_TYPES = frozenset(
    f"application/vnd.recurly.{version}{suffix}"
    for version in (API_VERSION, "latest")
    for suffix in ("", "+json")
)
SUCCESS_CONTENT_TYPE = f"application/vnd.recurly.{API_VERSION}; charset=utf-8"
ERROR_CONTENT_TYPE = "application/json; charset=utf-8"
# Requests per window, as X-RateLimit-Limit reports it without limits on: a sandbox site's.
DEFAULT_RATE_LIMIT = RECURLY_PER_MINUTE["test"] * RECURLY_WINDOW_SECONDS // 60
MAX_LIMIT = 200
_MIN_TIME = datetime.min.replace(tzinfo=UTC)  # the store's sort value for a null field
_NOT_ENDED = ("active", "canceled", "paused", "future")

# Path prefixes that name a record by its natural key instead of its id.
_PATH_PREFIX = {
    "customers": "code-",
    "plans": "code-",
    "coupons": "code-",
    "subscriptions": "uuid-",
    "invoices": "number-",
}
_LABEL = {
    "customers": "Account",
    "plans": "Plan",
    "coupons": "Coupon",
    "subscriptions": "Subscription",
    "invoices": "Invoice",
}

# The shared server's own errors in Recurly's words: an unsupported method on a known
# path is a 404 (Recurly routes by method and path), a reused idempotency key a 400.
_SHARED_ERRORS = {
    "method_not_allowed": (404, "not_found"),
    "idempotency_error": (400, "bad_request"),
}

Predicate = Callable[[dict], bool]
FilterFactory = Callable[[str, datetime], Predicate]


# --------------------------------------------------------------------------- list filters


def _choice(param: str, value: str, allowed: dict[str, Any]) -> Any:
    if value not in allowed:
        raise _bad_request(f"Invalid {param}: '{value}'. Use one of: {', '.join(allowed)}.")
    return allowed[value]


def _subscription_state_filter(value: str, now: datetime) -> Predicate:
    """The API's state filter; `live` is active, canceled or future, or in trial."""

    def state_in(*states: str) -> Predicate:
        return lambda sub: subscription_state(sub, now) in states

    live = state_in("active", "canceled", "future")
    return _choice(
        "state",
        value,
        {
            **{state: state_in(state) for state in ("active", "canceled", "expired", "future")},
            "in_trial": lambda sub: in_trial(sub, now),
            "live": lambda sub: live(sub) or in_trial(sub, now),
        },
    )


def _plan_state_filter(value: str, now: datetime) -> Predicate:
    """`state=active|inactive`; without it every plan is listed, archived ones too (the
    OpenAPI gives the filter no default)."""
    active = _choice("state", value, {"active": True, "inactive": False})
    return lambda plan: (happened(plan.get("archived_at"), now) is None) == active


def _add_on_state_filter(value: str, now: datetime) -> Predicate:
    """An add-on list row is active while its add-on is (add-ons are never archived here)."""
    active = _choice("state", value, {"active": True, "inactive": False})
    return lambda row: active


def _invoice_state_filter(value: str, now: datetime) -> Predicate:
    """One state, or `open` (not yet settled: a charge pending, processing or past due, a
    credit with credit left) and `closed` (settled: paid, failed, a credit used up)."""
    states = _choice(
        "state",
        value,
        {
            "pending": {"pending"},
            "processing": {"processing"},
            "past_due": {"past_due"},
            "paid": {"paid"},
            "failed": {"failed"},
            "open": {"pending", "processing", "past_due", "open"},
            "closed": {"paid", "failed", "closed"},
            "voided": {"voided"},
        },
    )
    return lambda invoice: invoice_state(invoice) in states


def _redemption_state_filter(value: str, now: datetime) -> Predicate:
    active = _choice("state", value, {"active": True, "inactive": False})
    return lambda redemption: (redemption["removed_at"] is None) == active


def _invoice_type_filter(value: str, now: datetime) -> Predicate:
    """charge, credit, or non-legacy (both); scenario invoices are never legacy ones."""
    kinds = _choice(
        "type",
        value,
        {
            "charge": {"charge"},
            "credit": {"credit"},
            "legacy": set(),
            "non-legacy": {"charge", "credit"},
        },
    )
    return lambda invoice: invoice["kind"] in kinds


def _boolean(param: str, value: str) -> bool:
    return _choice(param, value, {"true": True, "false": False})


# --------------------------------------------------------------------------- listing


@dataclass
class Listing:
    """What one list endpoint serves: a kind of record, its renderer, the filters it
    accepts, and for account-scoped endpoints the account's own records."""

    kind: str
    render: Callable[[dict], dict]
    filters: dict[str, FilterFactory]
    scope: list[dict] | None = None
    id_field: str | None = None  # for records that are not the store's (redemptions)

    @property
    def key_field(self) -> str:
        return self.id_field or ID_FIELD[self.kind]


@dataclass
class ListQuery:
    """A list request's parameters, validated."""

    limit: int
    descending: bool
    sort: str
    begin: datetime | None
    end: datetime | None
    cursor: tuple | None
    predicate: Predicate | None
    ids: list[str] | None


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def _validation(message: str, param: str | None = None) -> ApiError:
    params = [{"param": param, "message": message}] if param else []
    return ApiError(422, "validation", message, params=params)


def _to_utc(value: str) -> datetime:
    """ISO-8601; a timestamp without a zone (or a bare date) is UTC, as Recurly documents."""
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _parse_time(param: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return _to_utc(value)
    except ValueError:
        raise _bad_request(f"Invalid {param}: '{value}' is not an ISO-8601 timestamp.") from None


def _encode_cursor(key: tuple) -> str:
    raw = orjson.dumps([key[0].isoformat(), key[1]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(value: str) -> tuple:
    try:
        stamp, ident = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        return (datetime.fromisoformat(stamp), ident)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise _bad_request("Invalid cursor.") from None


def _sort_key(record: dict, field: str, id_field: str) -> tuple:
    """The store's (value, id) ordering key, so cursors bisect its ordered views."""
    value = record.get(field)
    return (_MIN_TIME if value is None else value, record[id_field])


def _scan_after(keys: list[tuple], descending: bool, probe: tuple) -> int:
    """First index strictly after `probe` in a small local ordering (an account's records)."""
    for index, key in enumerate(keys):
        if (key < probe) if descending else (key > probe):
            return index
    return len(keys)


# --------------------------------------------------------------------------- emulator


class RecurlyEmulator(Emulator):
    """Recurly v2021-02-25: accounts, plans (and their add-ons), coupons, subscriptions and
    invoices, with the subscription writes a retention flow makes (cancel, reactivate,
    terminate, pause, resume, next-bill-date extension, plan change, coupon redemption)."""

    name = "recurly"
    # v2021-02-25 documents Idempotency-Key on every write, with Idempotency-Prior on a replay.
    idempotency_header = "Idempotency-Key"
    replay_header = "Idempotency-Prior"
    idempotent_methods = ("POST", "PUT", "PATCH", "DELETE")
    request_id_header = "X-Request-Id"

    def __init__(self, store: SystemStore, **options: Any):
        # Routes bind renderer methods, and the base registers routes in its __init__.
        self.render = RecurlyRenderer(store)
        self._indexes = {
            "subscriptions": IdIndex(
                store, "subscriptions", partial(derived_uuid, "subscriptions")
            ),
            **{
                kind: IdIndex(store, kind, partial(derived_id, kind))
                for kind in ("customers", "plans", "coupons", "invoices")
            },
        }
        self._in_flight: set[str] = set()
        self._in_flight_lock = threading.Lock()
        super().__init__(store, **options)

    # -- routes -----------------------------------------------------------------------
    def register_routes(self) -> None:
        account = r"/accounts/(?P<account_id>[^/]+)"
        sub = r"/subscriptions/(?P<subscription_id>[^/]+)"
        self._list_route("/accounts", self._accounts)
        self._get_route(account, "customers", "account_id", self._render_account)
        self._list_route(f"{account}/subscriptions", self._account_subscriptions)
        self._list_route(f"{account}/invoices", self._account_invoices)
        self._list_route(f"{account}/coupon_redemptions", self._account_redemptions)
        self.route(
            "GET", f"{account}/coupon_redemptions/active", self._versioned(self._active_redemptions)
        )
        self._list_route("/subscriptions", self._subscriptions)
        self._get_route(sub, "subscriptions", "subscription_id", self._render_subscription)
        plan = r"/plans/(?P<plan_id>[^/]+)"
        self._list_route("/plans", self._plans)
        self._get_route(plan, "plans", "plan_id", self.render.plan)
        self._list_route(f"{plan}/add_ons", self._plan_add_ons)
        self.route(
            "GET", f"{plan}/add_ons/(?P<add_on_id>[^/]+)", self._versioned(self._plan_add_on)
        )
        self._list_route("/coupons", self._coupons)
        self._get_route(
            r"/coupons/(?P<coupon_id>[^/]+)", "coupons", "coupon_id", self.render.coupon
        )
        self._list_route("/invoices", self._invoices)
        self._get_route(
            r"/invoices/(?P<invoice_id>[^/]+)", "invoices", "invoice_id", self.render.invoice
        )
        writes = [
            ("PUT", f"{sub}/cancel", self._cancel),
            ("PUT", f"{sub}/reactivate", self._reactivate),
            ("DELETE", sub, self._terminate),
            ("PUT", f"{sub}/pause", self._pause),
            ("PUT", f"{sub}/resume", self._resume),
            ("PUT", sub, self._update),
            ("POST", f"{sub}/change", self._change),
            ("POST", f"{account}/coupon_redemptions/active", self._redeem_coupon),
        ]
        for method, pattern, handler in writes:
            self.route(method, pattern, self._versioned(handler))

    def _versioned(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Refuse requests without a supported version in `Accept`, as Recurly does (406)."""

        def guarded(request: Request, **path: str) -> Any:
            offered = {
                part.split(";")[0].strip() for part in request.headers.get("accept", "").split(",")
            }
            if not offered & ACCEPTED_MEDIA_TYPES:
                raise ApiError(
                    406,
                    "invalid_api_version",
                    "That accept header isn't in the format we use to specify an API version. "
                    f"Try this instead: application/vnd.recurly.{API_VERSION}",
                )
            return handler(request, **path)

        return guarded

    def _list_route(self, pattern: str, listing: Callable[..., Listing]) -> None:
        def serve(request: Request, **path: str) -> Any:
            return self._serve_list(request, listing(**path))

        self.route("GET", pattern, self._versioned(serve))
        self.route("HEAD", pattern, self._versioned(serve))

    def _get_route(
        self, pattern: str, kind: str, param: str, render: Callable[[dict], dict]
    ) -> None:
        def serve(request: Request, **path: str) -> dict:
            return render(self._get(kind, path[param]))

        self.route("GET", pattern, self._versioned(serve))

    # -- errors and headers -------------------------------------------------------------
    def render_error(self, error: ApiError) -> Response:
        """Recurly's `Error`: `type` from its ErrorTypeEnum, `message`, and `params` naming
        the parameters at fault (`{"param": ...}` only, as the OpenAPI file lists)."""
        status, kind = _SHARED_ERRORS.get(error.code, (error.status, error.code))
        params = [{"param": p["param"]} for p in error.extra.get("params", ())]
        body = {"type": kind, "message": error.message, "params": params}
        return Response(status, {"error": body}, {"Content-Type": ERROR_CONTENT_TYPE})

    def unauthorized(self) -> ApiError:
        return ApiError(401, "unauthorized", "Invalid API key. Please use a valid API key.")

    def not_found(self, what: str, ident: str) -> ApiError:
        return ApiError(404, "not_found", f"Couldn't find {what} with {ident}")

    def rate_limited(self, retry_after: int, verdict: Verdict | None = None) -> Response:
        error = ApiError(429, "rate_limited", "You have made too many API requests.")
        response = self.render_error(error)
        response.headers.update(self.rate_limit_headers(retry_after, verdict))
        return response

    def rate_limit_headers(
        self, retry_after: int, verdict: Verdict | None = None
    ) -> dict[str, str]:
        """Recurly's rate-limit headers on a 429; the reset is wall-clock epoch seconds,
        since a client sleeps until then in real time whatever the sandbox clock says.
        A limiter's 429 sends what Recurly documents (X-RateLimit-*); a scripted fault
        also sends its `Retry-After`."""
        if verdict is not None:
            return self._budget_headers(verdict)
        return {
            "X-RateLimit-Limit": str(DEFAULT_RATE_LIMIT),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time()) + retry_after),
            "Retry-After": str(retry_after),
        }

    def _budget_headers(self, verdict: Verdict | None) -> dict[str, str]:
        """Recurly sends its rate-limit headers on every answer and clients pace themselves
        by them: the key's window after this request (limit and remaining per 5-minute
        window, reset when its oldest counted request ages out). Without limits, an
        answer reports a sandbox site's full budget."""
        if verdict is None:
            return {
                "X-RateLimit-Limit": str(DEFAULT_RATE_LIMIT),
                "X-RateLimit-Remaining": str(DEFAULT_RATE_LIMIT),
                "X-RateLimit-Reset": str(int(time.time()) + RECURLY_WINDOW_SECONDS),
            }
        return {
            "X-RateLimit-Limit": str(verdict.limit),
            "X-RateLimit-Remaining": str(verdict.remaining),
            "X-RateLimit-Reset": str(verdict.reset_epoch()),
        }

    def server_error(self, status: int) -> Response:
        if status == 503:
            error = ApiError(503, "service_not_available", "Service temporarily unavailable.")
        else:
            error = ApiError(status, "internal_server_error", "An internal server error occurred.")
        return self.render_error(error)

    def new_request_id(self) -> str:
        return secrets.token_hex(10)

    def handle(self, request: Request) -> tuple[Response, str | None]:
        """Every API answer names the version that served it, its media type and the
        rate-limit budget."""
        with self._claim_key(request) as claimed:
            response, fault = (
                super().handle(request) if claimed else self._in_flight_answer(request)
            )
        if not request.path.startswith(ADMIN_PREFIX):
            response.headers.setdefault("Recurly-Version", f"recurly.{API_VERSION}")
            response.headers.setdefault("Content-Type", SUCCESS_CONTENT_TYPE)
            for name, value in self._budget_headers(response.budget).items():
                response.headers.setdefault(name, value)
        return response, fault

    @contextlib.contextmanager
    def _claim_key(self, request: Request) -> Iterator[bool]:
        """Hold a write's idempotency key while it is processed; False when another
        request holds it (Recurly's in-flight duplicate, answered 409)."""
        key = request.headers.get(self.idempotency_header.lower())
        if not key or request.method not in self.idempotent_methods:
            yield True
            return
        with self._in_flight_lock:
            claimed = key not in self._in_flight
            self._in_flight.add(key)
        try:
            yield claimed
        finally:
            if claimed:
                with self._in_flight_lock:
                    self._in_flight.discard(key)

    def _in_flight_answer(self, request: Request) -> tuple[Response, None]:
        """409 `simultaneous_request`: nothing is applied, nothing stored for the key."""
        response = self.render_error(
            ApiError(
                409,
                "simultaneous_request",
                "A request with the same Idempotency-Key is already being processed.",
            )
        )
        response.headers[self.request_id_header] = self.new_request_id()
        self._log(request, response.status, None)
        return response, None

    # -- lookups ------------------------------------------------------------------------
    def _find(self, kind: str, ident: str) -> dict | None:
        """A record named the way Recurly paths name it: `uuid-<uuid>` or the id for
        subscriptions; `code-`/`number-` + natural key, or the derived id, for the rest."""
        ident = unquote(ident)
        prefix = _PATH_PREFIX[kind]
        prefixed = ident.startswith(prefix)
        rest = ident[len(prefix) :] if prefixed else ident
        if kind == "subscriptions":
            key = self._indexes[kind].natural_key(rest) if prefixed else rest
        else:
            key = rest if prefixed else self._indexes[kind].natural_key(rest)
        record = self.store.get(kind, key) if key is not None else None
        if kind == "plans" and record is not None and not is_plan(record):
            return None  # an add-on is no plan: found only under its plans' add_ons
        return record

    def _get(self, kind: str, ident: str) -> dict:
        record = self._find(kind, ident)
        if record is None:
            raw = unquote(ident)
            prefix = _PATH_PREFIX[kind]
            named = (
                f"{prefix[:-1]} = {raw[len(prefix) :]}" if raw.startswith(prefix) else f"id = {raw}"
            )
            raise self.not_found(_LABEL[kind], named)
        return record

    # -- read endpoints -----------------------------------------------------------------
    def _render_account(self, customer: dict) -> dict:
        return self.render.account(customer, self.now())

    def _render_subscription(self, sub: dict) -> dict:
        return self.render.subscription(sub, self.now())

    def _accounts(self) -> Listing:
        return Listing("customers", self._render_account, self._account_filters())

    def _account_filters(self) -> dict[str, FilterFactory]:
        def email(value: str, now: datetime) -> Predicate:
            return lambda customer: customer["email"] == value

        def subscriber(value: str, now: datetime) -> Predicate:
            wanted = _boolean("subscriber", value)
            subs = self.store.by_customer["subscriptions"]
            return lambda customer: (
                wanted
                == any(not is_ended(sub, now) for sub in subs.get(customer["customer_id"], ()))
            )

        def past_due(value: str, now: datetime) -> Predicate:
            wanted = _boolean("past_due", value)
            invoices = self.store.by_customer["invoices"]
            return lambda customer: (
                wanted
                == any(
                    invoice_state(i) == "past_due"
                    for i in invoices.get(customer["customer_id"], ())
                )
            )

        return {"email": email, "subscriber": subscriber, "past_due": past_due}

    def _subscriptions(self) -> Listing:
        return Listing(
            "subscriptions", self._render_subscription, {"state": _subscription_state_filter}
        )

    def _account_subscriptions(self, account_id: str) -> Listing:
        customer = self._get("customers", account_id)
        listing = self._subscriptions()
        listing.scope = self.store.by_customer["subscriptions"].get(customer["customer_id"], [])
        return listing

    def _plans(self) -> Listing:
        """Plans only: scenario add-on records are served under their plans' add_ons."""
        plans = [plan for plan in self.store.records["plans"].values() if is_plan(plan)]
        return Listing("plans", self.render.plan, {"state": _plan_state_filter}, scope=plans)

    def _plan_add_ons(self, plan_id: str) -> Listing:
        """`GET /plans/{plan_id}/add_ons`: the add-ons the plan offers, paged like any list."""
        plan = self._get("plans", plan_id)
        return Listing(
            "plans",
            lambda row: self.render.add_on(row["plan"], row["addon"]),
            {"state": _add_on_state_filter},
            scope=self.render.plan_add_ons(plan),
            id_field="add_on_id",
        )

    def _plan_add_on(self, request: Request, plan_id: str, add_on_id: str) -> dict:
        """One add-on of the plan, by id or `code-<code>`."""
        plan = self._get("plans", plan_id)
        ident = unquote(add_on_id)
        field, value = ("code", ident[5:]) if ident.startswith("code-") else ("add_on_id", ident)
        for row in self.render.plan_add_ons(plan):
            if row[field] == value:
                return self.render.add_on(plan, row["addon"])
        named = f"code = {value}" if field == "code" else f"id = {value}"
        raise self.not_found("AddOn", named)

    def _coupons(self) -> Listing:
        return Listing("coupons", self.render.coupon, {})

    def _invoices(self) -> Listing:
        filters = {"state": _invoice_state_filter, "type": _invoice_type_filter}
        return Listing("invoices", self.render.invoice, filters)

    def _account_invoices(self, account_id: str) -> Listing:
        customer = self._get("customers", account_id)
        listing = self._invoices()
        listing.scope = self.store.by_customer["invoices"].get(customer["customer_id"], [])
        return listing

    def _account_redemptions(self, account_id: str) -> Listing:
        """Both levels: account-level redemptions and the account's subscription-level ones
        (those name their `subscription_id`)."""
        customer = self._get("customers", account_id)
        return Listing(
            "coupon_redemptions",
            self.render.redemption,
            {"state": _redemption_state_filter},
            scope=self.render.account_redemptions(customer, self.now()),
            id_field="redemption_id",
        )

    def _active_redemptions(self, request: Request, account_id: str) -> dict:
        """Every active redemption at once (the endpoint documents no paging)."""
        customer = self._get("customers", account_id)
        active = [
            self.render.redemption(r)
            for r in self.render.account_redemptions(customer, self.now())
            if r["removed_at"] is None
        ]
        return {"object": "list", "has_more": False, "next": None, "data": active}

    # -- paging ---------------------------------------------------------------------------
    def _serve_list(self, request: Request, listing: Listing) -> Any:
        """One page (GET) or the count of every match (HEAD, `Recurly-Total-Records`)."""
        query = self._list_query(request, listing)
        matches = self._matches(listing, query)
        if request.method == "HEAD":
            return Response(200, None, {"Recurly-Total-Records": str(sum(1 for _ in matches))})
        page = list(itertools.islice(matches, query.limit + 1))
        has_more = len(page) > query.limit
        page = page[: query.limit]
        next_url = None
        if has_more:
            last = _sort_key(page[-1], query.sort, listing.key_field)
            params = [("cursor", _encode_cursor(last))]
            params += [(k, v) for k, v in request.query if k != "cursor"]
            next_url = f"{request.path}?{urlencode(params)}"
        data = [listing.render(row) for row in page]
        return {"object": "list", "has_more": has_more, "next": next_url, "data": data}

    def _matches(self, listing: Listing, query: ListQuery) -> Iterator[dict]:
        """Matching records from the cursor on, in page order; reaching the first one is a
        bisect, so a page costs O(limit) however deep it is (without a sparse filter)."""
        if query.ids is not None:
            return iter(self._by_ids(listing, query.ids))
        rows, index_after = self._view(listing, query)
        start, stop = self._window(query, index_after, len(rows))
        candidates = (rows[index] for index in range(start, stop))
        return filter(query.predicate, candidates) if query.predicate else candidates

    def _list_query(self, request: Request, listing: Listing) -> ListQuery:
        params = dict(request.query)
        now = self.now()
        try:
            limit = int(params.get("limit", 20))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT:
            raise _bad_request(f"Invalid limit: '{params.get('limit')}'. Use 1 to {MAX_LIMIT}.")
        predicates = [
            factory(params[name], now)
            for name, factory in listing.filters.items()
            if name in params
        ]
        ids = [ident for ident in params.get("ids", "").split(",") if ident] or None
        if ids is not None and len(ids) > MAX_LIMIT:
            raise _bad_request(f"Pass at most {MAX_LIMIT} ids.")
        sort = params.get("sort", "created_at")
        _choice("sort", sort, {"created_at": sort, "updated_at": sort})
        return ListQuery(
            limit=MAX_LIMIT if ids else limit,  # ids come back all at once
            descending=_choice("order", params.get("order", "desc"), {"asc": False, "desc": True}),
            sort=sort,
            begin=_parse_time("begin_time", params.get("begin_time")),
            end=_parse_time("end_time", params.get("end_time")),
            cursor=_decode_cursor(params["cursor"]) if params.get("cursor") else None,
            predicate=(lambda row: all(p(row) for p in predicates)) if predicates else None,
            ids=ids,
        )

    def _by_ids(self, listing: Listing, ids: list[str]) -> list[dict]:
        """`ids=` lookups: unknown ids are ignored, as the API documents."""
        if listing.id_field is not None:
            return [row for row in listing.scope or () if row[listing.id_field] in ids]
        scope = None if listing.scope is None else {id(row) for row in listing.scope}
        found = (self._find(listing.kind, ident) for ident in ids)
        return [row for row in found if row is not None and (scope is None or id(row) in scope)]

    def _view(self, listing: Listing, query: ListQuery) -> tuple[list, Callable[[tuple], int]]:
        """Records in (sort field, id) order and a function giving the first index after a
        probe key: the store's cached view for a whole site, a small sort for one account."""
        kind, field, descending = listing.kind, query.sort, query.descending
        if listing.scope is None:
            rows, _ = self.store.ordered(kind, field, descending)
            return rows, lambda probe: self.store.page_after(kind, field, descending, probe)[1]
        id_field = listing.key_field
        rows = sorted(
            listing.scope, key=lambda r: _sort_key(r, field, id_field), reverse=descending
        )
        keys = [_sort_key(r, field, id_field) for r in rows]
        return rows, lambda probe: _scan_after(keys, descending, probe)

    @staticmethod
    def _window(
        query: ListQuery, index_after: Callable[[tuple], int], size: int
    ) -> tuple[int, int]:
        """[start, stop) of the records inside begin_time..end_time (inclusive) and after the
        cursor. One-element probes sort before every (value, id) key with that value."""
        after_end = (query.end + timedelta(microseconds=1),) if query.end else None
        begin = (query.begin,) if query.begin else None
        if query.descending:
            low = index_after(after_end) if after_end else 0
            high = index_after(begin) if begin else size
        else:
            low = index_after(begin) if begin else 0
            high = index_after(after_end) if after_end else size
        if query.cursor is not None:
            low = max(low, index_after(query.cursor))
        return low, high

    # -- writes ---------------------------------------------------------------------------
    @staticmethod
    def _body(request: Request) -> dict:
        return request.json_body if isinstance(request.json_body, dict) else {}

    def _saved(self, sub: dict) -> dict:
        """Record a write (updated_at = now, ordered views rebuilt) and answer with it."""
        self.store.touch("subscriptions", sub)
        return self.render.subscription(sub, self.now())

    def _writable(
        self, subscription_id: str, message: str, allowed: tuple[str, ...] = _NOT_ENDED
    ) -> tuple[dict, str]:
        """The subscription and its state; 422 when the state does not allow the write."""
        sub = self._get("subscriptions", subscription_id)
        state = subscription_state(sub, self.now())
        if state not in allowed:
            raise _validation(message)
        return sub, state

    def _plan_of(self, sub: dict) -> dict:
        return self.store.get("plans", sub["plan_id"])

    def _cancel(self, request: Request, subscription_id: str) -> dict:
        """Cancel at the end of the current term (`term_end`) or billing period
        (`bill_date`); a future subscription fails at once."""
        timeframe = self._body(request).get("timeframe", "term_end")
        if timeframe not in ("term_end", "bill_date"):
            raise _validation(
                "Please provide valid values for these parameters: timeframe.", "timeframe"
            )
        sub, state = self._writable(
            subscription_id,
            "Only active and future subscriptions can be canceled",
            ("active", "paused", "future"),
        )
        now, plan = self.now(), self._plan_of(sub)
        sub["canceled_at"] = now
        if state == "future":
            sub["ended_at"] = now
        elif timeframe == "term_end":
            sub["ended_at"] = current_term(sub, plan, now)[1]
        else:
            sub["ended_at"] = current_period(sub, plan, now)[1]
        return self._saved(sub)

    def _reactivate(self, request: Request, subscription_id: str) -> dict:
        sub, _ = self._writable(
            subscription_id, "Only canceled subscriptions can be reactivated", ("canceled",)
        )
        sub["canceled_at"] = sub["ended_at"] = None
        return self._saved(sub)

    def _terminate(self, request: Request, subscription_id: str) -> dict:
        """Expire now; `refund` is validated and kept in the request log (no money moves)."""
        refund = dict(request.query).get("refund", "none")
        if refund not in ("full", "partial", "none"):
            raise _validation("Please provide valid values for these parameters: refund.", "refund")
        sub, _ = self._writable(subscription_id, "Cannot expire an inactive subscription.")
        sub["canceled_at"] = sub["ended_at"] = self.now()
        return self._saved(sub)

    def _pause(self, request: Request, subscription_id: str) -> dict:
        """Pause from the next renewal for `remaining_pause_cycles` billing periods;
        0 drops a pending pause or ends a running one."""
        cycles = self._body(request).get("remaining_pause_cycles")
        if cycles is None:
            raise _validation("remaining_pause_cycles is required", "remaining_pause_cycles")
        if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 0:
            raise _validation(
                "remaining_pause_cycles must be a whole number >= 0", "remaining_pause_cycles"
            )
        sub, _ = self._writable(
            subscription_id,
            "Expired, canceled, future or failed subscriptions cannot be paused",
            ("active", "paused"),
        )
        now, plan = self.now(), self._plan_of(sub)
        if cycles == 0:
            self._end_pause(sub, now)
            return self._saved(sub)
        if pause_pending_or_running(sub, now):
            start = pause_cycle_start(sub, plan, now)
        else:
            start = sub["paused_at"] = current_period(sub, plan, now)[1]
        sub["resumes_at"] = add_interval(start, plan["interval"], plan["interval_count"] * cycles)
        return self._saved(sub)

    def _resume(self, request: Request, subscription_id: str) -> dict:
        sub, _ = self._writable(
            subscription_id,
            "Unable to resume a subscription that is not paused",
            ("active", "paused"),
        )
        now = self.now()
        if not pause_pending_or_running(sub, now):
            raise _validation("Unable to resume active subscription")
        self._end_pause(sub, now)
        return self._saved(sub)

    @staticmethod
    def _end_pause(sub: dict, now: datetime) -> None:
        """Resume now, or forget a pause that has not started yet."""
        if sub["paused_at"] is not None and sub["paused_at"] <= now:
            sub["resumes_at"] = now
        elif sub["paused_at"] is not None:
            sub["paused_at"] = sub["resumes_at"] = None

    def _update(self, request: Request, subscription_id: str) -> dict:
        """Settings update; `next_bill_date` extends the current term to that date. Other
        fields are accepted and ignored (they do not change billing facts here)."""
        raw = self._body(request).get("next_bill_date")
        sub, _ = self._writable(subscription_id, "Cannot update an expired subscription")
        if raw is not None:
            now = self.now()
            try:
                next_bill = _to_utc(str(raw))
            except ValueError:
                raise _validation(
                    "next_bill_date is not a valid timestamp", "next_bill_date"
                ) from None
            if next_bill <= now:
                raise _validation("next_bill_date must be in the future", "next_bill_date")
            sub["term_start"] = current_period(sub, self._plan_of(sub), now)[0]
            sub["term_end"] = next_bill
        return self._saved(sub)

    def _change(self, request: Request, subscription_id: str) -> Response:
        """Plan (and quantity) change: `now` applies it at once; `renewal`, `bill_date` and
        `term_end` leave it pending (`pending_change`, taking effect at the current
        period's end: the emulator keeps no term-end time apart, and never applies a
        pending change when the clock passes it). A new change replaces a pending one."""
        body = self._body(request)
        timeframe = body.get("timeframe", "now")
        if timeframe not in ("now", "renewal", "bill_date", "term_end"):
            raise _validation(
                "Please provide valid values for these parameters: timeframe.", "timeframe"
            )
        sub, _ = self._writable(subscription_id, "Expired subscriptions cannot be changed.")
        current = self._plan_of(sub)
        plan = self._changed_plan(body) or current
        quantity = body.get("quantity", sub["quantity"])
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise _validation("quantity must be a whole number >= 1", "quantity")
        currency = billing_currency(sub, current)
        if plan_in_currency(plan, currency) is None:
            raise _validation(f"Plan {plan['plan_id']} has no pricing in {currency}", "plan_code")
        if plan["plan_id"] == sub["plan_id"] and quantity == sub["quantity"]:
            raise _validation("Subscription hasn't been changed")
        sub["currency"] = currency
        now = self.now()
        if timeframe != "now":
            sub["pending_plan_id"], sub["pending_quantity"] = plan["plan_id"], quantity
            self.store.touch("subscriptions", sub)
            return Response(201, self.render.pending_change(sub, current, now))
        sub["plan_id"], sub["quantity"] = plan["plan_id"], quantity
        sub["pending_plan_id"] = sub["pending_quantity"] = None  # replaced by this change
        sub["items"] = self._add_on_items_kept(sub, plan)
        self.store.touch("subscriptions", sub)
        return Response(201, self.render.subscription_change(sub, now))

    def _add_on_items_kept(self, sub: dict, plan: dict) -> list[dict] | None:
        """A change that names no `add_ons` keeps the subscription's add-ons; those the
        new plan does not offer (another billing period) cannot stay and are dropped."""
        offered = {addon["plan_id"] for addon in self.render.add_ons_of(plan)}
        items = sub.get("items")
        return None if items is None else [i for i in items if i["plan_id"] in offered]

    def _changed_plan(self, body: dict) -> dict | None:
        """`plan_id` (an id, or `code-`) wins over `plan_code`, as the API documents."""
        if body.get("plan_id"):
            return self._get("plans", str(body["plan_id"]))
        if body.get("plan_code"):
            return self._get("plans", f"code-{body['plan_code']}")
        return None

    def _redeem_coupon(self, request: Request, account_id: str) -> dict:
        """Redeem a coupon. A subscription-level coupon goes onto the given
        `subscription_id` (or, without one, every subscription of the account that has not
        ended); an account-level coupon discounts all the account's charges, so the neutral
        model puts it on every such subscription (one redemption each, see
        `redemptions_of`) and the account's `updated_at` moves. A subscription that has a
        coupon takes the new one after it (the first applied stays first); an expired
        coupon is refused. The answer is the redemption of the requested (or first)
        subscription, as the account lists it."""
        body = self._body(request)
        customer = self._get("customers", account_id)
        if not body.get("coupon_id"):
            raise _validation("coupon_id is required", "coupon_id")
        coupon = self._get("coupons", str(body["coupon_id"]))
        currency = body.get("currency")
        if coupon["amount_off"] is not None and currency not in (None, coupon["currency"]):
            raise _validation(f"Coupon has no discount in {currency}", "currency")
        now = self.now()
        if happened(coupon.get("deleted_at"), now):
            raise _validation("Coupon is expired and can no longer be redeemed", "coupon_id")
        on_account = redemption_resource(coupon) == "account"
        requested = self._redemption_targets(customer, body.get("subscription_id"), now)
        targets = requested
        if on_account:
            targets = self._redemption_targets(customer, None, now)
            self.store.touch("customers", customer)
        for sub in targets:
            _add_coupon(sub, coupon["coupon_id"])
            self.store.touch("subscriptions", sub)
        redemption = next(
            r
            for r in self.render.account_redemptions(customer, now)
            if r["coupon"] is coupon and r["carrier"] is requested[0]
        )
        return self.render.redemption(redemption)

    def _redemption_targets(
        self, customer: dict, subscription_id: Any, now: datetime
    ) -> list[dict]:
        owned = self.store.by_customer["subscriptions"].get(customer["customer_id"], [])
        if subscription_id:
            sub = self._get("subscriptions", str(subscription_id))
            if sub["customer_id"] != customer["customer_id"]:
                raise self.not_found("Subscription", f"id = {subscription_id}")
            owned = [sub]
        live = [sub for sub in owned if not is_ended(sub, now)]
        if not live:
            raise _validation("The account has no live subscription to redeem the coupon on")
        return live


def _add_coupon(sub: dict, code: str) -> None:
    """The coupon becomes the subscription's first, or is applied after its others."""
    if sub["coupon_id"] is None:
        sub["coupon_id"] = code
    elif code not in coupon_codes(sub):
        sub["extra_coupon_ids"] = [*(sub.get("extra_coupon_ids") or ()), code]
