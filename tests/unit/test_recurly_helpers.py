"""The Recurly source's helpers, in milliseconds and without a network: paging by `next`,
the listing's parameters, errors as the SDK's classes, retries and the connection reset,
full listings by created_at windows (a client lent per request, the cursor kept aside until
a listing is done), incremental cursors, redemptions per account (none on a site without
coupons), and pages as Arrow tables whose types do not depend on the page.

The source reads raw pages on the SDK client's own http.client connection (see
dlt_sources/recurly/helpers.py), so the stand-in is that connection: it answers from a
table of paths, and everything above it (the SDK's `Response`, `Resource.cast_error`,
the lister) is the real code."""

from __future__ import annotations

import http.client
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pyarrow as pa
import pytest
import recurly
from recurly import errors

from billing_clients.retries import RetryPolicy
from billing_clients.sdk import recurly_client
from dlt_sources.recurly import helpers
from dlt_sources.recurly.helpers import Settings, format_time, page_table
from dlt_sources.slices import Window

DATE = "Sat, 05 Dec 2026 12:00:00 GMT"


class RawResponse:
    """An http.client response as the SDK reads it: status, headers, body."""

    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
        self.status, self._body = status, body
        self.headers = http.client.HTTPMessage()
        for name, value in {"X-Request-Id": "req-1", "Date": DATE, **(headers or {})}.items():
            self.headers[name] = value

    def read(self) -> bytes:
        return self._body


def ok(data: list[dict], next_url: str | None = None, has_more: bool | None = None) -> RawResponse:
    more = next_url is not None if has_more is None else has_more
    body = {"object": "list", "has_more": more, "next": next_url, "data": data}
    return RawResponse(200, orjson.dumps(body), {"Content-Type": "application/json"})


def error(status: int, kind: str, headers: dict[str, str] | None = None) -> RawResponse:
    body = orjson.dumps({"error": {"type": kind, "message": kind}})
    return RawResponse(status, body, {"Content-Type": "application/json", **(headers or {})})


Reply = RawResponse | BaseException


class FakeConnection:
    """The client's http.client connection: `routes` maps a path (without its query) to
    the replies of its successive requests; a BaseException reply is raised, as a dropped
    connection raises. Records the requested URLs and how often it was reset."""

    def __init__(self, routes: dict[str, list[Reply]]):
        self.routes = routes
        self.urls: list[str] = []
        self.closed = 0
        self._reply: RawResponse | None = None

    def request(self, method: str, url: str, headers: dict[str, str]) -> None:
        assert method == "GET" and headers["Accept"] == "application/vnd.recurly.v2021-02-25"
        self.urls.append(url)
        reply = self.routes[url.partition("?")[0]].pop(0)
        if isinstance(reply, BaseException):
            raise reply
        self._reply = reply

    def getresponse(self) -> RawResponse:
        return self._reply

    def close(self) -> None:
        self.closed += 1


# One SDK client for the module: making one loads the system's CA certificates (~0.1 s),
# and each test gives it a fresh connection anyway.
SDK = recurly_client("key", "http://recurly.test")


@pytest.fixture
def connect(monkeypatch) -> Callable[[dict[str, list[Reply]]], FakeConnection]:
    """Point every lister's SDK client at a FakeConnection answering `routes`."""

    def install(routes: dict[str, list[Reply]]) -> FakeConnection:
        connection = FakeConnection(routes)
        SDK._BaseClient__conn = connection
        monkeypatch.setattr(helpers, "recurly_client", lambda *args, **kwargs: SDK)
        return connection

    return install


def settings(waits: list[float] | None = None, **options) -> Settings:
    sleep = waits.append if waits is not None else (lambda s: None)
    return Settings(
        api_key="key",
        base_url="http://recurly.test",
        retry_policy=RetryPolicy(sleep=sleep),
        **options,
    )


def listed(settings_: Settings, path: str = "/accounts") -> list[list[dict]]:
    lister = helpers.RecurlyLister(settings_)
    return list(lister.pages(path, {"limit": 2}, "recurly accounts page"))


# --------------------------------------------------------------------------- paging


def test_pages_follow_next_verbatim_until_has_more_is_false(connect):
    later = "/accounts?cursor=abc&limit=2&sort=updated_at"
    connection = connect(
        {"/accounts": [ok([{"id": "a1"}, {"id": "a2"}], later), ok([{"id": "a3"}])]}
    )
    pages = listed(settings())
    assert [[a["id"] for a in page] for page in pages] == [["a1", "a2"], ["a3"]]
    assert connection.urls == ["/accounts?limit=2", later]


def test_has_more_false_ends_the_listing_whatever_next_says(connect):
    connection = connect({"/accounts": [ok([{"id": "a1"}], "/accounts?cursor=z", has_more=False)]})
    assert listed(settings()) == [[{"id": "a1"}]]
    assert len(connection.urls) == 1


