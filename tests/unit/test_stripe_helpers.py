"""The Stripe source's helpers, in milliseconds and without a network: paging by
`starting_after`, the event cursor, the fall back to a full listing when the cursor has
aged out of Stripe's 30-day event window, refetching what events changed, retries.
Answers are JSON bodies and headers, errors the SDK's own classes; only the SDK
requestor's `request_raw`, the one network call the source makes, is a stand-in (its
`_interpret_response` is the SDK's)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe

from billing_clients.pacing import TokenBucket, shared_bucket
from billing_clients.retries import RetryPolicy
from dlt_sources.stripe.helpers import (
    CLOCK_MARGIN,
    ENDPOINTS,
    EVENT_RETENTION,
    LISTING_FLOOR,
    NEWEST_EVENTS,
    WINDOW_MARGIN,
    Cursor,
    Endpoint,
    StripeApi,
    changed_objects,
    event_row,
    full_listing_reason,
    refetched,
    sync,
)

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
NOW_HEADER = "Sat, 05 Dec 2026 12:00:00 GMT"
T = int(NOW.timestamp())


def listing(objects: list[dict], has_more: bool = False) -> dict:
    return {"object": "list", "data": objects, "has_more": has_more, "url": "/v1/x"}


def event(ident: str, created: int, obj: dict, kind: str | None = None) -> dict:
    kind = kind or f"{obj['object']}.updated"
    return {
        "id": ident,
        "object": "event",
        "type": kind,
        "created": created,
        "data": {"object": obj},
    }


Route = Callable[[dict], dict | BaseException]


class FakeStripe:
    """A `StripeClient` as the source uses it: its requestor (`_requestor`, itself here),
    whose `request_raw` answers GETs from `routes` (path → a function of the parameters
    giving a body, or an SDK error to raise; `(status, body)` for a status other than 200)
    and records every request. `_interpret_response` is the SDK's own."""

    def __init__(self, routes: dict[str, Route], date: str | None = NOW_HEADER):
        self.routes, self.date = routes, date
        self.requests: list[tuple[str, dict]] = []
        self._requestor = self
        self._interpret_response = stripe.StripeClient("sk_test_x")._requestor._interpret_response

    def request_raw(
        self, method: str, path: str, params: dict, options: dict, **how: Any
    ) -> tuple[bytes, int, dict[str, str]]:
        assert method == "get" and how["api_mode"] == "V1"
        self.requests.append((path, params))
        body = self.routes[path](params)
        if isinstance(body, BaseException):
            raise body
        status, body = body if isinstance(body, tuple) else (200, body)
        headers = {"Date": self.date} if self.date else {}
        return json.dumps(body).encode(), status, headers

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


def paged(objects: list[dict]) -> Route:
    """A list endpoint over `objects` (in Stripe's order, newest first), honouring
    `limit`, `starting_after` and a `created` window."""

    def route(params: dict) -> dict:
        if window := params.get("created"):
            objects = [o for o in everything if window["gte"] <= o["created"] < window["lt"]]
        else:
            objects = everything
        start = 0
        if after := params.get("starting_after"):
            start = [o["id"] for o in objects].index(after) + 1
        page = objects[start : start + params["limit"]]
        return listing(page, has_more=start + params["limit"] < len(objects))

    everything = objects
    return route


def api(client: FakeStripe, **options) -> StripeApi:
    options.setdefault("policy", RetryPolicy(sleep=lambda s: None))
    return StripeApi(client, lambda operation: TokenBucket(None), **options)


# --------------------------------------------------------------------------- paging


def test_pages_follow_starting_after_the_last_id_until_has_more_is_false():
    customers = [{"id": f"cus_{n}", "object": "customer"} for n in range(5)]
    client = FakeStripe({"/v1/customers": paged(customers)})
    pages = list(api(client, page_size=2).pages("/v1/customers", {"expand": ["data.x"]}))
    assert [[c["id"] for c in page] for page in pages] == [
        ["cus_0", "cus_1"],
        ["cus_2", "cus_3"],
        ["cus_4"],
    ]
    assert [params.get("starting_after") for _, params in client.requests] == [
        None,
        "cus_1",
        "cus_3",
    ]
    assert all(params["expand"] == ["data.x"] for _, params in client.requests)


