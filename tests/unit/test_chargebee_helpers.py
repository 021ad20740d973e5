"""The Chargebee source's helpers, in milliseconds: paging by `next_offset`, the first
page's parameters, the windows of a full listing, the cursor, the catalog, retries, and
`ChargebeeHttp` (the SDK's requests over one persistent client). The answers come through
httpx's `MockTransport` (no network) as Chargebee sends them, JSON and headers, so the
request encoding, auth and error classes under test are the real ones; one test counts
TCP connections at a local HTTP server."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import httpx
import pytest
from chargebee import APIError, InvalidRequestError

import dlt_sources.chargebee as chargebee_package
from billing_clients.chargebee import CLASSIFIER, ChargebeeHttp
from billing_clients.pacing import RateLimiter
from billing_clients.retries import RetryPolicy
from billing_clients.sdk import chargebee_client
from dlt_sources import slices
from dlt_sources.chargebee import full_listing
from dlt_sources.chargebee import tables as arrow_tables
from dlt_sources.chargebee.helpers import (
    CLOCK_MARGIN_SECONDS,
    ENDPOINTS,
    MAX_WORKERS,
    UNPACED_WORKERS,
    ChargebeeLister,
    Page,
    Seen,
    default_workers,
    list_params,
    next_cursor,
)
from dlt_sources.common import BATCH_RECORDS, batched
from dlt_sources.slices import Window

KEY = "test_cb_key"
BASE = "http://cb.test"
NOON = "Sat, 05 Dec 2026 12:00:00 GMT"
NOON_EPOCH = int(datetime(2026, 12, 5, 12, tzinfo=UTC).timestamp())

Reply = httpx.Response | Callable[[httpx.Request], httpx.Response]


def ok(body: dict, date: str | None = NOON) -> httpx.Response:
    return httpx.Response(200, json=body, headers={"date": date} if date else {})


def error(status: int, code: str, headers: dict | None = None, **extra) -> httpx.Response:
    """An error answer in Chargebee's JSON (the SDK raises by `type`)."""
    body = {"message": code, "api_error_code": code, "http_status_code": status, **extra}
    return httpx.Response(status, json=body, headers=headers or {})


class Api:
    """A scripted Chargebee: answers in turn, and every request's path and query."""

    def __init__(self, *replies: Reply):
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0)
        return reply(request) if callable(reply) else reply

    @property
    def queries(self) -> list[dict[str, str]]:
        return [dict(parse_qsl(r.url.query.decode())) for r in self.requests]

    @property
    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


def http(api: Api) -> ChargebeeHttp:
    return ChargebeeHttp(chargebee_client(KEY, base_url=BASE), transport=httpx.MockTransport(api))


def lister(api: Api, **options) -> ChargebeeLister:
    options.setdefault("policy", RetryPolicy(sleep=lambda s: None))
    return ChargebeeLister(http(api), RateLimiter(None), **options)


def customers(ids: list[str], next_offset: str | None = None, **extra) -> httpx.Response:
    records = [{"customer": {"id": i, "updated_at": 100 + n, **extra}} for n, i in enumerate(ids)]
    return ok({"list": records, **({"next_offset": next_offset} if next_offset else {})})


# --------------------------------------------------------------------------- http