def test_a_listing_asks_for_ascending_updated_at_from_the_cursor(connect):
    connection = connect({"/subscriptions": [ok([])]})
    begin = datetime(2026, 12, 5, 11, 59, 30, 999_999, tzinfo=UTC)
    list(helpers.updated_since(settings(page_size=50), "subscriptions", "/subscriptions", begin))
    assert connection.urls == [
        "/subscriptions?limit=50&sort=updated_at&order=asc&begin_time=2026-12-05T11%3A59%3A30Z"
    ]


def test_a_time_for_recurly_is_utc_and_floored_to_the_second():
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2026, 12, 5, 14, 0, 0, 999_999, tzinfo=plus_two)) == (
        "2026-12-05T12:00:00Z"
    )


# --------------------------------------------------------------------------- errors and retries


def test_an_error_answer_is_the_sdk_s_error_class_and_is_not_retried(connect):
    connection = connect({"/accounts": [error(404, "not_found")]})
    with pytest.raises(errors.NotFoundError):
        listed(settings())
    assert len(connection.urls) == 1


def test_a_429_waits_until_recurly_s_reset_then_asks_again(connect):
    waits: list[float] = []
    reset = str(int(datetime.now(UTC).timestamp()) + 20)
    connect({"/accounts": [error(429, "rate_limited", {"X-RateLimit-Reset": reset}), ok([])]})
    assert listed(settings(waits)) == [[]]
    assert len(waits) == 1 and 18 <= waits[0] <= 20


def test_a_proxy_s_bodiless_5xx_is_a_server_error_and_retried(connect):
    waits: list[float] = []
    connect({"/accounts": [RawResponse(502), RawResponse(503), ok([{"id": "a1"}])]})
    assert listed(settings(waits)) == [[{"id": "a1"}]]
    assert len(waits) == 2


def test_a_dropped_connection_is_reset_and_the_request_sent_again(connect):
    connection = connect(
        {"/accounts": [http.client.RemoteDisconnected("closed"), TimeoutError(), ok([])]}
    )
    assert listed(settings()) == [[]]
    assert connection.closed == 2
    assert connection.urls == ["/accounts?limit=2"] * 3


def test_a_bodiless_error_names_the_status_s_own_class():
    response = recurly.Response(RawResponse(504), recurly.Request("GET", "/accounts"))
    exc = helpers._bodiless_error(response)
    assert isinstance(exc, errors.TimeoutError) and "Unexpected 504 Error" in str(exc)


# --------------------------------------------------------------------------- clock


def test_the_server_time_is_the_date_of_a_one_account_listing(connect):
    connection = connect({"/accounts": [ok([])]})
    assert helpers.server_time(settings()) == datetime(2026, 12, 5, 12, tzinfo=UTC)
    assert connection.urls == ["/accounts?limit=1"]


def test_a_run_reads_the_clock_once_for_its_syncs_row_and_every_listing(connect):
    connection = connect({"/accounts": [ok([])], "/plans": [ok([])], "/coupons": [ok([])]})
    run = settings(workers=1)
    with ThreadPoolExecutor(4) as threads:  # the resources ask at the same moment
        times = list(threads.map(lambda _: helpers.server_time(run), range(4)))
    list(helpers.resource_listing(run, "plans", "/plans", {}))
    list(helpers.resource_listing(run, "coupons", "/coupons", {}))
    assert times == [datetime(2026, 12, 5, 12, tzinfo=UTC)] * 4
    assert connection.urls.count("/accounts?limit=1") == 1


def test_a_failed_clock_reading_is_not_kept(connect):
    connect({"/accounts": [error(401, "unauthorized"), ok([])]})
    run = settings()
    with pytest.raises(errors.UnauthorizedError):
        helpers.server_time(run)
    assert helpers.server_time(run) == datetime(2026, 12, 5, 12, tzinfo=UTC)


# --------------------------------------------------------------------------- windows

NOW = "2026-12-05T12:00:00+00:00"  # DATE, as a cursor is stored
T = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())


def created(ident: str, at: int, **fields) -> dict:
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"id": ident, "created_at": stamp, "updated_at": stamp, **fields}