def test_an_empty_page_ends_the_listing_even_if_it_claims_more():
    client = FakeStripe({"/v1/customers": lambda p: listing([], has_more=True)})
    assert list(api(client).pages("/v1/customers", {})) == []
    assert len(client.requests) == 1


@pytest.mark.parametrize("size", [0, 101])
def test_a_page_size_stripe_refuses_is_refused_here(size):
    with pytest.raises(ValueError, match=r"page_size must be 1\.\.100"):
        api(FakeStripe({}), page_size=size)


def test_an_expansion_deeper_than_stripe_allows_is_refused():
    with pytest.raises(ValueError, match="deeper than Stripe expands"):
        Endpoint("/v1/x", "x", {}, expand=("a.b.c.d",))


def test_get_returns_the_body_and_lower_cased_headers():
    client = FakeStripe({"/v1/events": lambda p: listing([])})
    body, headers = api(client).get("/v1/events", limit=1)
    assert body["data"] == [] and headers == {"date": NOW_HEADER}


def test_an_error_status_raises_the_sdks_error_class_for_it():
    missing = {"error": {"type": "invalid_request_error", "message": "No such customer: 'x'"}}
    client = FakeStripe({"/v1/customers/x": lambda p: (404, missing)})
    with pytest.raises(stripe.InvalidRequestError, match="No such customer") as raised:
        api(client).get("/v1/customers/x")
    assert raised.value.http_status == 404


def test_a_2xx_body_that_is_not_json_raises_the_sdks_api_error_naming_it():
    client = FakeStripe({})
    client.request_raw = lambda *a, **k: (b"<html>proxy</html>", 200, {})
    with pytest.raises(stripe.APIError, match="Invalid response body from API: <html>proxy"):
        api(client).get("/v1/customers")


# --------------------------------------------------------------------------- retries


def test_a_rate_limit_is_waited_out_as_the_api_asks_and_the_request_sent_again():
    waits: list[float] = []
    answers: list[dict | BaseException] = [
        stripe.RateLimitError("Too many requests", http_status=429, headers={"Retry-After": "2"}),
        listing([{"id": "cus_1"}]),
    ]
    client = FakeStripe({"/v1/customers": lambda p: answers.pop(0)})
    pages = list(api(client, policy=RetryPolicy(sleep=waits.append)).pages("/v1/customers", {}))
    assert [[c["id"] for c in page] for page in pages] == [["cus_1"]]
    assert waits == [2.0]
    assert client.requests[0] == client.requests[1]


def test_a_request_that_keeps_failing_gives_up_naming_the_path():
    client = FakeStripe({"/v1/customers": lambda p: stripe.APIError("boom", http_status=500)})
    with pytest.raises(RuntimeError, match=r"stripe GET /v1/customers: gave up after 2 attempts"):
        api(client, policy=RetryPolicy(max_attempts=2, sleep=lambda s: None)).get("/v1/customers")


# --------------------------------------------------------------------------- retrieve


def not_found(params: dict) -> BaseException:
    return stripe.InvalidRequestError("No such customer", "id", http_status=404)


@pytest.mark.parametrize(
    "route",
    [not_found, lambda p: {"id": "cus_1", "object": "customer", "deleted": True}],
    ids=["404", "deleted stub"],
)
def test_an_object_gone_since_its_event_is_skipped(route):
    client = FakeStripe({"/v1/customers/cus_1": route})
    assert api(client).retrieve("/v1/customers", "cus_1") is None


def test_other_errors_of_a_retrieve_are_raised():
    client = FakeStripe(
        {"/v1/customers/cus_1": lambda p: stripe.InvalidRequestError("bad", "x", http_status=400)}
    )
    with pytest.raises(stripe.InvalidRequestError):
        api(client).retrieve("/v1/customers", "cus_1")