def test_requests_carry_the_sdk_s_encoding_auth_and_agent_to_the_site_s_api():
    api = Api(ok({"list": []}))
    body, headers = http(api).get(
        "/subscriptions",
        {"limit": 5, "sort_by": {"asc": "created_at"}, "include_deleted": True},
    )
    assert body == {"list": []} and headers["date"] == NOON
    (request,) = api.requests
    assert str(request.url).startswith(f"{BASE}/api/v2/subscriptions?")
    assert api.queries == [{"limit": "5", "sort_by[asc]": "created_at", "include_deleted": "true"}]
    assert (
        request.headers["authorization"] == "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    )
    assert request.headers["user-agent"].startswith("Chargebee-Python-Client v")


def test_error_answers_raise_the_sdk_s_errors_which_classify_as_before():
    api = Api(
        error(400, "configuration_incompatible", type="invalid_request"),
        error(429, "api_request_limit_exceeded", {"Retry-After": "7"}),
        httpx.Response(503, text="<html>503 Service Unavailable</html>"),
    )
    client = http(api)
    with pytest.raises(InvalidRequestError) as bad:
        client.get("/items")
    assert bad.value.http_status_code == 400 and not CLASSIFIER.transient(bad.value)
    with pytest.raises(APIError) as limited:
        client.get("/items")
    assert CLASSIFIER.retry_after(limited.value) == 7.0
    with pytest.raises(Exception, match="http_status_code: 503") as gateway:
        client.get("/items")
    assert CLASSIFIER.transient(gateway.value)


def test_one_connection_serves_every_request_and_thread():
    """The SDK opens a connection per request; ChargebeeHttp keeps them: 40 requests from
    4 threads arrive over at most 4 TCP connections (one per thread in flight)."""
    ports: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def do_GET(self):
            ports.append(self.client_address[1])
            body = json.dumps({"list": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ChargebeeHttp(
            chargebee_client(KEY, base_url=f"http://127.0.0.1:{server.server_port}"),
            max_connections=4,
        )
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: client.get("/customers", {"limit": 1}), range(40)))
        client.close()
    finally:
        server.shutdown()
        server.server_close()
    assert len(ports) == 40
    assert len(set(ports)) <= 4


# --------------------------------------------------------------------------- paging


def test_pages_follow_next_offset_until_the_last_page_and_keep_the_json_as_sent():
    api = Api(
        customers(["c1", "c2"], next_offset='["101","c2"]', meta={"tier": "gold"}),
        customers(["c3"]),
    )
    pages = list(lister(api, page_size=2).pages("customers", None))
    assert [[r["id"] for r in page.records] for page in pages] == [["c1", "c2"], ["c3"]]
    assert pages[0].records[0] == {"id": "c1", "updated_at": 100, "meta": {"tier": "gold"}}
    assert [page.server_time for page in pages] == [NOON_EPOCH, NOON_EPOCH]
    first, second = api.queries
    assert "offset" not in first
    assert second == {**first, "offset": '["101","c2"]'}  # same filters, next keyset
    assert api.paths == ["/api/v2/customers"] * 2


def test_an_empty_listing_is_one_empty_page():
    pages = list(lister(Api(customers([]))).pages("customers", 500))
    assert [page.records for page in pages] == [[]]


def test_the_first_page_asks_for_updated_at_order_deleted_records_and_the_cursor_second():
    api = Api(customers([]))
    list(lister(api, page_size=50).pages("customers", 1_000))
    assert api.queries == [
        {
            "limit": "50",
            "sort_by[asc]": "updated_at",
            "include_deleted": "true",
            "updated_at[after]": "999",  # strict `after`: the cursor's own second again
        }
    ]


def test_coupons_list_in_created_order_without_include_deleted():
    api = Api(ok({"list": [{"coupon": {"id": "SAVE"}}]}))
    pages = list(lister(api).pages("coupons", None))
    assert pages[0].records == [{"id": "SAVE"}]
    assert api.queries == [{"limit": "100", "sort_by[asc]": "created_at"}]


def test_a_first_run_has_no_updated_at_filter():
    # Chargebee keeps old records without `updated_at`; any filter would skip them.
    assert "updated_at" not in list_params(ENDPOINTS["subscriptions"], 100, None)


def test_a_page_without_a_date_header_has_no_server_time():
    (page,) = lister(Api(ok({"list": []}, date=None))).pages("customers", None)
    assert page.server_time is None


# --------------------------------------------------------------------------- windows


def test_a_window_is_exactly_its_seconds_oldest_first_by_the_creation_field():
    api = Api(
        ok(
            {
                "list": [{"subscription": {"id": "s1", "created_at": 10}, "customer": {}}],
                "next_offset": '["10000000","s1"]',
            }
        ),
        ok({"list": [{"invoice": {"id": "i1", "date": 12}}]}),
    )
    chargebee = lister(api, page_size=20)
    subs = chargebee.windows("subscriptions")
    page = subs.page(Window(10, 20, cursor='["9000000","s0"]'))
    assert [r["id"] for r in page.records] == ["s1"]
    assert page.cursor == '["10000000","s1"]'
    assert subs.stamp(page.records[0]) == 10 and not subs.descending
    invoices = chargebee.windows("invoices")
    (invoice,) = invoices.page(Window(12, 13)).records
    assert invoices.stamp(invoice) == 12
    assert api.queries == [
        {
            "limit": "20",
            "sort_by[asc]": "created_at",
            "created_at[after]": "9",  # strict: lo's own second is in
            "created_at[before]": "20",  # strict: hi is out
            "include_deleted": "true",
            "offset": '["9000000","s0"]',
        },
        {
            "limit": "20",
            "sort_by[asc]": "date",
            "date[after]": "11",
            "date[before]": "13",
            "include_deleted": "true",
        },
    ]
    assert api.paths == ["/api/v2/subscriptions", "/api/v2/invoices"]


def test_only_customers_subscriptions_and_invoices_are_sliced():
    assert {n for n, e in ENDPOINTS.items() if e.created} == {
        "customers",
        "subscriptions",
        "invoices",
    }
    with pytest.raises(ValueError, match="chargebee coupons has no creation field"):
        lister(Api()).windows("coupons")


def test_a_listing_opens_with_one_request_its_first_page_up_to_the_server_s_clock():
    first = {"list": [{"invoice": {"id": "i1", "date": 1_000}}], "next_offset": '["1000","i1"]'}
    api = Api(ok(first), ok({"list": [{"invoice": {"id": "i2", "date": 1_500}}]}))
    chargebee = lister(api, page_size=50)
    opening = chargebee.opening("invoices")
    assert opening.span == (1_000, NOON_EPOCH + 1)
    assert opening.now == NOON_EPOCH
    assert api.queries == [{"limit": "50", "sort_by[asc]": "date", "include_deleted": "true"}]

    windows = chargebee.windows("invoices", opening)
    window = Window(*opening.span)
    assert windows.page(window) == slices.Page([{"id": "i1", "date": 1_000}], '["1000","i1"]')
    assert len(api.requests) == 1  # the opening's page, not a request
    windows.page(window)  # asked again (a retry, another run): a request
    assert api.queries[1]["date[after]"] == "999"


def test_a_full_listing_s_first_request_is_its_first_page():
    # One page: one request in all (no probes); two pages: the opening's cursor goes on
    # under the window's filters. The cursor the listing keeps is the opening's clock.
    one = {"customer": {"id": "c1", "created_at": 10}}
    for replies, expected in (
        ([ok({"list": [one]})], 1),
        ([ok({"list": [one], "next_offset": "o1"}), ok({"list": []})], 2),
    ):
        api, state = Api(*replies), {}
        pages = list(full_listing(lister(api, max_workers=1), "customers", state, None))
        assert pages == [[one["customer"]]]
        assert len(api.requests) == expected
        assert state == {"cursor": NOON_EPOCH - CLOCK_MARGIN_SECONDS}
    assert api.queries[1] == {
        "limit": "100",
        "sort_by[asc]": "created_at",
        "created_at[after]": "9",
        "created_at[before]": str(NOON_EPOCH + 1),
        "include_deleted": "true",
        "offset": "o1",
    }


def test_every_listing_resource_runs_in_dlt_s_worker_threads(monkeypatch):
    # A resource argument with a default makes dlt run the resource in the main thread,
    # one resource after another (see `dlt_sources.chargebee._MERGED`).
    threads: dict[str, str] = {}

    def spy(lister, name, checkpoint_seconds=None):
        threads[name] = threading.current_thread().name
        yield from ()

    monkeypatch.setattr(chargebee_package, "changed_records", spy)
    source = chargebee_package.chargebee_source(KEY, base_url=BASE, product_catalog="v2")
    names = [n for n in source.resources if n != "syncs"]
    assert list(source.with_resources(*names)) == []
    assert sorted(threads) == sorted(names)
    assert "MainThread" not in threads.values(), threads


def test_a_full_listing_logs_one_progress_line_with_its_windows(caplog):
    caplog.set_level(logging.INFO, logger="retention.extract")
    api = Api(ok({"list": [{"customer": {"id": "c1", "created_at": 10}}]}))
    list(full_listing(lister(api), "customers", {}, None))
    (line,) = [r.getMessage() for r in caplog.records if "extracted" in r.getMessage()]
    assert line.startswith("chargebee customers: extracted 1 records, 1 pages, ")
    assert line.endswith("windows 1 done, 0 in flight, 0 waiting")


def test_without_the_server_s_clock_the_span_ends_at_the_newest_record():
    api = Api(
        ok({"list": [{"invoice": {"id": "i1", "date": 1_000}}]}, date=None),
        ok({"list": [{"invoice": {"id": "i9", "date": 9_000}}]}),
    )
    opening = lister(api).opening("invoices")
    assert (opening.span, opening.now) == ((1_000, 9_001), None)
    assert api.queries[1] == {"limit": "1", "sort_by[desc]": "date", "include_deleted": "true"}


def test_an_empty_resource_has_no_span():
    api = Api(customers([]))
    opening = lister(api).opening("customers")
    assert (opening.span, opening.now, opening.page) == (None, NOON_EPOCH, None)
    assert len(api.requests) == 1


def test_workers_follow_the_pace_within_chargebee_s_concurrency_limit():
    assert default_workers(RateLimiter(None)) == UNPACED_WORKERS
    assert default_workers(RateLimiter(2.25)) == 3  # Starter less headroom: 2 + 1
    assert default_workers(RateLimiter(52.5)) == 33  # Enterprise less headroom
    assert default_workers(RateLimiter(1_000)) == MAX_WORKERS
    assert lister(Api(), max_workers=7).workers == 7


# --------------------------------------------------------------------------- retries


def test_a_rate_limited_page_waits_its_retry_after_then_is_asked_again():
    waits: list[float] = []
    api = Api(error(429, "api_request_limit_exceeded", {"Retry-After": "4"}), customers(["c1"]))
    (page,) = lister(api, policy=RetryPolicy(sleep=waits.append)).pages("customers", None)
    assert [r["id"] for r in page.records] == ["c1"]
    assert waits == [4.0]
    assert api.queries[0] == api.queries[1]  # the same page again


def test_a_page_that_keeps_failing_gives_up_naming_the_endpoint():
    gateway = httpx.Response(502, text="502 Bad Gateway")
    chargebee = lister(
        Api(gateway, gateway), policy=RetryPolicy(max_attempts=2, sleep=lambda s: None)
    )
    with pytest.raises(RuntimeError, match="chargebee customers: gave up after 2 attempts"):
        list(chargebee.pages("customers", None))


def test_a_dropped_connection_is_retried():
    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected", request=request)

    api = Api(drop, customers(["c1"]))
    (page,) = lister(api).pages("customers", None)
    assert [r["id"] for r in page.records] == ["c1"]


def test_a_bad_request_is_not_retried():
    api = Api(error(400, "configuration_incompatible", type="invalid_request"))
    with pytest.raises(APIError):
        list(lister(api).pages("customers", None))
    assert len(api.requests) == 1


# --------------------------------------------------------------------------- catalog


def configurations(*versions: str | None) -> httpx.Response:
    return ok(
        {"configurations": [{"domain": "acme", "product_catalog_version": v} for v in versions]}
    )


@pytest.mark.parametrize(
    ("versions", "catalog"), [(("v1",), "v1"), (("v2",), "v2"), ((None,), "v2")]
)
def test_the_catalog_is_what_configurations_says_or_else_2_0(versions, catalog):
    api = Api(configurations(*versions))
    chargebee = lister(api)
    assert chargebee.catalog() == catalog
    assert chargebee.catalog() == catalog
    assert api.paths == ["/api/v2/configurations"]  # asked once per run


def test_a_catalog_setting_is_used_without_asking():
    api = Api()
    chargebee = lister(api, product_catalog="v1")
    assert (
        chargebee.serves("plans"),
        chargebee.serves("items"),
        chargebee.serves("customers"),
    ) == (
        True,
        False,
        True,
    )
    assert api.requests == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"page_size": 101}, r"page_size must be 1\.\.100"),
        ({"page_size": 0}, r"page_size must be 1\.\.100"),
        ({"product_catalog": "v3"}, "product_catalog must be one of auto, v1, v2"),
        ({"max_workers": 0}, "max_workers must be 1 or more, not 0"),
    ],
)
def test_settings_outside_chargebee_s_limits_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        lister(Api(), **options)


