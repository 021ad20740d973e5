"""Stripe emulator: the v1 endpoints a retention pipeline reads and writes, for the official SDK.

Reads: subscriptions, customers, prices, products, coupons, invoices and events, as Stripe
lists them (newest first, `limit` 1..100, `starting_after`/`ending_before` cursors by id,
`created[...]` ranges, `expand[]`). Writes: subscription update (cancel at period end or at
a time, pause collection, coupon, trial extension, plan change, metadata) and cancel; each
changes the neutral record, appends an event and answers the updated subscription.

Errors have Stripe's shape, `{"error": {type, code, message, param, doc_url}}`, so the SDK
raises the same exception classes it raises against the real API.
"""

from __future__ import annotations

import bisect
import fnmatch
import re
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

from sandbox.billing import current_period, is_ended, is_paused, is_trialing
from sandbox.network import Verdict
from sandbox.server import ApiError, Emulator, Request, Response
from sandbox.stripe_render import (
    API_VERSION,
    EVENT_RETENTION,
    StripeRenderer,
    applied_coupons,
    changed_attributes,
    extra_item_id,
    is_gone,
    item_id,
    schedule_id,
    ts,
)

Key = tuple[datetime, str]  # (created, id): the order of every Stripe list, newest first
Match = Callable[[dict], bool] | None

_ID = r"(?P<ident>[^/]+)"
_LIST_PARAMS = {"limit", "starting_after", "ending_before", "expand"}
_SUBSCRIPTION_STATUSES = (
    "active",
    "all",
    "canceled",
    "ended",
    "incomplete",
    "incomplete_expired",
    "past_due",
    "paused",
    "trialing",
    "unpaid",
)
_INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")
_PAUSE_BEHAVIORS = ("keep_as_draft", "mark_uncollectible", "void")
_PRORATION_BEHAVIORS = ("always_invoice", "create_prorations", "none")
_FEEDBACK = (
    "customer_service",
    "low_quality",
    "missing_features",
    "other",
    "switched_service",
    "too_complex",
    "too_expensive",
    "unused",
)
_UPDATE_PARAMS = {
    "cancel_at",
    "cancel_at_period_end",
    "cancellation_details",
    "discounts",
    "expand",
    "items",
    "metadata",
    "pause_collection",
    "payment_behavior",
    "proration_behavior",
    "proration_date",
    "trial_end",
}
_CANCEL_PARAMS = {"cancellation_details", "expand", "invoice_now", "prorate"}
# The keys accepted inside the update's hashes (each a subset of the SDK's TypedDict for it,
# as tests/integration/test_conformance_stripe.py checks).
_NESTED_UPDATE_PARAMS = {
    "items": {"id", "price", "plan", "quantity"},
    "pause_collection": {"behavior", "resumes_at"},
    "discounts": {"coupon", "discount"},
    "cancellation_details": {"comment", "feedback"},
}
# Each list's own filters, beside limit/starting_after/ending_before/expand.
_LIST_FILTERS = {
    "subscriptions": {"created", "customer", "price", "plan", "status"},
    "subscription_items": {"subscription"},
    "invoice_lines": set(),
    "customers": {"created", "email"},
    "prices": {"created", "active", "currency", "product", "type"},
    "products": {"created", "active", "ids"},
    "coupons": {"created"},
    "invoices": {"created", "customer", "status", "subscription"},
    "events": {"created", "type", "types"},
}
# Internal error codes that Stripe sends without a `code` (only a type and a message).
_CODELESS = {
    "unauthorized",
    "not_found",
    "method_not_allowed",
    "api_error",
    "idempotency_error",
    "expand_invalid",
    "invalid_value",
    "subscription_canceled",
    "schedule_managed",
}
_NO_KEY_MESSAGE = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
    "https://stripe.com/docs/api#authentication for details, or we can help at "
    "https://support.stripe.com/."
)
_RATE_LIMIT_MESSAGE = (
    "Request rate limit exceeded. You can learn more about rate limits here "
    "https://stripe.com/docs/rate-limits."
)


# --------------------------------------------------------------------------- parameters


def invalid(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, "invalid_value", message, param=param)


def parse_int(value: Any, param: str) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
        raise ApiError(400, "parameter_invalid_integer", f"Invalid integer: {value}", param=param)
    return int(value)


def parse_bool(value: Any, param: str) -> bool:
    if value not in ("true", "false"):
        raise invalid(f"Invalid boolean: {value}", param)
    return value == "true"


def parse_time(value: Any, param: str) -> datetime:
    return datetime.fromtimestamp(parse_int(value, param), UTC)


def future_time(value: Any, param: str, now: datetime) -> datetime:
    at = parse_time(value, param)
    if at <= now:
        raise invalid("Invalid timestamp: must be an integer Unix timestamp in the future.", param)
    return at


def check_choice(value: Any, choices: tuple[str, ...], param: str) -> None:
    if value not in choices:
        raise invalid(f"Invalid {param}: must be one of {', '.join(choices)}", param)


def only_one(params: dict, *names: str) -> None:
    given = [name for name in names if name in params]
    if len(given) > 1:
        raise invalid(f"You may only specify one of these parameters: {', '.join(given)}.")


