"""The Chargebee source's helpers, in milliseconds and without a network: paging by
`next_offset`, the first page's parameters, the cursor, the catalog, retries. The answers
are the SDK's own response objects, parsed from JSON by the SDK's `Response` as after a
real request; only the client's `list` methods are stand-ins."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from chargebee import APIError
from chargebee.models.configuration.responses import ListResponse as ConfigurationList
from chargebee.models.coupon.responses import ListResponse as CouponList
from chargebee.models.customer.responses import ListResponse as CustomerList
from chargebee.responses import Response

from billing_clients.retries import RateLimiter, RetryPolicy
from dlt_sources.chargebee.helpers import (
    CLOCK_MARGIN_SECONDS,
    ENDPOINTS,
    ChargebeeLister,
    Page,
    Seen,
    list_params,
    next_cursor,
)

NOON = "Sat, 05 Dec 2026 12:00:00 GMT"
NOON_EPOCH = int(datetime(2026, 12, 5, 12, tzinfo=UTC).timestamp())


def answer(kind: type, body: dict, date: str | None = NOON) -> Any:
    """An SDK response object, as the SDK builds it from a JSON body and headers."""
    headers = httpx.Headers({"date": date} if date else {})
    return Response(kind, body, headers, 200).parse()


def customers_page(ids: list[str], next_offset: str | None = None, **extra) -> CustomerList:
    records = [{"customer": {"id": i, "updated_at": 100 + n, **extra}} for n, i in enumerate(ids)]
    body = {"list": records, **({"next_offset": next_offset} if next_offset else {})}
    return answer(CustomerList, body)


class Resource:
    """`client.<Model>`: its `list(params)` answers the scripted answers in turn (an
    exception is raised) and records the parameters of every call."""

    def __init__(self, *answers: Any):
        self.answers = list(answers)
        self.params: list[dict] = []

    def list(self, params: dict | None = None) -> Any:
        self.params.append(params)
        reply = self.answers.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply


class FakeChargebee:
    """The few `Chargebee` client attributes the lister uses."""

    def __init__(self, **resources: Resource):
        self.__dict__.update(resources)


def lister(client: FakeChargebee, **options) -> ChargebeeLister:
    options.setdefault("policy", RetryPolicy(sleep=lambda s: None))
    return ChargebeeLister(client, RateLimiter(None), **options)


# --------------------------------------------------------------------------- paging


def test_pages_follow_next_offset_until_the_last_page_and_keep_the_json_as_sent():
    customers = Resource(
        customers_page(["c1", "c2"], next_offset='["101","c2"]', meta={"tier": "gold"}),
        customers_page(["c3"]),
    )
    pages = list(lister(FakeChargebee(Customer=customers), page_size=2).pages("customers", None))
    assert [[r["id"] for r in page.records] for page in pages] == [["c1", "c2"], ["c3"]]
    assert pages[0].records[0] == {"id": "c1", "updated_at": 100, "meta": {"tier": "gold"}}
    assert [page.server_time for page in pages] == [NOON_EPOCH, NOON_EPOCH]
    first, second = customers.params
    assert "offset" not in first
    assert second == {**first, "offset": '["101","c2"]'}  # same filters, next keyset


def test_an_empty_listing_is_one_empty_page():
    customers = Resource(customers_page([]))
    pages = list(lister(FakeChargebee(Customer=customers)).pages("customers", 500))
    assert [page.records for page in pages] == [[]]


def test_the_first_page_asks_for_updated_at_order_deleted_records_and_the_cursor_second():
    customers = Resource(customers_page([]))
    list(lister(FakeChargebee(Customer=customers), page_size=50).pages("customers", 1_000))
    assert customers.params == [
        {
            "limit": 50,
            "sort_by": {"asc": "updated_at"},
            "include_deleted": True,
            "updated_at": {"after": 999},  # strict `after`: the cursor's own second again
        }
    ]


def test_coupons_list_in_created_order_without_include_deleted():
    coupons = Resource(answer(CouponList, {"list": [{"coupon": {"id": "SAVE"}}]}))
    pages = list(lister(FakeChargebee(Coupon=coupons)).pages("coupons", None))
    assert pages[0].records == [{"id": "SAVE"}]
    assert coupons.params == [{"limit": 100, "sort_by": {"asc": "created_at"}}]


def test_a_first_run_has_no_updated_at_filter():
    # Chargebee keeps old records without `updated_at`; any filter would skip them.
    assert "updated_at" not in list_params(ENDPOINTS["subscriptions"], 100, None)


def test_a_page_without_a_date_header_has_no_server_time():
    customers = Resource(answer(CustomerList, {"list": []}, date=None))
    (page,) = lister(FakeChargebee(Customer=customers)).pages("customers", None)
    assert page.server_time is None


# --------------------------------------------------------------------------- retries


def test_a_rate_limited_page_waits_its_retry_after_then_is_asked_again():
    waits: list[float] = []
    limited = APIError(429, {"message": "too many requests"}, {"Retry-After": "4"})
    customers = Resource(limited, customers_page(["c1"]))
    chargebee = lister(FakeChargebee(Customer=customers), policy=RetryPolicy(sleep=waits.append))
    (page,) = chargebee.pages("customers", None)
    assert [r["id"] for r in page.records] == ["c1"]
    assert waits == [4.0]
    assert customers.params[0] == customers.params[1]  # the same page again


def test_a_page_that_keeps_failing_gives_up_naming_the_endpoint():
    gateway = Exception("Sorry, something went wrong. http_status_code: 502")
    customers = Resource(gateway, gateway)
    chargebee = lister(
        FakeChargebee(Customer=customers), policy=RetryPolicy(max_attempts=2, sleep=lambda s: None)
    )
    with pytest.raises(RuntimeError, match="chargebee customers: gave up after 2 attempts"):
        list(chargebee.pages("customers", None))


def test_a_bad_request_is_not_retried():
    customers = Resource(APIError(400, {"message": "configuration_incompatible"}, {}))
    with pytest.raises(APIError):
        list(lister(FakeChargebee(Customer=customers)).pages("customers", None))
    assert len(customers.params) == 1


# --------------------------------------------------------------------------- catalog


def configurations(*versions: str | None) -> ConfigurationList:
    body = {"configurations": [{"domain": "acme", "product_catalog_version": v} for v in versions]}
    return answer(ConfigurationList, body)


@pytest.mark.parametrize(
    ("versions", "catalog"), [(("v1",), "v1"), (("v2",), "v2"), ((None,), "v2")]
)
def test_the_catalog_is_what_configurations_says_or_else_2_0(versions, catalog):
    config = Resource(configurations(*versions))
    chargebee = lister(FakeChargebee(Configuration=config))
    assert chargebee.catalog() == catalog
    assert chargebee.catalog() == catalog
    assert len(config.params) == 1  # asked once per run


def test_a_catalog_setting_is_used_without_asking():
    config = Resource()
    chargebee = lister(FakeChargebee(Configuration=config), product_catalog="v1")
    assert (
        chargebee.serves("plans"),
        chargebee.serves("items"),
        chargebee.serves("customers"),
    ) == (
        True,
        False,
        True,
    )
    assert config.params == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"page_size": 101}, r"page_size must be 1\.\.100"),
        ({"page_size": 0}, r"page_size must be 1\.\.100"),
        ({"product_catalog": "v3"}, "product_catalog must be one of auto, v1, v2"),
    ],
)
def test_settings_outside_chargebee_s_limits_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        lister(FakeChargebee(), **options)


def test_the_server_time_is_the_date_of_a_one_customer_listing():
    customers = Resource(customers_page([]))
    assert lister(FakeChargebee(Customer=customers)).server_time() == datetime(
        2026, 12, 5, 12, tzinfo=UTC
    )
    assert customers.params == [{"limit": 1}]


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