def test_retrieve_pages_come_in_page_size_chunks_in_order_without_the_gone():
    routes: dict[str, Route] = {
        f"/v1/customers/cus_{n}": (lambda p, n=n: {"id": f"cus_{n}"}) for n in range(5)
    }
    routes["/v1/customers/cus_2"] = not_found
    client = FakeStripe(routes)
    ids = [f"cus_{n}" for n in range(5)]
    pages = list(api(client, page_size=2).retrieve_pages("/v1/customers", ids))
    assert [[c["id"] for c in page] for page in pages] == [["cus_0", "cus_1"], ["cus_3"], ["cus_4"]]


def test_cut_items_lists_are_completed_at_once_and_a_whole_one_costs_no_request():
    items = {sub: [{"id": f"si_{sub}_{n}"} for n in range(3)] for sub in ("sub_1", "sub_3")}
    started = threading.Barrier(2, timeout=5)  # both cut lists are read at the same time

    def listed(params: dict) -> dict:
        started.wait()
        return paged(items[params["subscription"]])(params)

    client = FakeStripe({"/v1/subscription_items": listed})

    def cut(sub: str) -> dict:
        return {"id": sub, "items": {"object": "list", "data": items[sub][:1], "has_more": True}}

    whole = {"id": "sub_2", "items": {"object": "list", "data": [], "has_more": False}}
    completed = api(client, max_workers=2).with_all_items([cut("sub_1"), whole, cut("sub_3")])
    assert [[i["id"] for i in s["items"]["data"]] for s in completed] == [
        ["si_sub_1_0", "si_sub_1_1", "si_sub_1_2"],
        [],
        ["si_sub_3_0", "si_sub_3_1", "si_sub_3_2"],
    ]
    assert [s["items"]["has_more"] for s in completed] == [False, False, False]
    assert completed[1] is whole
    assert sorted(params["subscription"] for _, params in client.requests) == ["sub_1", "sub_3"]
    page = [whole]
    assert api(client).with_all_items(page) is page
    assert len(client.requests) == 2


# --------------------------------------------------------------------------- cursor


def test_the_cursor_is_the_newest_event_s_second_with_that_second_s_events_seen():
    newest = [
        event("evt_3", T - 10, {"id": "cus_1", "object": "customer"}),
        event("evt_2", T - 10, {"id": "cus_2", "object": "customer"}),
        event("evt_1", T - 20, {"id": "cus_3", "object": "customer"}),
    ]
    client = FakeStripe({"/v1/events": lambda p: listing(newest)})
    start = api(client).start()
    assert start.cursor == Cursor(T - 10, ("evt_3", "evt_2"))
    assert start.server_now == NOW
    assert client.requests == [("/v1/events", {"limit": NEWEST_EVENTS})]


def test_a_quiet_account_s_cursor_follows_the_server_clock_less_the_margin():
    old = [event("evt_1", T - 40 * 86_400, {"id": "cus_1", "object": "customer"})]
    client = FakeStripe({"/v1/events": lambda p: listing(old)})
    floor = int((NOW - CLOCK_MARGIN).timestamp())
    assert api(client).start().cursor == Cursor(floor)
    no_events = FakeStripe({"/v1/events": lambda p: listing([])})
    assert api(no_events).start().cursor == Cursor(floor)


def test_without_events_or_a_date_there_is_no_cursor_to_store():
    client = FakeStripe({"/v1/events": lambda p: listing([])}, date=None)
    start = api(client).start()
    assert (start.cursor, start.server_now) == (None, None)


def test_a_cursor_survives_dlt_state_as_it_was():
    cursor = Cursor(T, ("evt_1", "evt_2"))
    assert Cursor.from_state(cursor.to_state()) == cursor
    assert Cursor.from_state(None) is None


# --------------------------------------------------------------------------- events fallback


def oldest_kept() -> int:
    return int((NOW - EVENT_RETENTION + WINDOW_MARGIN).timestamp())


def test_a_first_run_lists_everything():
    assert full_listing_reason(None, NOW) == "first run"