def test_a_window_is_asked_by_created_at_and_what_lies_at_its_end_is_dropped(connect):
    later = "/subscriptions?cursor=c&limit=3&sort=created_at"
    connection = connect(
        {
            "/subscriptions": [
                ok([created("s1", T), created("s2", T + 9), created("s3", T + 10)], later),
                ok([created("s4", T + 10)]),
            ]
        }
    )
    windows = helpers.CreatedAtWindows(settings(page_size=3), "subscriptions", "/subscriptions")
    first = windows.page(Window(T, T + 10))
    assert [r["id"] for r in first.records] == ["s1", "s2"]  # s3 is at hi: the next window's
    assert first.cursor == later
    assert connection.urls == [
        "/subscriptions?limit=3&sort=created_at&order=asc"
        "&begin_time=2026-01-01T00%3A00%3A00Z&end_time=2026-01-01T00%3A00%3A10Z"
    ]
    rest = windows.page(Window(T + 9, T + 10, later, frozenset({"s2"})))
    assert (rest.records, rest.cursor) == ([], None)
    assert connection.urls[1] == later  # verbatim: it carries every filter


def test_a_stamp_is_created_at_floored_to_the_second():
    assert helpers.CreatedAtWindows.stamp({"created_at": "2026-01-01T00:00:00.900Z"}) == T


def test_a_client_serves_one_request_at_a_time_and_is_kept_for_the_next():
    pool = helpers.ClientPool("key", "http://recurly.test", None)
    with pool.lease() as first, pool.lease() as second:  # two requests in flight
        assert first is not second
    with pool.lease() as again:
        assert again in (first, second)  # reused, with its connection
    with ThreadPoolExecutor(2) as threads:
        leased = list(threads.map(lambda _: _lease_briefly(pool), range(4)))
    assert set(map(id, leased)) <= {id(first), id(second)}  # none made beyond the peak


def _lease_briefly(pool: helpers.ClientPool) -> object:
    with pool.lease() as client:
        return client


# --------------------------------------------------------------------------- runs and cursors


def test_a_first_sync_lists_by_windows_and_keeps_the_api_s_clock_from_before_it(connect):
    connection = connect({"/accounts": [ok([])], "/plans": [ok([created("p1", T)])]})
    state: dict = {}
    tables = list(helpers.resource_listing(settings(workers=1), "plans", "/plans", state))
    assert [t.column("id").to_pylist() for t in tables] == [["p1"]]
    assert state == {"updated_at": NOW}  # no windows pending, nothing kept aside
    assert connection.urls == [
        "/accounts?limit=1",  # the clock, before the listing
        "/plans?limit=200&sort=created_at&order=asc"
        "&begin_time=1970-01-01T00%3A00%3A00Z&end_time=2026-12-05T12%3A00%3A01Z",
    ]


def test_a_full_listing_logs_one_progress_line_with_its_windows(connect, caplog):
    caplog.set_level(logging.INFO, logger="retention.extract")
    connect({"/accounts": [ok([])], "/plans": [ok([created("p1", T)])]})
    list(helpers.resource_listing(settings(workers=1), "plans", "/plans", {}))
    (line,) = [r.getMessage() for r in caplog.records if "extracted" in r.getMessage()]
    assert line.startswith("recurly plans: extracted 1 records, 1 pages, ")
    assert line.endswith("windows 1 done, 0 in flight, 0 waiting")


def test_a_checkpointed_full_listing_keeps_its_cursor_aside_until_it_is_done(connect):
    later = "/plans?cursor=p1"
    connection = connect(
        {
            "/accounts": [ok([])],  # one clock reading: the resumed run reads none
            "/plans": [ok([created("p1", T)], later), ok([created("p2", T + 5)])],
        }
    )
    state: dict = {}
    stopped = settings(workers=1, checkpoint_seconds=0)
    first = list(helpers.resource_listing(stopped, "plans", "/plans", state))
    assert state["slices"] and state["slices_cursor"] == NOW and "updated_at" not in state
    assert helpers.stored_cursor(state, "updated_at") is None

    second = list(helpers.resource_listing(settings(workers=1), "plans", "/plans", state))
    assert [t.column("id").to_pylist() for t in first + second] == [["p1"], ["p2"]]
    assert state == {"updated_at": NOW}
    assert connection.urls[-1] == later


def test_an_incremental_run_starts_the_lag_before_its_cursor_and_moves_it(connect):
    newer = {"id": "p1", "updated_at": "2026-12-02T00:00:00Z"}
    connection = connect({"/plans": [ok([newer])]})
    state = {"updated_at": "2026-12-01T00:00:00+00:00"}
    list(helpers.resource_listing(settings(lag_seconds=60), "plans", "/plans", state))
    assert connection.urls == [
        "/plans?limit=200&sort=updated_at&order=asc&begin_time=2026-11-30T23%3A59%3A00Z"
    ]
    assert state == {"updated_at": "2026-12-02T00:00:00+00:00"}