def test_the_server_time_is_the_date_of_a_one_customer_listing():
    api = Api(customers([]))
    assert lister(api).server_time() == datetime(2026, 12, 5, 12, tzinfo=UTC)
    assert api.queries == [{"limit": "1"}]


# --------------------------------------------------------------------------- cursor


def seen(*pages: Page) -> Seen:
    result = Seen()
    for page in pages:
        result.add(page)
    return result


def test_seen_keeps_the_first_page_s_time_and_the_newest_updated_at():
    result = seen(
        Page([{"updated_at": 5}, {"updated_at": 9}, {}], server_time=1_000),
        Page([{"updated_at": 7}], server_time=2_000),
    )
    assert (result.started, result.newest) == (1_000, 9)


def test_the_cursor_is_the_newest_updated_at_listed():
    listing = seen(Page([{"updated_at": 50}, {"updated_at": 70}], server_time=1_000))
    assert next_cursor(ENDPOINTS["subscriptions"], 10, listing) == 70


def test_coupons_cursor_is_the_listing_s_start_by_the_server_clock_less_the_margin():
    # created_at order: a coupon changed behind the listing is never listed again
    listing = seen(Page([{"updated_at": 9_999}], server_time=5_000))
    assert next_cursor(ENDPOINTS["coupons"], 10, listing) == 5_000 - CLOCK_MARGIN_SECONDS