def test_without_the_server_s_clock_the_window_cannot_be_judged():
    assert "no Date header" in full_listing_reason(Cursor(T), None)


def test_a_cursor_inside_the_event_window_reads_events():
    assert full_listing_reason(Cursor(oldest_kept()), NOW) is None
    assert full_listing_reason(Cursor(T - 86_400), NOW) is None


def test_a_cursor_near_or_past_the_30_day_window_lists_everything():
    reason = full_listing_reason(Cursor(oldest_kept() - 1), NOW)
    assert reason is not None and "29 days old" in reason and "30-day event window" in reason
    assert "31 days old" in full_listing_reason(Cursor(T - 31 * 86_400), NOW)


def test_the_window_is_judged_by_the_server_s_clock_not_this_machine_s():
    cursor = Cursor(int((NOW - timedelta(days=20)).timestamp()))
    assert full_listing_reason(cursor, NOW) is None
    assert full_listing_reason(cursor, NOW + timedelta(days=15)) is not None


# --------------------------------------------------------------------------- what changed


def test_each_changed_object_once_by_its_newest_event_and_deletions_apart():
    customers = ENDPOINTS["customers"]
    events = [
        [
            event("evt_5", 5, {"id": "cus_1", "object": "customer", "created": 1}),
            event("evt_4", 4, {"id": "di_1", "object": "discount", "customer": "cus_2"}),
            event(
                "evt_3", 3, {"id": "cus_3", "object": "customer", "email": "x"}, "customer.deleted"
            ),
        ],
        [
            event("evt_2", 2, {"id": "cus_1", "object": "customer"}, "customer.deleted"),
            event("evt_1", 1, {"id": "sub_1", "object": "subscription", "customer": "cus_4"}),
        ],
    ]
    changed, deleted = changed_objects(events, customers)
    # cus_1 was deleted, then (newer) recreated: refetched; a discount names its customer,
    # whose creation second it does not carry
    assert changed == {"cus_1": 1, "cus_2": None}
    assert deleted == [{"id": "cus_3", "object": "customer", "email": "x", "deleted": True}]


def test_changed_objects_with_a_known_creation_are_read_back_from_the_list_the_rest_by_id():
    subs = [{"id": f"sub_{n}", "object": "subscription", "created": 1_000 - n} for n in range(500)]
    # four changes near each other, one far off, one the list no longer shows, one unstamped
    changed = {f"sub_{n}": 1_000 - n for n in (3, 5, 40, 60, 450)} | {"sub_gone": 990}
    changed["sub_7"] = None
    listed = paged(subs)
    client = FakeStripe(
        {
            "/v1/subscriptions": listed,
            "/v1/subscriptions/sub_gone": not_found,
            "/v1/subscriptions/sub_7": lambda p: subs[7],
        }
    )
    pages = list(refetched(api(client, page_size=100, max_workers=1), "subscriptions", changed))
    assert sorted(r["id"] for page in pages for r in page) == sorted(set(changed) - {"sub_gone"})
    lists = [params for path, params in client.requests if path == "/v1/subscriptions"]
    # one page from the newest wanted second holds sub_3..sub_60; the next starts at
    # sub_450's second, skipping the 390 seconds between
    assert [p["created"] for p in lists] == [{"gte": 550, "lt": 998}, {"gte": 550, "lt": 551}]
    assert all(p["status"] == "all" and "starting_after" not in p for p in lists)
    retrieved = {path for path, _ in client.requests if path.count("/") == 3}
    assert retrieved == {"/v1/subscriptions/sub_gone", "/v1/subscriptions/sub_7"}


def test_a_wanted_second_the_page_ended_in_is_continued_by_the_cursor():
    same = [{"id": f"in_{n}", "object": "invoice", "created": 500} for n in range(5)]
    client = FakeStripe({"/v1/invoices": paged(same)})
    pages = list(refetched(api(client, page_size=2, max_workers=1), "invoices", {"in_4": 500}))
    assert [[r["id"] for r in page] for page in pages] == [["in_4"]]
    cursors = [p.get("starting_after") for _, p in client.requests]
    assert cursors == [None, "in_1", "in_3"]