def test_the_cursor_dlt_s_incremental_kept_before_is_read_once_on_upgrade():
    legacy = {"incremental": {"updated_at": {"last_value": datetime(2026, 12, 1, tzinfo=UTC)}}}
    assert helpers.stored_cursor(legacy, "updated_at") == datetime(2026, 12, 1, tzinfo=UTC)
    assert helpers.stored_cursor({**legacy, "updated_at": NOW}, "updated_at") == datetime(
        2026, 12, 5, 12, tzinfo=UTC
    )


# --------------------------------------------------------------------------- redemptions


def test_redemptions_are_read_per_account_updated_since_the_cursor(connect):
    accounts = [
        {"id": "a1", "updated_at": "2026-12-01T00:00:00Z"},
        {"id": "a/2", "updated_at": "2026-12-02T00:00:00Z"},
    ]
    redemption = {"id": "r1", "subscription_id": None, "coupon": {"code": "SAVE"}}
    connection = connect(
        {
            "/accounts": [ok([]), ok(accounts)],  # the clock, then the accounts
            "/coupons": [ok([{"id": "c1"}])],
            "/accounts/a1/coupon_redemptions": [ok([redemption])],
            "/accounts/a%2F2/coupon_redemptions": [ok([])],  # ids are quoted
        }
    )
    state = {"accounts_updated_at": "2026-11-30T00:00:00+00:00"}
    (table,) = list(helpers.account_redemptions(settings(workers=1), state))
    assert table.column("coupon__code").to_pylist() == ["SAVE"]
    assert state == {"accounts_updated_at": "2026-12-02T00:00:00+00:00"}
    assert connection.urls[2] == (
        "/accounts?limit=200&sort=updated_at&order=asc&begin_time=2026-11-30T00%3A00%3A00Z"
    )
    assert len(connection.urls) == 5


def test_a_first_sync_reads_the_redemptions_of_every_account(connect):
    connection = connect(
        {
            "/accounts": [ok([]), ok([created("a1", T), created("a2", T + 1)])],
            "/coupons": [ok([{"id": "c1"}])],
            "/accounts/a1/coupon_redemptions": [ok([{"id": "r1", "coupon": {"code": "X"}}])],
            "/accounts/a2/coupon_redemptions": [ok([])],
        }
    )
    state: dict = {}
    (table,) = list(helpers.account_redemptions(settings(workers=1), state))
    assert table.column("id").to_pylist() == ["r1"]
    assert state == {"accounts_updated_at": NOW}
    assert "sort=created_at" in connection.urls[2]


def test_redemptions_are_read_a_bounded_number_of_accounts_ahead_of_the_listing():
    """The reader takes accounts from the listing only as reads finish (a checkpoint stops
    the listing with little left to read), and hands over every account's result once."""
    taken: list[int] = []

    def ids():
        for number in range(100):
            taken.append(number)
            yield str(number)

    with ThreadPoolExecutor(2) as pool:
        found = helpers._as_completed(pool, lambda ident: [{"id": ident}], ids(), 4)
        first = next(found)
        assert len(taken) <= 5  # Executor.map would have taken all 100 first
        rest = list(found)
    assert sorted(int(r["id"]) for records in [first, *rest] for r in records) == list(range(100))


def test_a_site_without_coupons_reads_no_account(connect):
    connection = connect({"/accounts": [ok([])], "/coupons": [ok([])]})
    state: dict = {}
    assert list(helpers.account_redemptions(settings(), state)) == []
    assert state == {"accounts_updated_at": NOW}
    assert connection.urls == ["/accounts?limit=1", "/coupons?limit=1"]


# --------------------------------------------------------------------------- Arrow


def test_money_is_always_double_and_counts_stay_integers():
    jpy = page_table([{"id": "s1", "total": 4900, "quantity": 2, "tax_info": {"rate": 0}}])
    usd = page_table([{"id": "s2", "total": 49.5, "quantity": 1, "tax_info": {"rate": 0.1}}])
    assert jpy.schema.field("total").type == pa.float64() == usd.schema.field("total").type
    assert jpy.schema.field("tax_info__rate").type == pa.float64()
    assert pa.types.is_integer(jpy.schema.field("quantity").type)
    assert jpy.column("total").to_pylist() == [4900.0]


def test_times_are_utc_timestamps_in_microseconds():
    table = page_table([{"id": "s1", "updated_at": "2026-12-05T12:00:00Z", "state": "active"}])
    assert table.schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert table.column("updated_at").to_pylist() == [datetime(2026, 12, 5, 12, tzinfo=UTC)]
    assert table.schema.field("state").type == pa.string()


def test_updated_since_yields_one_table_per_non_empty_page(connect):
    later = "/plans?cursor=x"
    connect({"/plans": [ok([{"id": "p1", "code": "gold"}], later), ok([])]})
    tables = list(helpers.updated_since(settings(), "plans", "/plans", None))
    assert [t.column("code").to_pylist() for t in tables] == [["gold"]]