def reject_unknown(params: dict, allowed: set[str], parent: str = "") -> None:
    """Stripe refuses parameters it does not know; so does the sandbox, to catch typos.
    `parent` names the hash a nested parameter is in (`pause_collection[foo]`)."""
    unknown = sorted(set(params) - allowed)
    if unknown:
        name = f"{parent}[{unknown[0]}]" if parent else unknown[0]
        raise ApiError(400, "parameter_unknown", f"Received unknown parameter: {name}", param=name)


def expand_paths(params: dict) -> list[str]:
    value = params.get("expand", [])
    return [value] if isinstance(value, str) else list(value)


def created_window(params: dict) -> tuple[datetime | None, datetime | None]:
    """`created` as [lower, upper): whole epoch seconds, so `lte=X` includes all of second X."""
    value = params.get("created")
    if value is None:
        return None, None
    if isinstance(value, str):
        at = parse_time(value, "created")
        return at, at + timedelta(seconds=1)
    if not isinstance(value, dict):
        raise invalid(
            "Invalid created: must be an integer or a hash of gt, gte, lt, lte", "created"
        )
    reject_unknown(value, {"gt", "gte", "lt", "lte"}, "created")
    second = timedelta(seconds=1)
    bounds = {op: parse_time(raw, f"created[{op}]") for op, raw in value.items()}
    lowers = [bounds["gte"]] if "gte" in bounds else []
    lowers += [bounds["gt"] + second] if "gt" in bounds else []
    uppers = [bounds["lt"]] if "lt" in bounds else []
    uppers += [bounds["lte"] + second] if "lte" in bounds else []
    return max(lowers, default=None), min(uppers, default=None)


def mask_key(key: str) -> str:
    """`sk_test_abc…wxyz` -> `sk_test_****…wxyz`: Stripe never echoes a whole key."""
    match = re.match(r"^([a-z]{2,4}_(?:test_|live_)?)(.*)$", key)
    prefix, rest = (match.group(1), match.group(2)) if match else ("", key)
    visible = rest[-4:] if len(rest) > 8 else ""
    return prefix + "*" * (len(rest) - len(visible)) + visible


# --------------------------------------------------------------------------- paging


def first_index(keys: Sequence, predicate: Callable[[Any], bool]) -> int:
    """First index whose key satisfies a predicate that is false then true along `keys`."""
    lo, hi = 0, len(keys)
    while lo < hi:
        mid = (lo + hi) // 2
        if predicate(keys[mid]):
            hi = mid
        else:
            lo = mid + 1
    return lo


class Descending(Sequence):
    """An ascending list seen newest first, without copying (events are kept ascending so
    that appending the newest is cheap)."""

    def __init__(self, items: list):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):  # integer indexes only: the pager needs nothing more
        return self.items[len(self.items) - 1 - index]


def page_desc(
    rows: Sequence[dict],
    keys: Sequence[Key],
    limit: int,
    after: Key | None = None,
    before: Key | None = None,
    window: tuple[datetime | None, datetime | None] = (None, None),
    match: Match = None,
) -> tuple[list[dict], bool]:
    """One page of a newest-first list: bisect to the cursor and the created window, then
    walk at most `limit + 1` matching rows (plus the ones a filter skips)."""
    lower, upper = window
    lo = 0 if upper is None else first_index(keys, lambda k: k[0] < upper)
    hi = len(keys) if lower is None else first_index(keys, lambda k: k[0] < lower)
    picked: list[dict] = []
    if before is not None:  # the page just newer than the cursor, walking back from it
        index = min(hi, first_index(keys, lambda k: k <= before)) - 1
        while index >= lo and len(picked) <= limit:
            if match is None or match(rows[index]):
                picked.append(rows[index])
            index -= 1
        return picked[:limit][::-1], len(picked) > limit
    index = lo if after is None else max(lo, first_index(keys, lambda k: k < after))
    while index < hi and len(picked) <= limit:
        if match is None or match(rows[index]):
            picked.append(rows[index])
        index += 1
    return picked[:limit], len(picked) > limit


def newest_first(records: list[dict], id_field: str) -> tuple[list[dict], list[Key]]:
    """A small index bucket (one customer's subscriptions) sorted like the full views."""
    rows = sorted(records, key=lambda r: (r["created_at"], r[id_field]), reverse=True)
    return rows, [(r["created_at"], r[id_field]) for r in rows]


# --------------------------------------------------------------------------- events