def test_an_event_row_keeps_the_object_as_json_and_says_what_it_is_about():
    evt = event(
        "evt_1", 1, {"id": "sub_1", "object": "subscription"}, "customer.subscription.updated"
    )
    evt["data"]["previous_attributes"] = {"status": "trialing"}
    row = event_row(evt)
    assert row["data__object_id"] == "sub_1" and row["data__object_type"] == "subscription"
    assert json.loads(row["data__object"]) == {"id": "sub_1", "object": "subscription"}
    assert json.loads(row["data__previous_attributes"]) == {"status": "trialing"}
    assert "data" not in row and row["type"] == "customer.subscription.updated"


# --------------------------------------------------------------------------- sync


def test_a_first_sync_lists_everything_then_the_deletions_still_kept_then_stores_the_cursor():
    newest = event("evt_9", T - 5, {"id": "cus_1", "object": "customer"})
    gone = event("evt_1", T - 99, {"id": "cus_0", "object": "customer"}, "customer.deleted")

    def events(params: dict) -> dict:
        return listing([gone] if params.get("type") == "customer.deleted" else [newest])

    client = FakeStripe(
        {"/v1/events": events, "/v1/customers": paged([{"id": "cus_1", "created": T - 9}])}
    )
    state: dict = {}
    pages = list(sync(api(client), "customers", state))
    assert pages == [
        [{"id": "cus_1", "created": T - 9}],
        [{**gone["data"]["object"], "deleted": True}],
    ]
    assert state == {"cursor": {"created": T - 5, "seen": ["evt_9"]}}


def test_a_later_sync_refetches_what_events_changed_since_the_cursor():
    previous = Cursor(T - 60, ("evt_seen",))
    since = [
        event("evt_new", T - 30, {"id": "cus_2", "object": "customer"}),
        event("evt_seen", T - 60, {"id": "cus_1", "object": "customer"}),
    ]

    def events(params: dict) -> dict:
        return listing(since if "created" in params else since[:1])

    client = FakeStripe(
        {"/v1/events": events, "/v1/customers/cus_2": lambda p: {"id": "cus_2", "v": 2}}
    )
    state = {"cursor": previous.to_state()}
    pages = list(sync(api(client), "customers", state))
    assert pages == [[{"id": "cus_2", "v": 2}]]  # cus_1's event was already seen
    listed = [params for path, params in client.requests if "created" in params]
    assert listed[0]["created"] == {"gte": T - 60}  # inclusive: same-second events kept
    assert listed[0]["types"] == ENDPOINTS["customers"].event_filter["types"]
    assert "/v1/customers" not in client.paths()  # no full listing
    assert state["cursor"] == {"created": T - 30, "seen": ["evt_new"]}


def test_a_cursor_past_the_window_falls_back_to_a_full_listing():
    stale = Cursor(T - 40 * 86_400)
    client = FakeStripe(
        {
            "/v1/events": lambda p: listing([]),
            "/v1/invoices": paged([{"id": "in_1", "created": T - 9}]),
        }
    )
    state = {"cursor": stale.to_state()}
    assert list(sync(api(client), "invoices", state)) == [[{"id": "in_1", "created": T - 9}]]
    assert not any("created" in params for path, params in client.requests if "events" in path)
    assert state["cursor"]["created"] == int((NOW - CLOCK_MARGIN).timestamp())


def test_a_sync_that_dies_keeps_the_previous_cursor():
    client = FakeStripe(
        {
            "/v1/events": lambda p: listing([]),
            "/v1/customers": lambda p: stripe.InvalidRequestError("bad", "x", http_status=400),
        }
    )
    state = {"cursor": {"created": 0, "seen": []}}  # stale: a full listing, which fails
    with pytest.raises(stripe.InvalidRequestError):
        list(sync(api(client), "customers", state))
    assert state["cursor"] == {"created": 0, "seen": []}


# --------------------------------------------------------------------------- sliced listing


