"""Chargebee API v2 emulator, as a Product Catalog 2.0 or 1.0 site: reads and subscription
write-backs.

Enough of Chargebee for the official `chargebee` SDK (3.x) to work unmodified: lists with
opaque `next_offset` cursors, `sort_by`, the timestamp/string/enum filters the SDK encodes
as `attr[op]=value`, retrieves, the subscription lifecycle writes a retention flow makes,
and Chargebee's error JSON (which the SDK needs `api_error_code` in to raise its errors).

Deviations, chosen so that the sandbox never pretends to do what it does not:
- a filter or operator the sandbox does not implement is refused with 400 instead of being
  ignored; `on` for timestamps matches the exact second;
- a subscription holds one plan (the neutral record's); writes return no invoices or
  credit notes.

Deleted customers and subscriptions (`deleted: true`) are listed only with
`include_deleted=true`, and their retrieve answers 404 as for an unknown id. Archived item
prices, plans and add-ons are listed (their `status` archived); deleted coupons keep their
place in the coupon list with `status` deleted, as subscriptions still name them.

A site runs one Product Catalog, and the other catalog's endpoints answer 400
`configuration_incompatible` as Chargebee's do: on 1.0 `/items`, `/item_prices`,
`cancel_for_items` and `update_for_items`; on 2.0 `/plans`, `/addons`, `cancel` and the
1.0 update `POST /subscriptions/{id}`. `GET /configurations` names the catalog.
"""

from __future__ import annotations

import ast
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from sandbox.billing import (
    current_period,
    is_ended,
    is_future,
    is_paused,
    is_scheduled_to_cancel,
)
from sandbox.chargebee_render import (
    EPOCH,
    INVOICE_STATUS,
    ChargebeeRenderer,
    epoch,
    from_epoch,
    subscription_status,
)
from sandbox.network import Verdict
from sandbox.server import ApiError, Emulator, Request, Response
from sandbox.store import SystemStore

API = "/api/v2"
_ID = r"(?P<ident>[^/]+)"
_MIN = datetime.min.replace(tzinfo=UTC)  # the store's sort key for a missing time
_LIST_PARAMS = {"limit", "offset", "sort_by", "include_deleted"}
# Lists that hide deleted records unless asked with include_deleted=true.
_SOFT_DELETED = ("customers", "subscriptions")
_STRING_OPS = ("is", "is_not", "starts_with", "in", "not_in")
_ENUM_OPS = ("is", "is_not", "in", "not_in")
_TIMESTAMP_OPS = ("after", "before", "on", "on_or_after", "between")
# Endpoints only one Product Catalog serves: list/retrieve paths and subscription actions
# ("" = the 1.0 update, POST /subscriptions/{id}).
CATALOG_LISTS = {"2.0": ("items", "item_prices"), "1.0": ("plans", "addons")}
CATALOG_ACTIONS = {"2.0": ("cancel_for_items", "update_for_items"), "1.0": ("cancel", "")}
CATALOG_VERSION = {"1.0": "v1", "2.0": "v2"}  # as `product_catalog_version` names them
RESPONSE_SCHEMA = {"1.0": "plans_addons", "2.0": "items"}
_RATE_LIMIT_MESSAGE = (
    "Sorry, access has been blocked temporarily due to request count exceeding acceptable "
    "limits. Please try after some time."
)
# Codes the base server raises on its own, in Chargebee's vocabulary (api_error_code, type).
_BASE_CODES = {
    "not_found": ("resource_not_found", None),
    "rate_limit": ("api_request_limit_exceeded", None),
    "method_not_allowed": ("http_method_not_supported", "invalid_request"),
    "idempotency_error": ("invalid_request", "invalid_request"),
}


# --------------------------------------------------------------------------- errors


def _is_plan(record: dict) -> bool:
    """A scenario plan of kind plan (not an add-on or a charge)."""
    return record["kind"] == "plan"


def _param_error(param: str, message: str) -> ApiError:
    return ApiError(
        400, "param_wrong_value", f"{param} : {message}", type="invalid_request", param=param
    )


def _invalid_state(message: str) -> ApiError:
    return ApiError(400, "invalid_state_for_request", message, type="invalid_request")


def _incompatible(message: str) -> ApiError:
    """A request the site's configuration does not allow (a feature turned off, the other
    Product Catalog's endpoint): Chargebee's `configuration_incompatible`."""
    return ApiError(400, "configuration_incompatible", message, type="invalid_request")


PAUSE_DISABLED = (
    "Subscription pause feature is currently disabled for you. "
    "Enable it under Configure Chargebee -> Pause subscription."
)