class EventLog:
    """Events oldest first (appending a new one is O(1)); listed through `Descending`."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.keys: list[Key] = []
        self.by_id: dict[str, tuple[dict, datetime]] = {}
        self._count = 0

    def add(
        self,
        at: datetime,
        kind: str,
        obj: dict,
        previous: dict | None,
        request: dict | None = None,
    ) -> dict:
        self._count += 1
        event_id = f"evt_{self._count:014d}"  # ids grow with time, as list order needs
        data: dict = {"object": obj}
        if previous is not None:
            data["previous_attributes"] = previous
        event = {
            "id": event_id,
            "object": "event",
            "api_version": API_VERSION,
            "created": ts(at),
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": request or {"id": None, "idempotency_key": None},
            "type": kind,
        }
        key = (at, event_id)
        index = bisect.bisect_right(self.keys, key)
        self.events.insert(index, event)
        self.keys.insert(index, key)
        self.by_id[event_id] = (event, at)
        return event


# --------------------------------------------------------------------------- emulator


class StripeEmulator(Emulator):
    """Stripe API v1 over the neutral store; see the module docstring."""

    name = "stripe"
    idempotency_header = "Idempotency-Key"
    request_id_header = "Request-Id"
    replay_header = "Idempotent-Replayed"

    def __init__(self, *args: Any, **kwargs: Any):
        self._caller = threading.local()  # the key this thread's request presented
        super().__init__(*args, **kwargs)
        self.render = StripeRenderer(self.store)
        self.product_rows, self.product_keys = newest_first(
            list(self.render.products.values()), "product_id"
        )
        self.customers_by_email: dict[str, list[dict]] = {}
        for customer in self.store.all("customers"):
            self.customers_by_email.setdefault(customer["email"], []).append(customer)
        self.schedules = {  # schedule id -> subscription id (scheduled changes are fixed)
            schedule_id(sub["subscription_id"]): sub["subscription_id"]
            for sub in self.store.all("subscriptions")
            if sub["pending_plan_id"] is not None
        }
        self.events = EventLog()
        for at, kind, obj, previous in self.render.history(self.store.as_of):
            self.events.add(at, kind, obj, previous)
        self.store.listeners.append(self._on_transition)

    def _on_transition(self, sub: dict, field: str, at: datetime) -> None:
        """The clock made a change (a trial ended, a scheduled cancel took effect, a pause
        began or ended): Stripe reports it as an event at that moment."""
        before = self.render.subscription(sub, at - timedelta(microseconds=1))
        after = self.render.subscription(sub, at)
        if field == "ended_at":
            self.events.add(at, "customer.subscription.deleted", after, None)
        elif previous := changed_attributes(before, after):
            self.events.add(at, "customer.subscription.updated", after, previous)

    def register_routes(self) -> None:
        for path, lister, retriever in (
            ("subscriptions", self.list_subscriptions, self.get_subscription),
            ("customers", self.list_customers, self.get_customer),
            ("prices", self.list_prices, self.get_price),
            ("products", self.list_products, self.get_product),
            ("coupons", self.list_coupons, self.get_coupon),
            ("invoices", self.list_invoices, self.get_invoice),
            ("events", self.list_events, self.get_event),
        ):
            self.route("GET", f"/v1/{path}", lister)
            self.route("GET", f"/v1/{path}/{_ID}", retriever)
        self.route("GET", "/v1/subscription_items", self.list_subscription_items)
        self.route("GET", f"/v1/subscription_schedules/{_ID}", self.get_schedule)
        self.route("POST", f"/v1/subscription_schedules/{_ID}/release", self.release_schedule)
        self.route("GET", f"/v1/invoices/{_ID}/lines", self.list_invoice_lines)
        self.route("POST", f"/v1/subscriptions/{_ID}", self.update_subscription)
        self.route("DELETE", f"/v1/subscriptions/{_ID}", self.cancel_subscription)

    # -- errors and auth in Stripe's shape ----------------------------------------------
    def render_error(self, error: ApiError) -> Response:
        if error.status >= 500:
            kind = "api_error"
        elif error.code == "idempotency_error":
            kind = "idempotency_error"
        else:
            kind = "invalid_request_error"
        code = None if error.code in _CODELESS else error.code
        body: dict[str, Any] = {
            "type": kind,
            "code": code,
            "message": error.message,
            "param": error.extra.get("param"),
        }
        if code:
            body["doc_url"] = "https://docs.stripe.com/error-codes/" + code.replace("_", "-")
        return Response(error.status, {"error": body})

    def presented_key(self, request: Request) -> str | None:
        key = super().presented_key(request)
        self._caller.key = key  # remembered so the 401 can name it, masked
        return key

    def unauthorized(self) -> ApiError:
        key = getattr(self._caller, "key", None)
        if not key:
            return ApiError(401, "unauthorized", _NO_KEY_MESSAGE)
        return ApiError(401, "unauthorized", f"Invalid API Key provided: {mask_key(key)}")

    def not_found(self, what: str, ident: str) -> ApiError:
        return ApiError(404, "resource_missing", f"No such {what}: '{ident}'", param="id")

    def rate_limited(self, retry_after: int, verdict: Verdict | None = None) -> Response:
        response = self.render_error(ApiError(429, "rate_limit", _RATE_LIMIT_MESSAGE))
        response.headers.update(self.rate_limit_headers(retry_after, verdict))
        return response

    def rate_limit_headers(
        self, retry_after: int, verdict: Verdict | None = None
    ) -> dict[str, str]:
        """A limiter's 429 names the budget in `Stripe-Rate-Limited-Reason` (global-rate,
        endpoint-rate) and, as Stripe documents, no `Retry-After`: clients back off
        exponentially. A scripted fault keeps its `Retry-After`."""
        if verdict is None:
            return super().rate_limit_headers(retry_after)
        return {"Stripe-Rate-Limited-Reason": verdict.reason}

    # -- lists --------------------------------------------------------------------------
    def _list(
        self,
        request: Request,
        url: str,
        view: tuple[Sequence[dict], Sequence[Key]],
        find: Callable[[str], Key | None],
        label: str,
        render: Callable[[dict, datetime], dict],
        match: Match = None,
        allowed: frozenset[str] | set[str] = frozenset(),
        window_floor: datetime | None = None,
    ) -> dict:
        """A Stripe list page: the common paging parameters, the view's order, a filter."""
        params = request.nested()
        reject_unknown(params, _LIST_PARAMS | set(allowed))
        limit = parse_int(params.get("limit", "10"), "limit")
        if not 1 <= limit <= 100:
            bound = "greater than or equal to 1" if limit < 1 else "less than or equal to 100"
            raise ApiError(
                400, "parameter_invalid_integer", f"This value must be {bound}.", param="limit"
            )
        only_one(params, "ending_before", "starting_after")
        cursors = {}
        for name in ("starting_after", "ending_before"):
            if name in params:
                cursors[name] = find(params[name])
                if cursors[name] is None:
                    message = f"No such {label}: '{params[name]}'"
                    raise ApiError(400, "resource_missing", message, param=name)
        lower, upper = created_window(params)
        if window_floor is not None:
            lower = window_floor if lower is None else max(lower, window_floor)
        rows, has_more = page_desc(
            view[0],
            view[1],
            limit,
            after=cursors.get("starting_after"),
            before=cursors.get("ending_before"),
            window=(lower, upper),
            match=match,
        )
        now = self.now()
        body = {
            "object": "list",
            "data": [render(row, now) for row in rows],
            "has_more": has_more,
            "url": url,
        }
        return self.render.expand(body, expand_paths(params), now)

    def _record_key(self, kind: str, id_field: str) -> Callable[[str], Key | None]:
        def find(ident: str) -> Key | None:
            record = self.store.get(kind, ident)
            return None if record is None else (record["created_at"], record[id_field])

        return find

    def _ordered(self, kind: str) -> tuple[list, list]:
        return self.store.ordered(kind, "created_at", True)

    def list_subscriptions(self, request: Request) -> dict:
        params = request.params
        status = params.get("status")
        if status is not None:
            check_choice(status, _SUBSCRIPTION_STATUSES, "status")
        now = self.now()
        wanted = {"ended": "canceled"}.get(status or "", status)
        price = params.get("price") or params.get("plan")
        conditions: list[Callable[[dict], bool]] = []
        if wanted is None:
            conditions.append(lambda s: self.render.status(s, now) != "canceled")
        elif wanted != "all":
            conditions.append(lambda s: self.render.status(s, now) == wanted)
        if price is not None:
            conditions.append(lambda s: price in _prices_of(s))
        view = self._ordered("subscriptions")
        if "customer" in params:
            bucket = self.store.by_customer["subscriptions"].get(params["customer"], [])
            view = newest_first(bucket, "subscription_id")
        return self._list(
            request,
            "/v1/subscriptions",
            view,
            self._record_key("subscriptions", "subscription_id"),
            "subscription",
            self.render.subscription,
            _all_of(conditions),
            _LIST_FILTERS["subscriptions"],
        )

    def list_subscription_items(self, request: Request) -> dict:
        """GET /v1/subscription_items?subscription=…: one subscription's items (required
        parameter, as Stripe's), in the order of the subscription's `items`."""
        ident = request.params.get("subscription")
        if ident is None:
            raise ApiError(
                400,
                "parameter_missing",
                "Missing required param: subscription.",
                param="subscription",
            )
        sub = self.store.get("subscriptions", ident)
        if sub is None:
            raise ApiError(
                400, "resource_missing", f"No such subscription: '{ident}'", param="subscription"
            )

        now = self.now()
        period_start, period_end = current_period(sub, self.store.get("plans", sub["plan_id"]), now)
        rows = self.render.items(sub, period_start, period_end)
        return self._list_in_order(
            request, "/v1/subscription_items", rows, "subscription item", "subscription_items"
        )

    def list_invoice_lines(self, request: Request, ident: str) -> dict:
        """GET /v1/invoices/{id}/lines: every line of an invoice (its `lines` embeds the
        first page only), in the invoice's order."""
        invoice = self.store.get("invoices", unquote_plus(ident))
        if invoice is None:
            raise self.not_found("invoice", unquote_plus(ident))
        rows = self.render.invoice_lines(invoice)
        url = f"/v1/invoices/{invoice['invoice_id']}/lines"
        return self._list_in_order(request, url, rows, "invoice line item", "invoice_lines")

    def _list_in_order(
        self, request: Request, url: str, rows: list[dict], label: str, filters: str
    ) -> dict:
        """A list page over a fixed list of objects, keeping its order."""
        first = self.store.as_of
        keys = [(first, f"{len(rows) - n:03d}") for n in range(len(rows))]  # newest first
        by_id = dict(zip((row["id"] for row in rows), keys, strict=True))
        return self._list(
            request,
            url,
            (rows, keys),
            by_id.get,
            label,
            lambda row, _now: row,
            allowed=_LIST_FILTERS[filters],
        )

    def list_customers(self, request: Request) -> dict:
        """Deleted customers are listed no more (retrieving one answers a stub)."""
        now = self.now()
        view = self._ordered("customers")
        email = request.params.get("email")
        if email is not None:
            view = newest_first(self.customers_by_email.get(email, []), "customer_id")
        return self._list(
            request,
            "/v1/customers",
            view,
            self._record_key("customers", "customer_id"),
            "customer",
            self.render.customer,
            lambda customer: not is_gone(customer, now),
            _LIST_FILTERS["customers"],
        )

    def list_prices(self, request: Request) -> dict:
        params = request.params
        conditions: list[Callable[[dict], bool]] = []
        if "active" in params:  # without it Stripe lists active and archived prices
            active = parse_bool(params["active"], "active")
            conditions.append(lambda plan: (plan["archived_at"] is None) == active)
        if "type" in params and params["type"] != "recurring":
            conditions.append(lambda plan: False)  # and recurring
        if "product" in params:
            conditions.append(lambda plan: plan["product_id"] == params["product"])
        if "currency" in params:
            conditions.append(lambda plan: plan["currency"].lower() == params["currency"].lower())
        return self._list(
            request,
            "/v1/prices",
            self._ordered("plans"),
            self._record_key("plans", "plan_id"),
            "price",
            lambda plan, _now: self.render.price(plan),
            _all_of(conditions),
            _LIST_FILTERS["prices"],
        )

    def list_products(self, request: Request) -> dict:
        params = request.nested()
        conditions: list[Callable[[dict], bool]] = []
        if "active" in params and not parse_bool(params["active"], "active"):
            conditions.append(lambda product: False)
        if "ids" in params:
            ids = set(params["ids"]) if isinstance(params["ids"], list) else {params["ids"]}
            conditions.append(lambda product: product["product_id"] in ids)

        def find(ident: str) -> Key | None:
            product = self.render.products.get(ident)
            return None if product is None else (product["created_at"], ident)

        return self._list(
            request,
            "/v1/products",
            (self.product_rows, self.product_keys),
            find,
            "product",
            lambda product, _now: self.render.product(product),
            _all_of(conditions),
            _LIST_FILTERS["products"],
        )

    def list_coupons(self, request: Request) -> dict:
        """Deleted coupons are listed no more (nor retrieved); discounts keep them."""
        now = self.now()
        return self._list(
            request,
            "/v1/coupons",
            self._ordered("coupons"),
            self._record_key("coupons", "coupon_id"),
            "coupon",
            lambda coupon, _now: self.render.coupon(coupon),
            lambda coupon: not is_gone(coupon, now),
            _LIST_FILTERS["coupons"],
        )

    def list_invoices(self, request: Request) -> dict:
        params = request.params
        status = params.get("status")
        if status is not None:
            check_choice(status, _INVOICE_STATUSES, "status")
        conditions: list[Callable[[dict], bool]] = []
        if status is not None:
            conditions.append(lambda invoice: invoice["status"] == status)
        if "customer" in params:
            conditions.append(lambda invoice: invoice["customer_id"] == params["customer"])
        view = self._ordered("invoices")
        if "subscription" in params:
            bucket = self.render.invoices_by_subscription.get(params["subscription"], [])
            view = newest_first(bucket, "invoice_id")
        elif "customer" in params:
            bucket = self.store.by_customer["invoices"].get(params["customer"], [])
            view = newest_first(bucket, "invoice_id")
        return self._list(
            request,
            "/v1/invoices",
            view,
            self._record_key("invoices", "invoice_id"),
            "invoice",
            lambda invoice, _now: self.render.invoice(invoice),
            _all_of(conditions),
            _LIST_FILTERS["invoices"],
        )

    def list_events(self, request: Request) -> dict:
        """Events of the last 30 days by the clock (Stripe keeps no more), newest first."""
        params = request.nested()
        only_one(params, "type", "types")
        conditions: list[Callable[[dict], bool]] = []
        if "type" in params:
            pattern = params["type"]  # Stripe accepts `*` wildcards here
            conditions.append(lambda event: fnmatch.fnmatchcase(event["type"], pattern))
        if "types" in params:
            types = params["types"]
            wanted = set(types) if isinstance(types, list) else {types}
            conditions.append(lambda event: event["type"] in wanted)

        def find(ident: str) -> Key | None:
            found = self.events.by_id.get(ident)
            return None if found is None else (found[1], ident)

        return self._list(
            request,
            "/v1/events",
            (Descending(self.events.events), Descending(self.events.keys)),
            find,
            "event",
            lambda event, _now: event,
            _all_of(conditions),
            _LIST_FILTERS["events"],
            window_floor=self.now() - EVENT_RETENTION,
        )

    # -- retrieval ----------------------------------------------------------------------
    def _retrieve(self, request: Request, kind: str, what: str, ident: str) -> dict:
        ident = unquote_plus(ident)
        params = request.nested()
        reject_unknown(params, {"expand"})
        now = self.now()
        if kind == "products":
            product = self.render.products.get(ident)
            obj = None if product is None else self.render.product(product)
        elif kind == "events":
            found = self.events.by_id.get(ident)
            visible = found is not None and found[1] >= now - EVENT_RETENTION
            obj = found[0] if visible else None
        else:
            record = self.store.get(kind, ident)
            if record is not None and kind == "coupons" and is_gone(record, now):
                record = None
            obj = None if record is None else self._render_record(kind, record, now)
        if obj is None:
            raise self.not_found(what, ident)
        return self.render.expand(obj, expand_paths(params), now)

    def _render_record(self, kind: str, record: dict, now: datetime) -> dict:
        if kind == "subscriptions":
            return self.render.subscription(record, now)
        if kind == "customers":
            return self.render.customer_or_stub(record, now)
        if kind == "plans":
            return self.render.price(record)
        if kind == "coupons":
            return self.render.coupon(record)
        return self.render.invoice(record)

    def get_subscription(self, request: Request, ident: str) -> dict:
        return self._retrieve(request, "subscriptions", "subscription", ident)

    def get_customer(self, request: Request, ident: str) -> dict:
        return self._retrieve(request, "customers", "customer", ident)

    def get_price(self, request: Request, ident: str) -> dict:
        return self._retrieve(request, "plans", "price", ident)

    def get_product(self, request: Request, ident: str) -> dict:
        return self._retrieve(request, "products", "product", ident)

    def get_coupon(self, request: Request, ident: str) -> dict:
        return self._retrieve(request, "coupons", "coupon", ident)

    def get_invoice(self, request: Request, ident: str) -> dict:
        return self._retrieve(request, "invoices", "invoice", ident)

    def get_event(self, request: Request, ident: str) -> dict:
        return self._retrieve(request, "events", "event", ident)

    def get_schedule(self, request: Request, ident: str) -> dict:
        """A subscription's schedule, while the subscription names it (`schedule`)."""
        params = request.nested()
        reject_unknown(params, {"expand"})
        now = self.now()
        sub = self._scheduled(ident, now)
        return self.render.expand(self.render.schedule(sub, now), expand_paths(params), now)

    def release_schedule(self, request: Request, ident: str) -> Response:
        """POST /v1/subscription_schedules/{id}/release: the subscription goes on as it is,
        its scheduled change dropped; the answer is the released schedule."""
        params = request.nested()
        reject_unknown(params, {"expand", "preserve_cancel_date"})
        if "preserve_cancel_date" in params:
            parse_bool(params["preserve_cancel_date"], "preserve_cancel_date")
        now = self.now()
        sub = self._scheduled(ident, now)
        released = {
            **self.render.schedule(sub, now),
            "released_at": ts(now),
            "released_subscription": sub["subscription_id"],
            "status": "released",
            "subscription": None,
        }
        self.events.add(now, "subscription_schedule.released", released, None)
        dropped = {"pending_plan_id": None, "pending_quantity": None}
        self._commit(request, sub, dropped, "customer.subscription.updated", {})
        body = self.render.expand(released, expand_paths(params), now)
        return Response(200, body, {self.request_id_header: self.new_request_id()})

    def _scheduled(self, ident: str, now: datetime) -> dict:
        """The subscription whose schedule `ident` is in force (404 otherwise)."""
        ident = unquote_plus(ident)
        sub = self.store.get("subscriptions", self.schedules.get(ident, ""))
        if sub is None or self.render.subscription(sub, now)["schedule"] != ident:
            raise self.not_found("subscription_schedule", ident)
        return sub

    # -- writes -------------------------------------------------------------------------
    def _subscription(self, ident: str) -> dict:
        ident = unquote_plus(ident)
        sub = self.store.get("subscriptions", ident)
        if sub is None:
            raise self.not_found("subscription", ident)
        return sub

    def update_subscription(self, request: Request, ident: str) -> Response:
        """POST /v1/subscriptions/{id}: every change is checked before any is applied, so
        a refused request leaves the subscription as it was."""
        sub = self._subscription(ident)
        params = request.nested()
        reject_unknown(params, _UPDATE_PARAMS)
        now = self.now()
        if is_ended(sub, now) and set(params) - {"cancellation_details", "expand", "metadata"}:
            raise ApiError(
                400,
                "subscription_canceled",
                "A canceled subscription can only update its cancellation_details and metadata.",
            )
        if "proration_behavior" in params:  # accepted; the sandbox issues no prorations
            check_choice(params["proration_behavior"], _PRORATION_BEHAVIORS, "proration_behavior")
        schedule = self.render.subscription(sub, now)["schedule"]
        if schedule and {"cancel_at", "cancel_at_period_end"} & set(params):
            raise ApiError(  # Stripe's words: release the schedule (or update it) first
                400,
                "schedule_managed",
                f"The subscription is managed by the subscription schedule `{schedule}`, and "
                "updating any cancelation behavior directly is not allowed. Please update "
                "the schedule instead.",
            )
        changes: dict[str, Any] = {}
        for planner in (
            self._cancel_changes,
            self._pause_changes,
            self._coupon_changes,
            self._trial_changes,
            self._item_changes,
            self._metadata_changes,
            self._cancellation_details_changes,
        ):
            changes.update(planner(sub, params, now))
        return self._commit(request, sub, changes, "customer.subscription.updated", params)

    def cancel_subscription(self, request: Request, ident: str) -> Response:
        """DELETE /v1/subscriptions/{id}: cancel now. Stripe treats a canceled subscription
        as gone for this call and answers `No such subscription`."""
        sub = self._subscription(ident)
        now = self.now()
        if is_ended(sub, now):
            raise self.not_found("subscription", sub["subscription_id"])
        params = request.nested()
        reject_unknown(params, _CANCEL_PARAMS)
        for flag in ("prorate", "invoice_now"):  # accepted; the sandbox issues no invoices
            if flag in params:
                parse_bool(params[flag], flag)
        changes = {"canceled_at": now, "ended_at": now}
        changes.update(self._cancellation_details_changes(sub, params, now))
        return self._commit(request, sub, changes, "customer.subscription.deleted", params)

    def _commit(
        self, request: Request, sub: dict, changes: dict, kind: str, params: dict
    ) -> Response:
        """Apply the planned changes, record the event and answer the subscription."""
        now = self.now()
        changes = {field: value for field, value in changes.items() if sub.get(field) != value}
        before = self.render.subscription(sub, now)
        if changes:
            sub.update(changes)
            self.store.touch("subscriptions", sub)
        after = self.render.subscription(sub, now)
        request_id = self.new_request_id()
        idempotency_key = request.headers.get("idempotency-key")
        previous = changed_attributes(before, after)
        if kind == "customer.subscription.deleted" or previous:
            origin = {"id": request_id, "idempotency_key": idempotency_key}
            deleted = kind == "customer.subscription.deleted"
            self.events.add(now, kind, after, None if deleted else previous, origin)
        body = self.render.expand(after, expand_paths(params), now)
        headers = {self.request_id_header: request_id}
        if idempotency_key:  # Stripe echoes the key it applied
            headers[self.idempotency_header] = idempotency_key
        return Response(200, body, headers)

    def _period_end(self, sub: dict, now: datetime) -> datetime:
        return current_period(sub, self.store.get("plans", sub["plan_id"]), now)[1]

    def _cancel_changes(self, sub: dict, params: dict, now: datetime) -> dict:
        """Neutral convention: a cancel request stamps `canceled_at` and sets the end;
        withdrawing it clears both."""
        only_one(params, "cancel_at", "cancel_at_period_end")
        withdraw = {"canceled_at": None, "ended_at": None}
        if "cancel_at_period_end" in params:
            if parse_bool(params["cancel_at_period_end"], "cancel_at_period_end"):
                return {"canceled_at": now, "ended_at": self._period_end(sub, now)}
            return withdraw if sub["ended_at"] is not None else {}
        if "cancel_at" in params:
            if params["cancel_at"] == "":
                return withdraw if sub["ended_at"] is not None else {}
            return {
                "canceled_at": now,
                "ended_at": future_time(params["cancel_at"], "cancel_at", now),
            }
        return {}

    def _pause_changes(self, sub: dict, params: dict, now: datetime) -> dict:
        """`pause_collection[...]` pauses (or moves the resume date of a running pause);
        an empty `pause_collection` resumes now, or drops a pause that has not started."""
        if "pause_collection" not in params:
            return {}
        value = params["pause_collection"]
        if value == "":
            if is_paused(sub, now):
                return {"resumes_at": now}
            if sub["paused_at"] is not None and sub["paused_at"] > now:
                return {"paused_at": None, "resumes_at": None}
            return {}
        if not isinstance(value, dict):
            raise invalid("Invalid hash", "pause_collection")
        reject_unknown(value, _NESTED_UPDATE_PARAMS["pause_collection"], "pause_collection")
        behavior = value.get("behavior")
        if behavior is None:
            raise ApiError(
                400,
                "parameter_missing",
                "Missing required param: pause_collection[behavior].",
                param="pause_collection[behavior]",
            )
        check_choice(behavior, _PAUSE_BEHAVIORS, "pause_collection[behavior]")
        resumes_at = None  # no date: paused until resumed
        if value.get("resumes_at"):
            resumes_at = future_time(value["resumes_at"], "pause_collection[resumes_at]", now)
        return {
            "paused_at": sub["paused_at"] if is_paused(sub, now) else now,
            "resumes_at": resumes_at,
            "pause_behavior": behavior,
        }

    def _coupon_changes(self, sub: dict, params: dict, now: datetime) -> dict:
        """`discounts[n][coupon]` replaces the subscription's discounts, in that order (the
        `coupon` parameter is gone since 2025-03-31: refused as unknown); an empty value
        removes them all."""
        if "discounts" not in params:
            return {}
        discounts = params["discounts"]
        if discounts == "":
            coupon_ids: list[str] = []
        elif isinstance(discounts, list) and all(isinstance(d, dict) for d in discounts):
            coupon_ids = [self._discount_coupon(sub, n, d, now) for n, d in enumerate(discounts)]
        else:
            raise invalid("Invalid array", "discounts")
        if len(set(coupon_ids)) != len(coupon_ids):
            raise invalid("You cannot apply the same coupon more than once.", "discounts")
        if coupon_ids == applied_coupons(sub):
            return {}
        return {
            "coupon_id": coupon_ids[0] if coupon_ids else None,
            "extra_coupon_ids": coupon_ids[1:] or None,
            "coupon_applied_at": now if coupon_ids else None,
        }

    def _discount_coupon(self, sub: dict, n: int, discount: dict, now: datetime) -> str:
        """The coupon one `discounts[n]` entry applies: a new discount of a coupon (which
        must exist and not be deleted), or one in place reused by id (the subscription's
        own, or its customer's)."""
        param = f"discounts[{n}][coupon]"
        if "promotion_code" in discount:
            message = f"No such promotion code: '{discount['promotion_code']}'"
            raise ApiError(
                400, "resource_missing", message, param=f"discounts[{n}][promotion_code]"
            )
        reject_unknown(discount, _NESTED_UPDATE_PARAMS["discounts"], f"discounts[{n}]")
        only_one(discount, "coupon", "discount")
        if "discount" in discount:
            return self._reused_coupon(sub, n, discount["discount"])
        coupon_id = discount.get("coupon", "")
        coupon = self.store.get("coupons", coupon_id)
        if coupon is None or is_gone(coupon, now):
            raise ApiError(400, "resource_missing", f"No such coupon: '{coupon_id}'", param=param)
        return coupon_id

    def _reused_coupon(self, sub: dict, n: int, discount_id: str) -> str:
        customer = self.store.get("customers", sub["customer_id"])
        in_place = [*self.render.discounts(sub), self.render.customer_discount(customer)]
        for discount in in_place:
            if discount is not None and discount["id"] == discount_id:
                return discount["source"]["coupon"]
        message = f"No such discount: '{discount_id}'"
        raise ApiError(400, "resource_missing", message, param=f"discounts[{n}][discount]")

    def _trial_changes(self, sub: dict, params: dict, now: datetime) -> dict:
        """`trial_end=<ts>` is Stripe's extension: a trial from the current period's start
        to the new end; `trial_end=now` ends a running trial."""
        if "trial_end" not in params:
            return {}
        if params["trial_end"] == "now":
            return {"trial_end": now} if is_trialing(sub, now) else {}
        end = future_time(params["trial_end"], "trial_end", now)
        start = current_period(sub, self.store.get("plans", sub["plan_id"]), now)[0]
        return {"trial_start": start, "trial_end": end}

    def _item_changes(self, sub: dict, params: dict, _now: datetime) -> dict:
        """`items[n]` with an `id` changes that item's price or quantity (the plan's item
        changes the record's plan, a further item its entry of `items`, keeping its id).
        Without an id a price replaces the plan on a one-item subscription, the sandbox's
        shortcut for the swap (Stripe would add an item beside it)."""
        if "items" not in params:
            return {}
        items = params["items"]
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            raise invalid("Invalid array", "items")
        plan_item = item_id(sub["subscription_id"])
        changes: dict[str, Any] = {}
        extras = [dict(extra) for extra in sub.get("items") or []]
        for n, item in enumerate(items):
            reject_unknown(item, _NESTED_UPDATE_PARAMS["items"], f"items[{n}]")
            ident = item.get("id", plan_item)
            if ident == plan_item:
                target = changes
                price_key, current = "plan_id", changes.get("plan_id", sub["plan_id"])
            else:
                target = next((e for e in extras if extra_item_id(sub, e) == ident), None)
                if target is None:
                    message = f"No such subscription item: '{ident}'"
                    raise ApiError(400, "resource_missing", message, param=f"items[{n}][id]")
                price_key, current = "plan_id", target["plan_id"]
                target["item_id"] = ident  # the id stays when the price changes
            price = item.get("price") or item.get("plan")
            if price is not None:
                if self.store.get("plans", price) is None:
                    message = f"No such price: '{price}'"
                    raise ApiError(400, "resource_missing", message, param=f"items[{n}][price]")
                target[price_key] = current = price
            if "quantity" in item:
                param = f"items[{n}][quantity]"
                if self.store.get("plans", current)["usage_type"] == "metered":
                    raise invalid("Quantity can not be set for metered prices.", param)
                quantity = parse_int(item["quantity"], param)
                if quantity < 1:
                    raise invalid("This value must be greater than or equal to 1.", param)
                target["quantity"] = quantity
        if extras != (sub.get("items") or []):
            changes["items"] = extras
        return changes

    def _metadata_changes(self, sub: dict, params: dict, _now: datetime) -> dict:
        """Stripe merges metadata keys; an empty value deletes a key, `metadata=` all."""
        if "metadata" not in params:
            return {}
        value = params["metadata"]
        if value == "":
            return {"metadata": {}}
        if not isinstance(value, dict):
            raise invalid("Invalid hash", "metadata")
        merged = dict(sub.get("metadata") or {})
        for key, text in value.items():
            if text == "":
                merged.pop(key, None)
            else:
                merged[key] = text
        return {"metadata": merged}

    def _cancellation_details_changes(self, sub: dict, params: dict, _now: datetime) -> dict:
        if "cancellation_details" not in params:
            return {}
        value = params["cancellation_details"]
        if not isinstance(value, dict):
            raise invalid("Invalid hash", "cancellation_details")
        reject_unknown(value, _NESTED_UPDATE_PARAMS["cancellation_details"], "cancellation_details")
        feedback = value.get("feedback")
        if feedback:
            check_choice(feedback, _FEEDBACK, "cancellation_details[feedback]")
        details = dict(sub.get("cancellation_details") or {})
        details.update({key: text or None for key, text in value.items()})
        return {"cancellation_details": details}


def _prices_of(sub: dict) -> set[str]:
    """Every price on the subscription: its plan's and its further items'."""
    return {sub["plan_id"], *(extra["plan_id"] for extra in sub.get("items") or [])}


def _all_of(conditions: list[Callable[[dict], bool]]) -> Match:
    """One filter from several (None when there is none: the pager's fast path)."""
    if not conditions:
        return None
    if len(conditions) == 1:
        return conditions[0]
    return lambda row: all(condition(row) for condition in conditions)