def test_records_without_updated_at_fall_back_to_the_listing_s_start():
    listing = seen(Page([{"id": "old"}], server_time=5_000))
    assert next_cursor(ENDPOINTS["customers"], None, listing) == 5_000 - CLOCK_MARGIN_SECONDS


def test_with_neither_the_previous_cursor_stays():
    listing = seen(Page([{"id": "old"}], server_time=None))
    assert next_cursor(ENDPOINTS["customers"], 1_234, listing) == 1_234
    assert next_cursor(ENDPOINTS["customers"], None, Seen()) is None


# --------------------------------------------------------------------------- tables


def test_pages_reach_dlt_in_tables_of_at_least_the_batch_size_each_row_with_its_page():
    pages = [[{"id": f"r{p}-{i}"} for i in range(400)] for p in range(5)] + [[{"id": "r0-0"}]]
    tables = list(arrow_tables(iter(pages)))
    assert BATCH_RECORDS == 1_000
    assert [t.num_rows for t in tables] == [1_200, 801]  # >= BATCH_RECORDS, then the rest
    rows = [row for t in tables for row in t.to_pylist()]
    assert [r["_page_seq"] for r in rows[:401]] == [1] * 400 + [2]
    twice = [r["_page_seq"] for r in rows if r["id"] == "r0-0"]
    assert twice == [1, 6]  # listed again later: the merge keeps the later copy
    assert list(arrow_tables(iter([[], []]))) == []


def test_batched_regroups_pages_in_order_without_losing_a_record():
    pages = [[1, 2], [], [3], [4, 5, 6], [7]]
    assert list(batched(iter(pages), least=3)) == [[1, 2, 3], [4, 5, 6], [7]]
    assert list(batched(iter([[1, 2, 3]]), least=3)) == [[1, 2, 3]]  # no empty batch after
    assert list(batched(iter([]))) == []