def customers_over(count: int, seconds: int) -> list[dict]:
    """Customers newest first, several to a second (Stripe's order: created, then id)."""
    rows = [{"id": f"cus_{n:04d}", "created": T - 1 - n % seconds} for n in range(count)]
    return sorted(rows, key=lambda r: (r["created"], r["id"]), reverse=True)


def test_a_full_listing_is_sliced_by_created_windows_each_object_once():
    everything = customers_over(400, 37)
    newest = event("evt_9", T - 5, {"id": "cus_0000", "object": "customer"})
    client = FakeStripe(
        {"/v1/events": lambda p: listing([newest]), "/v1/customers": paged(everything)}
    )
    state: dict = {}
    pages = list(sync(api(client, page_size=7, max_workers=4), "customers", state))
    listed = [r["id"] for page in pages for r in page if not r.get("deleted")]
    assert sorted(listed) == sorted(r["id"] for r in everything)
    windows = [p["created"] for path, p in client.requests if path == "/v1/customers"]
    assert all(LISTING_FLOOR <= w["gte"] < w["lt"] <= T + 1 for w in windows)
    assert len({(w["gte"], w["lt"]) for w in windows}) > 1, "never split"
    assert state == {"cursor": {"created": T - 5, "seen": ["evt_9"]}}


def test_a_checkpointed_listing_keeps_its_first_cursor_until_it_ends():
    everything = customers_over(300, 300)
    newest = [event("evt_1", T - 50, {"id": "cus_0000", "object": "customer"})]
    client = FakeStripe(
        {"/v1/events": lambda p: listing(newest), "/v1/customers": paged(everything)}
    )
    stripe_api = api(client, page_size=5, max_workers=2, checkpoint_seconds=0)
    state: dict = {}
    loaded = [r["id"] for page in sync(stripe_api, "customers", state) for r in page]
    assert state["slices"] and state["slices_cursor"]["created"] == T - 50
    assert "cursor" not in state  # the next run continues the listing, not events
    newest.insert(0, event("evt_2", T - 10, {"id": "cus_0001", "object": "customer"}))
    for _ in range(200):
        if not state.get("slices"):
            break
        loaded += [r["id"] for page in sync(stripe_api, "customers", state) for r in page]
    assert sorted(loaded) == sorted(r["id"] for r in everything)
    # The cursor taken before the listing: evt_2 came during it, and the next run reads it.
    assert state == {"cursor": {"created": T - 50, "seen": ["evt_1"]}}


def pacing_of(key: str, per_second: float | str | None = "auto"):
    """What the source gives StripeApi: pacing's bucket for each operation, no settings."""
    return lambda operation: shared_bucket(
        "stripe", key, per_second, endpoint=operation, settings={}
    )


def test_each_named_operation_waits_on_pacing_s_bucket_at_stripe_s_25_a_second():
    asked: list[str] = []
    unpaced = StripeApi(FakeStripe({}), lambda op: asked.append(op) or TokenBucket(None))
    assert unpaced.bucket("/v1/invoices/in_1/lines").rate == 0  # the key is not paced: none
    unpaced.bucket("/v1/invoices/in_2/lines")
    assert asked == ["GET /v1/events", "GET /v1/invoices/{id}/lines"]  # once per operation
    assert unpaced.max_workers == 4
    live = StripeApi(FakeStripe({}), pacing_of("sk_live_ops"))
    lines = live.bucket("/v1/invoices/in_1/lines")
    assert lines is live.bucket("/v1/invoices/in_2/lines")
    assert lines is not live.bucket("/v1/invoices")
    assert live.bucket("/v1/invoices").rate == 24  # 25 less the burst's token
    assert live.bucket("/v1/invoices").parent is shared_bucket("stripe", "sk_live_ops", settings={})
    assert live.max_workers == 13  # 24/s through 0.5 s of latency, plus one
    test = StripeApi(FakeStripe({}), pacing_of("sk_test_ops"))
    assert test.bucket("/v1/invoices") is shared_bucket("stripe", "sk_test_ops", settings={})
    assert test.max_workers == 12  # the key's 21.5/s binds before the operation's 24/s
