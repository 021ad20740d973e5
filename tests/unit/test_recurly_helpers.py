"""The Recurly source's helpers, in milliseconds and without a network: paging by `next`,
the listing's parameters, errors as the SDK's classes, retries and the connection reset,
redemptions per account, and pages as Arrow tables whose types do not depend on the page.

The source reads raw pages on the SDK client's own http.client connection (see
dlt_sources/recurly/helpers.py), so the stand-in is that connection: it answers from a
table of paths, and everything above it (the SDK's `Response`, `Resource.cast_error`,
the lister) is the real code."""

from __future__ import annotations

import http.client
from collections.abc import Callable
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


# --------------------------------------------------------------------------- redemptions


def test_redemptions_are_read_per_account_with_the_last_account_s_updated_at(connect):
    accounts = [
        {"id": "a1", "updated_at": "2026-12-01T00:00:00Z"},
        {"id": "a/2", "updated_at": "2026-12-02T00:00:00Z"},
    ]
    redemption = {"id": "r1", "subscription_id": None, "coupon": {"code": "SAVE"}}
    connection = connect(
        {
            "/accounts": [ok(accounts)],
            "/accounts/a1/coupon_redemptions": [ok([redemption])],
            "/accounts/a%2F2/coupon_redemptions": [ok([])],  # ids are quoted
        }
    )
    ((table, last),) = list(helpers.account_redemptions(settings(), None))
    assert table.column("coupon__code").to_pylist() == ["SAVE"]
    assert last == datetime(2026, 12, 2, tzinfo=UTC)
    assert len(connection.urls) == 3


def test_accounts_without_redemptions_still_move_the_cursor(connect):
    connect(
        {
            "/accounts": [ok([{"id": "a1", "updated_at": "2026-12-01T00:00:00Z"}])],
            "/accounts/a1/coupon_redemptions": [ok([])],
        }
    )
    assert list(helpers.account_redemptions(settings(), None)) == [
        (None, datetime(2026, 12, 1, tzinfo=UTC))
    ]


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