def _missing_reference(param: str, what: str, ident: str) -> ApiError:
    """A write naming an unknown coupon or item price: Chargebee answers 404 on the param."""
    return ApiError(
        404,
        "resource_not_found",
        f"{param} : The {what} {ident} cannot be found",
        type="invalid_request",
        param=param,
        error_code="referenced_resource_not_found",
    )


# --------------------------------------------------------------------------- parameters


def _scalar(params: dict, name: str) -> str | None:
    value = params.get(name)
    if value is None or isinstance(value, str):
        return value
    raise _param_error(name, "must be a single value")


def _bool(params: dict, name: str, default: bool = False) -> bool:
    value = _scalar(params, name)
    if value is None or value == "":
        return default
    if value not in ("true", "false"):
        raise _param_error(name, "must be true or false")
    return value == "true"


def _int(value: Any, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _param_error(param, f"{value!r} is not an integer") from None


def _time(params: dict, name: str, required: bool = False) -> datetime | None:
    value = _scalar(params, name)
    if value is None or value == "":
        if required:
            raise _param_error(name, "cannot be blank")
        return None
    return from_epoch(_int(value, name))


def _choice(params: dict, name: str, choices: tuple[str, ...], default: str) -> str:
    value = _scalar(params, name) or default
    if value not in choices:
        raise _param_error(name, f"must be one of {', '.join(choices)}")
    return value


def _values(raw: Any, param: str) -> list[str]:
    """A list filter value as the SDK sends it: JSON (`["a","b"]`), Python's str() of a
    list (`['a', 'b']`, what SDK 3.x sends for nested `in`/`between`), or `a,b`."""
    if isinstance(raw, list):
        return [str(v) for v in raw]
    text = str(raw).strip()
    if not text.startswith("["):
        return [part.strip() for part in text.split(",") if part.strip()]
    try:
        parsed = json.loads(text)
    except ValueError:
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise _param_error(param, "is not a list") from None
    if not isinstance(parsed, list):
        raise _param_error(param, "is not a list")
    return [str(v) for v in parsed]


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class Filter:
    """A filterable attribute: its type, its API value on a record at `now`, and for
    timestamps the store field behind it (so a filter on the sort field can seek)."""

    kind: str  # string | enum | timestamp
    value: Callable[[dict, datetime], Any]
    field: str | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Listing:
    """One list endpoint: the store kind it pages over, the list entry it renders, the
    sortable attributes (API name -> store field) and the filters."""

    kind: str
    id_field: str
    entry: Callable[[dict, datetime], dict]
    sorts: dict[str, str]
    filters: dict[str, Filter]
    by_customer: bool = False  # customer_id[is] can use the store's per-customer index
    # Which records of the store kind the endpoint lists (1.0 plans vs add-ons share one).
    keep: Callable[[dict], bool] = lambda record: True


@dataclass
class ListQuery:
    """A list request decoded: page size, order, cursor, and the filters as predicates.
    `low`/`high` bound the sort field (inclusive/exclusive) when a filter allows seeking."""

    limit: int = 10
    sort_field: str = "created_at"
    descending: bool = True
    cursor: tuple | None = None
    tests: list[tuple[Callable[[dict, datetime], Any], Callable[[Any], bool]]] = field(
        default_factory=list
    )
    low: datetime | None = None
    high: datetime | None = None
    ids: list[str] | None = None
    customer_id: str | None = None
    include_deleted: bool = False


def _encode_offset(key: tuple) -> str:
    """Chargebee's offsets are opaque JSON arrays; this one holds (sort value, id)."""
    value, ident = key
    return json.dumps([str((value - EPOCH) // timedelta(microseconds=1)), ident])


def _decode_offset(raw: str) -> tuple:
    try:
        micros, ident = json.loads(raw)
        return EPOCH + timedelta(microseconds=int(micros)), str(ident)
    except (ValueError, TypeError, OverflowError):
        raise _param_error("offset", "is not a valid offset") from None


def _sort_key(record: dict, sort_field: str, id_field: str) -> tuple:
    value = record.get(sort_field)
    return (_MIN if value is None else value, record[id_field])


def _string_test(op: str, raw: Any, param: str, choices: tuple[str, ...]) -> Callable:
    wanted = _values(raw, param) if op in ("in", "not_in") else [str(raw)]
    unknown = [w for w in wanted if choices and w not in choices]
    if unknown:
        raise _param_error(param, f"{unknown[0]!r} is not one of {', '.join(choices)}")
    if op == "is":
        return lambda v: v == wanted[0]
    if op == "is_not":
        return lambda v: v != wanted[0]
    if op == "starts_with":
        return lambda v: v is not None and v.startswith(wanted[0])
    members = set(wanted)
    if op == "in":
        return lambda v: v in members
    return lambda v: v not in members


def _timestamp_range(op: str, raw: Any, param: str) -> tuple[int | None, int | None]:
    """[low, high) in epoch seconds that a timestamp operator keeps."""
    if op == "between":
        bounds = [_int(v, param) for v in _values(raw, param)]
        if len(bounds) != 2:
            raise _param_error(param, "needs exactly two timestamps")
        return bounds[0], bounds[1] + 1
    value = _int(raw, param)
    return {
        "after": (value + 1, None),
        "on_or_after": (value, None),
        "before": (None, value),
        "on": (value, value + 1),
    }[op]


def _range_test(low: int | None, high: int | None) -> Callable[[Any], bool]:
    """A record without the attribute (None) never matches a time filter."""
    return lambda v: v is not None and (low is None or v >= low) and (high is None or v < high)


# --------------------------------------------------------------------------- emulator


class ChargebeeEmulator(Emulator):
    """Chargebee v2 at `/api/v2`, Basic auth with the API key as user.

    `legacy_updated_at_days`: real Chargebee sites hold old records that predate
    `updated_at`; the sandbox shows a record without `updated_at` and `resource_version`
    when its last change is more than this many days before the scenario's `as_of` and it
    was never written through the API. `updated_at[...]` filters skip such records (they
    have no value), listings without one return them, and any write stamps them again.
    """

    name = "chargebee"
    idempotency_header = "chargebee-idempotency-key"
    replay_header = "chargebee-idempotency-replayed"  # read by the SDK's is_idempotency_replayed
    legacy_updated_at_days = 730

    def __init__(
        self,
        store: SystemStore,
        *args: Any,
        pause_feature: bool = True,
        product_catalog: str = "2.0",
        **kwargs: Any,
    ):
        """`pause_feature`: the site's "Pause subscription" setting (Chargebee sites have it
        off until the merchant turns it on; the sandbox defaults to on).
        `product_catalog`: "2.0" or "1.0", the site's Product Catalog."""
        if product_catalog not in CATALOG_VERSION:
            raise ValueError(f"product_catalog must be one of {', '.join(CATALOG_VERSION)}")
        cutoff = store.as_of - timedelta(days=self.legacy_updated_at_days)
        self.render = ChargebeeRenderer(store, cutoff, product_catalog)
        self.pause_feature = pause_feature
        self.product_catalog = product_catalog
        super().__init__(store, *args, **kwargs)

    # -- errors ---------------------------------------------------------------------
    def render_error(self, error: ApiError) -> Response:
        api_code, error_type = _BASE_CODES.get(error.code, (error.code, None))
        if error.code == "api_error":
            api_code = "internal_temporary_error" if error.status == 503 else "internal_error"
        body = {
            "message": error.message,
            "type": error.extra.get("type", error_type),
            "api_error_code": api_code,
            "param": error.extra.get("param"),
            "error_code": error.extra.get("error_code", api_code),
            "error_msg": error.message,
            "http_status_code": error.status,
        }
        return Response(error.status, {k: v for k, v in body.items() if v is not None})

    def unauthorized(self) -> ApiError:
        return ApiError(
            401, "api_authentication_failed", "Sorry, authentication failed. Invalid api key"
        )

    def rate_limited(self, retry_after: int, verdict: Verdict | None = None) -> Response:
        """Chargebee's 429 `api_request_limit_exceeded` with its message; `Retry-After`
        (seconds until the site's 60-second window frees a request), which the SDK's
        retries honour."""
        response = self.render_error(ApiError(429, "rate_limit", _RATE_LIMIT_MESSAGE))
        response.headers.update(self.rate_limit_headers(retry_after, verdict))
        return response

    def not_found(self, what: str, ident: str) -> ApiError:
        """A retrieve of an unknown id: Chargebee's 404 carries no `type`."""
        return ApiError(404, "resource_not_found", f"Sorry, we couldn't find that {what} ({ident})")

    def server_error(self, status: int) -> Response:
        return self.render_error(
            ApiError(
                status,
                "api_error",
                "Sorry, something went wrong when trying to process the request.",
            )
        )

    # -- routes ---------------------------------------------------------------------
    def register_routes(self) -> None:
        other = "1.0" if self.product_catalog == "2.0" else "2.0"
        self._refuse_other_catalog(other)
        self.listings = {
            path: listing
            for path, listing in self._listings().items()
            if path not in CATALOG_LISTS[other]
        }
        for path, listing in self.listings.items():
            self.route(
                "GET",
                f"{API}/{path}",
                lambda request, listing=listing: self._list(listing, request),
            )
        self.route("GET", f"{API}/configurations", self._configurations)
        retrieves = {
            "customers": self._retrieve_customer,
            "subscriptions": self._retrieve_subscription,
            "items": self._retrieve_item,
            "item_prices": self._retrieve_item_price,
            "plans": self._retrieve_plan,
            "addons": self._retrieve_addon,
            "coupons": self._retrieve_coupon,
            "invoices": self._retrieve_invoice,
        }
        for path, handler in retrieves.items():
            if path not in CATALOG_LISTS[other]:
                self.route("GET", f"{API}/{path}/{_ID}", handler)
        self.route(
            "GET",
            f"{API}/subscriptions/{_ID}/retrieve_with_scheduled_changes",
            self._retrieve_with_scheduled_changes,
        )
        writes: dict[str, Callable[[dict, dict, datetime], None]] = {
            "cancel_for_items": self._cancel,
            "cancel": self._cancel,  # the Product Catalog 1.0 name, same parameters
            "remove_scheduled_cancellation": self._remove_scheduled_cancellation,
            "pause": self._pause,
            "resume": self._resume,
            "change_term_end": self._change_term_end,
            "update_for_items": self._update_for_items,
            "": self._update,
        }
        for action, apply in writes.items():
            if action not in CATALOG_ACTIONS[other]:
                self.route(
                    "POST",
                    f"{API}/subscriptions/{_ID}" + (f"/{action}" if action else ""),
                    lambda request, ident, apply=apply: self._write(request, ident, apply),
                )

    def _refuse_other_catalog(self, other: str) -> None:
        """The other catalog's endpoints exist on Chargebee but refuse this site."""

        def refuse(request: Request, ident: str | None = None) -> dict:
            raise _incompatible(
                f"This API operation is not applicable for Product Catalog {self.product_catalog}"
            )

        for path in CATALOG_LISTS[other]:
            self.route("GET", f"{API}/{path}", refuse)
            self.route("GET", f"{API}/{path}/{_ID}", refuse)
        for action in CATALOG_ACTIONS[other]:
            self.route(
                "POST", f"{API}/subscriptions/{_ID}" + (f"/{action}" if action else ""), refuse
            )

    def _configurations(self, request: Request) -> dict:
        """The site's configuration, as `GET /configurations` lists it (one entry)."""
        entry = {
            "domain": "local",
            "product_catalog_version": CATALOG_VERSION[self.product_catalog],
            "chargebee_response_schema_type": RESPONSE_SCHEMA[self.product_catalog],
            "object": "configuration",
        }
        return {"configurations": [entry]}

    def _listings(self) -> dict[str, Listing]:
        render, timestamps = self.render, {"created_at": "created_at", "updated_at": "updated_at"}

        def stamp(store_field: str) -> Filter:
            return Filter("timestamp", lambda r, now: epoch(r[store_field]), store_field)

        updated = Filter("timestamp", lambda r, now: epoch(render.updated_at(r)), "updated_at")
        active = Filter("enum", lambda r, now: "active", choices=("active", "archived", "deleted"))
        priced = Filter(
            "enum",
            lambda r, now: "active" if r["archived_at"] is None else "archived",
            choices=("active", "archived", "deleted"),
        )
        coupon_status = Filter(
            "enum",
            lambda r, now: "active" if r["deleted_at"] is None else "deleted",
            choices=("active", "expired", "archived", "deleted", "future"),
        )

        def key(name: str) -> Filter:
            return Filter("string", lambda r, now: r[name])

        return {
            "customers": Listing(
                "customers",
                "customer_id",
                lambda r, now: {"customer": render.customer(r)},
                timestamps,
                {
                    "id": key("customer_id"),
                    "email": key("email"),
                    "created_at": stamp("created_at"),
                    "updated_at": updated,
                },
            ),
            "subscriptions": Listing(
                "subscriptions",
                "subscription_id",
                self._subscription_entry,
                timestamps,
                {
                    "id": key("subscription_id"),
                    "customer_id": key("customer_id"),
                    "item_price_id": key("plan_id"),
                    "status": Filter(
                        "enum",
                        subscription_status,
                        choices=(
                            "future",
                            "in_trial",
                            "active",
                            "non_renewing",
                            "paused",
                            "cancelled",
                            "transferred",
                        ),
                    ),
                    "created_at": stamp("created_at"),
                    "updated_at": updated,
                },
                by_customer=True,
            ),
            "invoices": Listing(
                "invoices",
                "invoice_id",
                lambda r, now: {"invoice": render.invoice(r)},
                {"date": "created_at", "updated_at": "updated_at"},
                {
                    "id": key("invoice_id"),
                    "customer_id": key("customer_id"),
                    "subscription_id": key("subscription_id"),
                    "status": Filter(
                        "enum",
                        lambda r, now: INVOICE_STATUS[r["status"]],
                        choices=("paid", "posted", "payment_due", "not_paid", "voided", "pending"),
                    ),
                    "date": stamp("created_at"),
                    "paid_at": stamp("paid_at"),
                    "updated_at": updated,
                },
                by_customer=True,
            ),
            "coupons": Listing(
                "coupons",
                "coupon_id",
                lambda r, now: {"coupon": render.coupon(r)},
                {"created_at": "created_at"},  # Chargebee sorts coupons by created_at only
                {
                    "id": key("coupon_id"),
                    "status": coupon_status,
                    "created_at": stamp("created_at"),
                    "updated_at": updated,
                },
            ),
            "items": Listing(
                "items",
                "item_id",
                lambda r, now: {"item": render.item(r)},
                timestamps,
                {"id": key("item_id"), "status": active, "updated_at": updated},
            ),
            "item_prices": Listing(
                "plans",
                "plan_id",
                lambda r, now: {"item_price": render.item_price(r)},
                timestamps,
                {
                    "id": key("plan_id"),
                    "item_id": key("product_id"),
                    "currency_code": key("currency"),
                    "status": priced,
                    "updated_at": updated,
                },
            ),
            "plans": Listing(
                "plans",
                "plan_id",
                lambda r, now: {"plan": render.plan(r)},
                timestamps,
                {"id": key("plan_id"), "status": priced, "updated_at": updated},
                keep=_is_plan,
            ),
            "addons": Listing(
                "plans",
                "plan_id",
                lambda r, now: {"addon": render.addon(r)},
                timestamps,
                {"id": key("plan_id"), "status": priced, "updated_at": updated},
                keep=lambda r: not _is_plan(r),
            ),
        }

    def _subscription_entry(self, sub: dict, now: datetime, scheduled: bool = False) -> dict:
        """Every subscription entry carries its customer: the SDK's list model requires it."""
        customer = self.store.get("customers", sub["customer_id"])
        return {
            "subscription": self.render.subscription(sub, now, scheduled),
            "customer": self.render.customer(customer),
        }

    # -- lists ----------------------------------------------------------------------
    def _list(self, listing: Listing, request: Request) -> dict:
        """One page in O(limit) after a seek: walk the ordered view from the cursor (or
        the filter's bound on the sort field), stop past the bound, and look one match
        further to know whether to give a `next_offset`."""
        now = self.now()
        query = self._query(listing, request.nested())
        page: list[dict] = []
        more = False
        for row in self._rows(listing, query):
            value = row.get(query.sort_field)
            if query.descending and query.low is not None and (value or _MIN) < query.low:
                break
            if not query.descending and query.high is not None and (value or _MIN) >= query.high:
                break
            if self._shown(listing, query, row) and all(
                test(get(row, now)) for get, test in query.tests
            ):
                if len(page) == query.limit:
                    more = True
                    break
                page.append(row)
        body: dict[str, Any] = {"list": [listing.entry(row, now) for row in page]}
        if more:
            body["next_offset"] = _encode_offset(
                _sort_key(page[-1], query.sort_field, listing.id_field)
            )
        return body

    @staticmethod
    def _shown(listing: Listing, query: ListQuery, row: dict) -> bool:
        """Whether a list shows the record: its kind's, and not deleted unless asked."""
        deleted = listing.kind in _SOFT_DELETED and row["deleted_at"] is not None
        return listing.keep(row) and (query.include_deleted or not deleted)

    def _rows(self, listing: Listing, query: ListQuery) -> Iterator[dict]:
        """Records in list order from just after the cursor. An id or customer filter
        narrows to a handful of records, sorted here; otherwise the store's cached view
        is entered by bisection."""
        candidates = self._candidates(listing, query)
        if candidates is None:
            rows, start = self.store.page_after(
                listing.kind, query.sort_field, query.descending, query.cursor
            )
            bound = query.high if query.descending else query.low
            if bound is not None:
                seek = self.store.page_after(
                    listing.kind, query.sort_field, query.descending, (bound, "")
                )
                start = max(start, seek[1])
            return itertools.islice(rows, start, None)
        keyed = sorted(
            ((_sort_key(r, query.sort_field, listing.id_field), r) for r in candidates),
            key=lambda pair: pair[0],
            reverse=query.descending,
        )
        cursor = query.cursor
        return (
            row
            for k, row in keyed
            if cursor is None or (k < cursor if query.descending else k > cursor)
        )

    def _candidates(self, listing: Listing, query: ListQuery) -> Iterable[dict] | None:
        if listing.kind == "items":
            return self.render.items().values()
        if query.ids is not None:
            found = (self.store.get(listing.kind, i) for i in dict.fromkeys(query.ids))
            return [r for r in found if r is not None]
        if query.customer_id is not None and listing.by_customer:
            return list(self.store.by_customer[listing.kind].get(query.customer_id, ()))
        return None

    def _query(self, listing: Listing, params: dict) -> ListQuery:
        query = ListQuery()
        limit = _scalar(params, "limit")
        if limit is not None:
            query.limit = _int(limit, "limit")
            if not 1 <= query.limit <= 100:
                raise _param_error("limit", "should be between 1 and 100")
        query.include_deleted = _bool(params, "include_deleted")
        self._sort(listing, params.get("sort_by"), query)
        offset = _scalar(params, "offset")
        if offset:
            query.cursor = _decode_offset(offset)
        for attribute, ops in params.items():
            if attribute in _LIST_PARAMS:
                continue
            spec = listing.filters.get(attribute)
            if spec is None or not isinstance(ops, dict):
                raise _param_error(attribute, "is not a filter the sandbox supports here")
            for op, raw in ops.items():
                self._add_filter(query, attribute, spec, op, raw)
        return query

    @staticmethod
    def _sort(listing: Listing, sort_by: Any, query: ListQuery) -> None:
        if sort_by is None:
            query.sort_field = listing.sorts.get("created_at", "created_at")
            return  # Chargebee's default: newest first
        if not isinstance(sort_by, dict) or len(sort_by) != 1:
            raise _param_error("sort_by", "give one of sort_by[asc] or sort_by[desc]")
        ((direction, attribute),) = sort_by.items()
        if direction not in ("asc", "desc") or attribute not in listing.sorts:
            raise _param_error("sort_by", f"supported: {', '.join(listing.sorts)} with asc or desc")
        query.sort_field, query.descending = listing.sorts[attribute], direction == "desc"

    @staticmethod
    def _add_filter(query: ListQuery, attribute: str, spec: Filter, op: str, raw: Any) -> None:
        param = f"{attribute}[{op}]"
        if spec.kind == "timestamp":
            if op not in _TIMESTAMP_OPS:
                raise _param_error(param, f"supported operators: {', '.join(_TIMESTAMP_OPS)}")
            low, high = _timestamp_range(op, raw, param)
            query.tests.append((spec.value, _range_test(low, high)))
            if spec.field == query.sort_field:  # a bound on the sort field lets the page seek
                if low is not None:
                    query.low = max(query.low or _MIN, from_epoch(low))
                if high is not None:
                    bound = from_epoch(high)
                    query.high = bound if query.high is None else min(query.high, bound)
            return
        ops = _STRING_OPS if spec.kind == "string" else _ENUM_OPS
        if op not in ops:
            raise _param_error(param, f"supported operators: {', '.join(ops)}")
        query.tests.append((spec.value, _string_test(op, raw, param, spec.choices)))
        if attribute == "id" and op in ("is", "in"):
            query.ids = [str(raw)] if op == "is" else _values(raw, param)
        elif attribute == "customer_id" and op == "is":
            query.customer_id = str(raw)

    # -- retrieves ------------------------------------------------------------------
    def _get(self, kind: str, ident: str, what: str) -> dict:
        """A record by id; a deleted customer or subscription is not found any more."""
        record = self.store.get(kind, unquote(ident))
        if record is None or (kind in _SOFT_DELETED and record["deleted_at"] is not None):
            raise self.not_found(what, unquote(ident))
        return record

    def _retrieve_customer(self, request: Request, ident: str) -> dict:
        return {"customer": self.render.customer(self._get("customers", ident, "customer"))}

    def _retrieve_subscription(self, request: Request, ident: str) -> dict:
        sub = self._get("subscriptions", ident, "subscription")
        return self._subscription_entry(sub, self.now())

    def _retrieve_with_scheduled_changes(self, request: Request, ident: str) -> dict:
        """The subscription as it will be once its scheduled change applies (the plan and
        quantity of `pending_plan_id`); refused when nothing is scheduled."""
        sub, now = self._get("subscriptions", ident, "subscription"), self.now()
        if sub["pending_plan_id"] is None or is_ended(sub, now):
            raise _invalid_state("No changes are scheduled for this subscription.")
        return self._subscription_entry(sub, now, scheduled=True)

    def _retrieve_item(self, request: Request, ident: str) -> dict:
        item = self.render.items().get(unquote(ident))
        if item is None:
            raise self.not_found("item", unquote(ident))
        return {"item": self.render.item(item)}

    def _retrieve_item_price(self, request: Request, ident: str) -> dict:
        return {"item_price": self.render.item_price(self._get("plans", ident, "item price"))}

    def _retrieve_plan(self, request: Request, ident: str) -> dict:
        return {"plan": self.render.plan(self._get_priced(ident, "plan", True))}

    def _retrieve_addon(self, request: Request, ident: str) -> dict:
        return {"addon": self.render.addon(self._get_priced(ident, "addon", False))}

    def _get_priced(self, ident: str, what: str, plan: bool) -> dict:
        """A 1.0 plan or add-on: both are scenario plans, told apart by their kind."""
        record = self.store.get("plans", unquote(ident))
        if record is None or _is_plan(record) != plan:
            raise self.not_found(what, unquote(ident))
        return record

    def _retrieve_coupon(self, request: Request, ident: str) -> dict:
        return {"coupon": self.render.coupon(self._get("coupons", ident, "coupon"))}

    def _retrieve_invoice(self, request: Request, ident: str) -> dict:
        return {"invoice": self.render.invoice(self._get("invoices", ident, "invoice"))}

    # -- writes ---------------------------------------------------------------------
    def _write(
        self, request: Request, ident: str, apply: Callable[[dict, dict, datetime], None]
    ) -> dict:
        """Validate and apply one subscription write on the neutral record, stamp it, and
        answer {subscription, customer} as every Chargebee subscription action does."""
        sub = self._get("subscriptions", ident, "subscription")
        now = self.now()
        apply(sub, request.nested(), now)
        self.store.touch("subscriptions", sub)
        return self._subscription_entry(sub, now)

    def _period_end(self, sub: dict, now: datetime) -> datetime:
        return current_period(sub, self.store.get("plans", sub["plan_id"]), now)[1]

    def _cancel(self, sub: dict, params: dict, now: datetime) -> None:
        if is_ended(sub, now):
            raise _invalid_state("The subscription is already cancelled.")
        default = "end_of_term" if _bool(params, "end_of_term") else "immediately"
        option = _choice(
            params, "cancel_option", ("immediately", "end_of_term", "specific_date"), default
        )
        if option == "immediately":
            ends = now
        elif option == "end_of_term":
            if is_future(sub, now):
                raise _invalid_state("A future subscription can only be cancelled immediately.")
            ends = self._period_end(sub, now)
        else:
            ends = _time(params, "cancel_at", required=True)
            if ends <= now:
                raise _param_error("cancel_at", "should be in the future")
        sub["canceled_at"], sub["ended_at"] = now, ends

    def _remove_scheduled_cancellation(self, sub: dict, params: dict, now: datetime) -> None:
        if not is_scheduled_to_cancel(sub, now):
            raise _invalid_state("The subscription has no scheduled cancellation.")
        sub["canceled_at"] = sub["ended_at"] = None

    def _pause(self, sub: dict, params: dict, now: datetime) -> None:
        """Chargebee pauses only active and non-renewing subscriptions, and only on a site
        with the Pause feature on."""
        if not self.pause_feature:
            raise _incompatible(PAUSE_DISABLED)
        status = subscription_status(sub, now)
        if status in ("cancelled", "future", "in_trial"):
            raise _invalid_state(f"A {status} subscription cannot be paused.")
        if is_paused(sub, now):
            raise _invalid_state("The subscription is already paused.")
        option = _choice(
            params, "pause_option", ("immediately", "end_of_term", "specific_date"), "immediately"
        )
        if option == "immediately":
            starts = now
        elif option == "end_of_term":
            starts = self._period_end(sub, now)
        else:
            starts = _time(params, "pause_date", required=True)
            if starts < now:
                raise _param_error("pause_date", "cannot be in the past")
        resumes = _time(params, "resume_date")
        if resumes is not None and resumes <= starts:
            raise _param_error("resume_date", "should be after the pause date")
        sub["paused_at"], sub["resumes_at"] = starts, resumes

    def _resume(self, sub: dict, params: dict, now: datetime) -> None:
        scheduled = sub["paused_at"] is not None and sub["paused_at"] > now
        if is_ended(sub, now) or not (is_paused(sub, now) or scheduled):
            raise _invalid_state("The subscription is not paused.")
        option = _choice(params, "resume_option", ("immediately", "specific_date"), "immediately")
        if option == "specific_date":
            resumes = _time(params, "resume_date", required=True)
            if resumes <= now:
                raise _param_error("resume_date", "should be in the future")
            sub["resumes_at"] = resumes
        elif scheduled:  # the pause had not started: drop it
            sub["paused_at"] = sub["resumes_at"] = None
        else:
            sub["resumes_at"] = now

    def _change_term_end(self, sub: dict, params: dict, now: datetime) -> None:
        """Allowed on in_trial, active and non_renewing subscriptions only."""
        status = subscription_status(sub, now)
        if status in ("cancelled", "future", "paused"):
            raise _invalid_state(f"The term end of a {status} subscription cannot change.")
        term_end = _time(params, "term_ends_at", required=True)
        if term_end <= now:
            raise _param_error("term_ends_at", "should be in the future")
        start = current_period(sub, self.store.get("plans", sub["plan_id"]), now)[0]
        sub["term_start"], sub["term_end"] = start, term_end
        if is_scheduled_to_cancel(sub, now):  # a non-renewing subscription ends at its term end
            sub["ended_at"] = term_end

    def _update_for_items(self, sub: dict, params: dict, now: datetime) -> None:
        """Coupon (`coupon_ids[0]`) and plan (`subscription_items[item_price_id][0]`)
        changes on Product Catalog 2.0."""
        coupon_ids = self._coupon_ids(sub, params, now)
        plan, quantity = self._new_plan(sub, params.get("subscription_items"))
        _bool(params, "replace_items_list")  # one plan item either way
        self._apply_update(sub, coupon_ids, plan, quantity)

    def _update(self, sub: dict, params: dict, now: datetime) -> None:
        """The Product Catalog 1.0 update, `POST /subscriptions/{id}`: `plan_id`,
        `plan_quantity` and `coupon_ids[0]`."""
        coupon_ids = self._coupon_ids(sub, params, now)
        plan_id, raw_quantity = _scalar(params, "plan_id"), _scalar(params, "plan_quantity")
        items = {"item_price_id": [plan_id]} if plan_id else None
        if items is not None and raw_quantity is not None:
            items["quantity"] = [raw_quantity]
        plan, quantity = self._new_plan(sub, items, "plan_id", "plan_quantity")
        if plan is None and raw_quantity is not None:
            quantity = self._quantity(raw_quantity, "plan_quantity")
        self._apply_update(sub, coupon_ids, plan, quantity)

    def _coupon_ids(self, sub: dict, params: dict, now: datetime) -> list[str]:
        """The coupons a write adds, checked: each must exist and not be deleted."""
        if is_ended(sub, now):
            raise _invalid_state("A cancelled subscription cannot be updated.")
        coupon_ids = params.get("coupon_ids") or []
        if not isinstance(coupon_ids, list):
            raise _param_error("coupon_ids", "should be a list")
        for index, coupon_id in enumerate(coupon_ids):
            coupon = self.store.get("coupons", coupon_id)
            if coupon is None:
                raise _missing_reference(f"coupon_ids[{index}]", "coupon", coupon_id)
            if coupon["deleted_at"] is not None:
                raise _param_error(f"coupon_ids[{index}]", f"The coupon {coupon_id} is deleted")
        return coupon_ids

    @staticmethod
    def _apply_update(
        sub: dict, coupon_ids: list[str], plan: dict | None, quantity: int | None
    ) -> None:
        """Everything was checked before: change the record. New coupons are added after
        those already applied (the first applied stays the first)."""
        applied = [sub["coupon_id"], *(sub["extra_coupon_ids"] or ())] if sub["coupon_id"] else []
        added = [c for c in dict.fromkeys(coupon_ids) if c not in applied]
        if added:
            sub["coupon_id"], *extra = applied + added
            sub["extra_coupon_ids"] = extra or None
        if plan is not None:
            sub["plan_id"] = plan["plan_id"]
        if quantity is not None:
            sub["quantity"] = quantity

    @staticmethod
    def _quantity(raw: Any, param: str) -> int:
        quantity = _int(raw, param)
        if quantity < 1:
            raise _param_error(param, "should be at least 1")
        return quantity

    def _new_plan(
        self,
        sub: dict,
        items: Any,
        plan_param: str = "subscription_items[item_price_id][0]",
        quantity_param: str = "subscription_items[quantity][0]",
    ) -> tuple[dict | None, int | None]:
        """The plan and quantity a write asks for, if any (2.0 `subscription_items`, or the
        1.0 `plan_id`/`plan_quantity` put in the same shape by `_update`)."""
        if items is None:
            return None, None
        ids = items.get("item_price_id") if isinstance(items, dict) else None
        if not isinstance(ids, list) or not ids:
            raise _param_error(plan_param, "cannot be blank")
        if len(ids) > 1:
            raise _param_error(
                "subscription_items[item_price_id][1]", "only one plan item price is allowed"
            )
        plan = self.store.get("plans", ids[0])
        if plan is None or (plan_param == "plan_id" and not _is_plan(plan)):
            raise _missing_reference(
                plan_param, "plan" if plan_param == "plan_id" else "item price", ids[0]
            )
        if not _is_plan(plan):
            raise _param_error(plan_param, "the sandbox changes the plan item only")
        current = self.store.get("plans", sub["plan_id"])
        if plan["currency"] != current["currency"]:
            raise _param_error(
                plan_param,
                f"its currency {plan['currency']} differs from the subscription's "
                f"{current['currency']}",
            )
        quantities = items.get("quantity") or []
        quantity = self._quantity(quantities[0], quantity_param) if quantities else None
        return plan, quantity
