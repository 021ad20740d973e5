"""The Stripe emulator through the official SDK: objects, statuses, lists, writes, events, errors.

Every test serves the hand-written scenario below (clock frozen at as_of) and talks to it
with `billing_clients.sdk.stripe_client`, so what passes here is what the pipeline's own
Stripe code will see.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import stripe

from billing_clients.sdk import stripe_client
from sandbox.server import DEFAULT_API_KEY, FaultConfig

pytestmark = pytest.mark.integration

AS_OF = "2026-06-30T00:00:00Z"


def epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def _customer(ident: str, created: str) -> dict:
    return {
        "billing_system": "stripe",
        "customer_id": ident,
        "email": f"{ident.removeprefix('cus_')}@example.com",
        "name": ident.removeprefix("cus_").title(),
        "created_at": created,
    }


def _subscription(ident: str, customer: str, plan: str, activated: str, **facts) -> dict:
    record = {
        "billing_system": "stripe",
        "subscription_id": ident,
        "customer_id": customer,
        "plan_id": plan,
        "quantity": 1,
        "created_at": activated,
        "activated_at": activated,
    }
    record.update(facts)
    return record


def _invoice(ident: str, sub: str, customer: str, currency: str, total: str, **facts) -> dict:
    record = {
        "billing_system": "stripe",
        "invoice_id": ident,
        "customer_id": customer,
        "subscription_id": sub,
        "currency": currency,
        "total": total,
    }
    record.update(facts)
    return record


def _plan(ident: str, product: str, name: str, currency: str, amount: str, interval: str):
    return {
        "billing_system": "stripe",
        "plan_id": ident,
        "product_id": product,
        "product_name": name,
        "currency": currency,
        "unit_amount": amount,
        "interval": interval,
        "interval_count": 1,
    }


SCENARIO = {
    "as_of": AS_OF,
    "reporting_currency": "USD",
    "fx_rates": {"USD": "1", "JPY": "0.0067"},
    "plans": [
        _plan("price_pro_m", "prod_pro", "Pro", "USD", "49.00", "month"),
        _plan("price_pro_y", "prod_pro", "Pro", "USD", "490.00", "year"),
        _plan("price_jp_m", "prod_jp", "Pro JP", "JPY", "4900", "month"),
    ],
    "coupons": [
        {
            "billing_system": "stripe",
            "coupon_id": "SAVE50",
            "name": "50% off",
            "percent_off": "50",
            "duration": "repeating",
            "duration_in_months": 3,
        },
        {
            "billing_system": "stripe",
            "coupon_id": "FIVE",
            "name": "$5 off",
            "amount_off": "5.00",
            "currency": "USD",
            "duration": "once",
        },
    ],
    "customers": [
        _customer("cus_active", "2025-12-01T09:00:00Z"),
        _customer("cus_trial", "2026-06-20T08:00:00Z"),
        _customer("cus_sched", "2026-03-10T10:00:00Z"),
        _customer("cus_ended", "2025-10-01T00:00:00Z"),
        _customer("cus_recent", "2026-02-03T00:00:00Z"),
        _customer("cus_paused", "2026-01-05T00:00:00Z"),
        _customer("cus_pastdue", "2026-02-01T00:00:00Z"),
        _customer("cus_unpaid", "2026-02-02T00:00:00Z"),
    ],
    "subscriptions": [
        _subscription(
            "sub_active",
            "cus_active",
            "price_pro_m",
            "2026-01-15T12:00:00Z",
            quantity=2,
            coupon_id="SAVE50",
        ),
        _subscription("sub_active2", "cus_active", "price_pro_y", "2026-05-01T00:00:00Z"),
        _subscription(
            "sub_trial",
            "cus_trial",
            "price_jp_m",
            "2026-06-20T08:00:00Z",
            trial_start="2026-06-20T08:00:00Z",
            trial_end="2026-07-04T08:00:00Z",
        ),
        _subscription(  # cancel requested for the end of the current period
            "sub_sched",
            "cus_sched",
            "price_pro_m",
            "2026-03-10T10:00:00Z",
            canceled_at="2026-06-25T00:00:00Z",
            ended_at="2026-07-10T10:00:00Z",
        ),
        _subscription(
            "sub_ended",
            "cus_ended",
            "price_pro_y",
            "2025-10-01T00:00:00Z",
            canceled_at="2026-04-01T00:00:00Z",
            ended_at="2026-04-01T00:00:00Z",
        ),
        _subscription(  # ended inside the 30-day event window
            "sub_recent",
            "cus_recent",
            "price_pro_m",
            "2026-02-03T00:00:00Z",
            canceled_at="2026-06-05T00:00:00Z",
            ended_at="2026-06-10T00:00:00Z",
        ),
        _subscription(
            "sub_paused",
            "cus_paused",
            "price_jp_m",
            "2026-01-05T00:00:00Z",
            paused_at="2026-06-15T00:00:00Z",
            resumes_at="2026-08-15T00:00:00Z",
        ),
        _subscription(
            "sub_pastdue", "cus_pastdue", "price_pro_m", "2026-02-01T00:00:00Z", dunning="past_due"
        ),
        _subscription(
            "sub_unpaid", "cus_unpaid", "price_pro_m", "2026-02-02T00:00:00Z", dunning="unpaid"
        ),
    ],
    "invoices": [
        _invoice(
            "in_active_jun",
            "sub_active",
            "cus_active",
            "USD",
            "49.00",
            status="paid",
            created_at="2026-06-15T12:00:00Z",
            paid_at="2026-06-15T12:05:00Z",
        ),
        _invoice(  # paid more than 30 days before as_of: no event any more
            "in_active_may",
            "sub_active",
            "cus_active",
            "USD",
            "49.00",
            status="paid",
            created_at="2026-05-15T12:00:00Z",
            paid_at="2026-05-15T12:05:00Z",
        ),
        _invoice(
            "in_jp_may",
            "sub_paused",
            "cus_paused",
            "JPY",
            "4900",
            status="paid",
            created_at="2026-05-05T00:00:00Z",
            paid_at="2026-05-05T01:00:00Z",
        ),
        _invoice(
            "in_pastdue",
            "sub_pastdue",
            "cus_pastdue",
            "USD",
            "49.00",
            status="open",
            created_at="2026-06-01T00:00:00Z",
        ),
        _invoice(
            "in_void",
            "sub_unpaid",
            "cus_unpaid",
            "USD",
            "49.00",
            status="void",
            created_at="2026-05-02T00:00:00Z",
        ),
    ],
}

NEWEST_FIRST = [
    "sub_trial",
    "sub_active2",
    "sub_sched",
    "sub_recent",
    "sub_unpaid",
    "sub_pastdue",
    "sub_active",
    "sub_paused",
    "sub_ended",
]


@pytest.fixture
def sandbox(serve_scenario):
    return serve_scenario(SCENARIO, systems=("stripe",))


@pytest.fixture
def client(sandbox) -> stripe.StripeClient:
    return stripe_client(DEFAULT_API_KEY, sandbox.urls["stripe"], retries=0)


def ids(items) -> list[str]:
    return [item.id for item in items]


def all_subscriptions(client, **params) -> list:
    params = {"status": "all", "limit": 100, **params}
    return list(client.v1.subscriptions.list(params=params).auto_paging_iter())


def period_end(sub) -> int:
    """All items share the period at this API version: the first item's end."""
    return sub["items"].data[0].current_period_end


def latest_event(client):
    return client.v1.events.list(params={"limit": 1}).data[0]


# --------------------------------------------------------------------------- objects


def test_amounts_in_minor_units_jpy_unchanged(client):
    usd = client.v1.subscriptions.retrieve("sub_active")
    jpy = client.v1.subscriptions.retrieve("sub_trial")
    assert usd.currency == "usd" and jpy.currency == "jpy"
    assert usd["items"].data[0].price.unit_amount == 4900
    assert usd["items"].data[0].price.unit_amount_decimal == Decimal("4900")  # SDK parses
    assert usd["items"].data[0].plan.amount == 4900 and usd["items"].data[0].quantity == 2
    assert jpy["items"].data[0].price.unit_amount == 4900  # ¥4900 has no minor unit
    assert jpy["items"].data[0].plan.interval == "month"
    assert client.v1.prices.retrieve("price_pro_y").unit_amount == 49000
    assert client.v1.invoices.retrieve("in_jp_may").total == 4900
    assert client.v1.invoices.retrieve("in_active_jun").amount_paid == 4900
    five = client.v1.coupons.retrieve("FIVE")
    assert (five.amount_off, five.currency, five.percent_off) == (500, "usd", None)
    assert client.v1.coupons.retrieve("SAVE50").percent_off == 50.0


def test_subscription_shape_with_periods_and_discount(client):
    sub = client.v1.subscriptions.retrieve("sub_active")
    item = sub["items"].data[0]
    assert sub.object == "subscription" and sub.customer == "cus_active"
    assert sub.start_date == sub.created == epoch("2026-01-15T12:00:00Z")
    assert item.id == "si_sub_active" and item.quantity == 2
    assert item.current_period_start == epoch("2026-06-15T12:00:00Z")
    assert item.current_period_end == epoch("2026-07-15T12:00:00Z")
    assert item.price.product == "prod_pro" and item.price.recurring.interval == "month"
    # API 2026-10-28: no top-level plan, quantity, periods or discount any more.
    legacy = {"plan", "quantity", "current_period_start", "current_period_end", "discount"}
    assert legacy.isdisjoint(sub.to_dict())
    assert len(sub.discounts) == 1 and sub.discounts[0].startswith("di_")
    discount = client.v1.subscriptions.retrieve(
        "sub_active", params={"expand": ["discounts"]}
    ).discounts[0]
    assert (discount.object, discount.id, discount.source.coupon) == (
        "discount",
        sub.discounts[0],
        "SAVE50",
    )
    assert "coupon" not in discount.to_dict()
    assert discount.end == epoch("2026-04-15T12:00:00Z")  # repeating, 3 months
    assert sub.latest_invoice == "in_active_jun"
    assert (sub.livemode, sub.collection_method, sub.pause_collection) == (
        False,
        "charge_automatically",
        None,
    )
    assert sub.cancel_at is None and sub.canceled_at is None and sub.ended_at is None


def test_statuses_at_as_of(client):
    subs = {sub.id: sub for sub in all_subscriptions(client)}
    assert {ident: sub.status for ident, sub in subs.items()} == {
        "sub_active": "active",
        "sub_active2": "active",
        "sub_trial": "trialing",
        "sub_sched": "active",
        "sub_ended": "canceled",
        "sub_recent": "canceled",
        "sub_paused": "active",
        "sub_pastdue": "past_due",
        "sub_unpaid": "unpaid",
    }
    trial = subs["sub_trial"]
    assert trial.trial_end == period_end(trial) == epoch("2026-07-04T08:00:00Z")
    assert trial.trial_start == epoch("2026-06-20T08:00:00Z")
    scheduled = subs["sub_sched"]
    assert scheduled.cancel_at_period_end is True
    assert scheduled.cancel_at == period_end(scheduled) == epoch("2026-07-10T10:00:00Z")
    assert scheduled.canceled_at == epoch("2026-06-25T00:00:00Z") and scheduled.ended_at is None
    recent = subs["sub_recent"]
    assert recent.ended_at == epoch("2026-06-10T00:00:00Z")
    assert recent.canceled_at == epoch("2026-06-05T00:00:00Z")
    assert recent.cancel_at is None and recent.cancel_at_period_end is False
    paused = subs["sub_paused"]
    assert paused.pause_collection.behavior == "void"
    assert paused.pause_collection.resumes_at == epoch("2026-08-15T00:00:00Z")


def test_customer_invoice_product_objects(client):
    customer = client.v1.customers.retrieve("cus_pastdue")
    assert (customer.email, customer.currency, customer.delinquent) == (
        "pastdue@example.com",
        "usd",
        True,
    )
    assert client.v1.customers.retrieve("cus_active").delinquent is False
    open_invoice = client.v1.invoices.retrieve("in_pastdue")
    assert (open_invoice.status, open_invoice.amount_due, open_invoice.amount_remaining) == (
        "open",
        4900,
        4900,
    )
    assert open_invoice.parent.subscription_details.subscription == "sub_pastdue"
    assert "subscription" not in open_invoice.to_dict()  # moved under parent in 2025-03-31
    paid = client.v1.invoices.retrieve("in_active_jun")
    assert paid.status_transitions.paid_at == epoch("2026-06-15T12:05:00Z")
    line = paid.lines.data[0]
    assert {"price", "plan"}.isdisjoint(line.to_dict())
    assert line.parent.subscription_item_details.subscription_item == "si_sub_active"
    assert (line.amount, line.currency, line.pricing.price_details.price, line.quantity) == (
        4900,
        "usd",
        "price_pro_m",
        2,
    )
    assert line.period.start == paid.period_start == epoch("2026-06-15T12:00:00Z")
    assert client.v1.invoices.retrieve("in_void").status_transitions.voided_at is not None
    product = client.v1.products.retrieve("prod_jp")
    assert (product.name, product.active) == ("Pro JP", True)


# --------------------------------------------------------------------------- lists


def test_pagination_to_last_page(client, sandbox):
    log = sandbox.emulator("stripe").request_log
    seen = all_subscriptions(client, limit=2)
    assert ids(seen) == NEWEST_FIRST
    assert len(set(ids(seen))) == len(seen) == 9
    pages = [entry for entry in log if entry["path"] == "/v1/subscriptions"]
    assert len(pages) == 5
    assert pages[-1]["params"]["starting_after"] == "sub_paused"
    first = client.v1.subscriptions.list(params={"status": "all", "limit": 2})
    second = client.v1.subscriptions.list(
        params={"status": "all", "limit": 2, "starting_after": first.data[-1].id}
    )
    assert ids(second) == NEWEST_FIRST[2:4] and second.has_more is True
    back = client.v1.subscriptions.list(
        params={"status": "all", "limit": 2, "ending_before": second.data[0].id}
    )
    assert ids(back) == NEWEST_FIRST[:2] and back.has_more is False
    last = client.v1.subscriptions.list(
        params={"status": "all", "limit": 2, "starting_after": "sub_paused"}
    )
    assert ids(last) == ["sub_ended"] and last.has_more is False and last.url == "/v1/subscriptions"


def test_subscription_filters(client):
    default = ids(client.v1.subscriptions.list(params={"limit": 100}).auto_paging_iter())
    assert default == [s for s in NEWEST_FIRST if s not in ("sub_recent", "sub_ended")]

    def listed(**params) -> list[str]:
        return ids(all_subscriptions(client, **params))

    assert listed(status="canceled") == ["sub_recent", "sub_ended"]
    assert listed(status="trialing") == ["sub_trial"]
    assert listed(status="past_due") == ["sub_pastdue"]
    assert listed(status="unpaid") == ["sub_unpaid"]
    assert listed(status="active") == ["sub_active2", "sub_sched", "sub_active", "sub_paused"]
    assert listed(customer="cus_active") == ["sub_active2", "sub_active"]
    assert listed(price="price_jp_m") == ["sub_trial", "sub_paused"]
    assert listed(created={"gte": epoch("2026-03-10T10:00:00Z")}) == NEWEST_FIRST[:3]
    assert listed(created={"gt": epoch("2026-03-10T10:00:00Z")}) == NEWEST_FIRST[:2]
    assert listed(created={"lt": epoch("2026-01-15T12:00:00Z")}) == ["sub_paused", "sub_ended"]
    assert listed(created={"lte": epoch("2026-01-15T12:00:00Z")}, limit=1) == NEWEST_FIRST[-3:]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.subscriptions.list(params={"status": "gone"})
    assert refused.value.param == "status"


def test_other_list_filters(client):
    def invoice_ids(**params) -> list[str]:
        return ids(client.v1.invoices.list(params={"limit": 2, **params}).auto_paging_iter())

    assert invoice_ids() == ["in_active_jun", "in_pastdue", "in_active_may", "in_jp_may", "in_void"]
    assert invoice_ids(status="open") == ["in_pastdue"]
    assert invoice_ids(status="paid", customer="cus_active") == ["in_active_jun", "in_active_may"]
    assert invoice_ids(subscription="sub_paused") == ["in_jp_may"]
    assert invoice_ids(created={"gte": epoch("2026-06-01T00:00:00Z")}) == [
        "in_active_jun",
        "in_pastdue",
    ]
    customers = client.v1.customers.list(params={"email": "trial@example.com"})
    assert ids(customers) == ["cus_trial"]
    assert len(list(client.v1.customers.list(params={"limit": 3}).auto_paging_iter())) == 8
    assert ids(client.v1.prices.list(params={"product": "prod_jp"})) == ["price_jp_m"]
    assert ids(client.v1.prices.list(params={"active": False})) == []
    assert sorted(ids(client.v1.products.list())) == ["prod_jp", "prod_pro"]
    assert sorted(ids(client.v1.coupons.list(params={"limit": 1}).auto_paging_iter())) == [
        "FIVE",
        "SAVE50",
    ]


def test_expand(client):
    page = client.v1.subscriptions.list(
        params={"customer": "cus_active", "expand": ["data.customer", "data.latest_invoice"]}
    )
    assert page.data[1].customer.email == "active@example.com"
    assert page.data[1].latest_invoice.id == "in_active_jun"
    assert page.data[1].latest_invoice.total == 4900
    assert page.data[0].latest_invoice is None  # sub_active2 has no invoice
    sub = client.v1.subscriptions.retrieve(
        "sub_active",
        params={"expand": ["customer", "items.data.price.product", "discounts"]},
    )
    assert sub.customer.name == "Active"
    assert sub["items"].data[0].price.product.name == "Pro"
    assert sub.discounts[0].source.coupon == "SAVE50" and sub.discounts[0].object == "discount"
    coupon = client.v1.subscriptions.retrieve(
        "sub_active", params={"expand": ["discounts.source.coupon"]}
    ).discounts[0]
    assert coupon.source.coupon.percent_off == 50.0
    prices = client.v1.prices.list(params={"expand": ["data.product"]})
    assert {price.product.name for price in prices} == {"Pro", "Pro JP"}
    assert "tiers" not in prices.data[0].to_dict()  # only when expanded
    tiers = client.v1.prices.list(params={"expand": ["data.tiers"]})
    assert all("tiers" in price.to_dict() for price in tiers)
    invoice = client.v1.invoices.retrieve(
        "in_pastdue", params={"expand": ["parent.subscription_details.subscription"]}
    )
    assert invoice.parent.subscription_details.subscription.status == "past_due"
    with pytest.raises(stripe.InvalidRequestError, match=r"cannot be expanded \(customer\)"):
        client.v1.subscriptions.list(params={"expand": ["customer"]})


def test_expansions_the_real_api_refuses(client):
    """`invoice.subscription` is gone since 2025-03-31, and Stripe expands at most four
    levels (a list's `data.` is one): both answer 400 invalid_request_error."""
    for path, params in (
        ("/v1/invoices/in_pastdue", {"expand": ["subscription"]}),
        ("/v1/invoices", {"expand": ["data.subscription"]}),
        ("/v1/subscriptions", {"expand": ["data.items.data.price.product"]}),
        ("/v1/subscriptions/sub_active", {"expand": ["plan"]}),
    ):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            client.raw_request("get", path, **params)
        assert refused.value.http_status == 400
        assert refused.value.error.type == "invalid_request_error"
        assert params["expand"][0] in refused.value.user_message


# --------------------------------------------------------------------------- events


def test_events_window_and_filters(client, sandbox):
    events = list(client.v1.events.list(params={"limit": 2}).auto_paging_iter())
    assert [(e.type, e.data.object.id) for e in events] == [
        ("customer.subscription.updated", "sub_sched"),
        ("customer.subscription.created", "sub_trial"),
        ("customer.created", "cus_trial"),
        ("invoice.paid", "in_active_jun"),
        ("customer.subscription.updated", "sub_paused"),
        ("customer.subscription.deleted", "sub_recent"),
        ("customer.subscription.updated", "sub_recent"),
    ]
    floor = epoch(AS_OF) - 30 * 86400
    assert all(e.created >= floor for e in events)  # in_active_may's payment is too old
    scheduled = events[0]
    assert scheduled.created == epoch("2026-06-25T00:00:00Z")
    assert scheduled.data.object.cancel_at_period_end is True
    assert scheduled.data.previous_attributes.cancel_at_period_end is False
    assert scheduled.data.previous_attributes.canceled_at is None
    assert events[4].data.previous_attributes.pause_collection is None
    assert events[5].data.object.status == "canceled"
    assert events[6].data.object.status == "active"  # cancel requested, not yet ended
    assert client.v1.events.retrieve(events[3].id).data.object.status == "paid"

    wildcard = client.v1.events.list(params={"type": "customer.subscription.*"})
    assert len(wildcard.data) == 5
    chosen = client.v1.events.list(params={"types": ["invoice.paid", "customer.created"]})
    assert [e.type for e in chosen] == ["customer.created", "invoice.paid"]
    recent = client.v1.events.list(params={"created": {"gte": epoch("2026-06-15T12:00:00Z")}})
    assert len(recent.data) == 4

    sandbox.clock.set(datetime(2026, 7, 8, tzinfo=UTC))  # 30 days back is now 2026-06-08
    kept = list(client.v1.events.list(params={"limit": 100}).auto_paging_iter())
    old_ids = {e.id for e in events}
    assert [e.id for e in kept if e.id in old_ids] == [e.id for e in events[:-1]]
    # What the clock made true on the way (scheduled ends, trial ends) arrived as events.
    arrived = [(e.type, e.data.object.id) for e in kept if e.id not in old_ids]
    assert arrived and all(e.created > epoch(AS_OF) for e in kept if e.id not in old_ids)
    with pytest.raises(stripe.InvalidRequestError) as gone:
        client.v1.events.retrieve(events[-1].id)
    assert gone.value.code == "resource_missing"


# --------------------------------------------------------------------------- writes


def test_cancel_at_period_end_and_undo(client, sandbox):
    store = sandbox.emulator("stripe").store
    sub = client.v1.subscriptions.update("sub_active", params={"cancel_at_period_end": True})
    assert sub.status == "active" and sub.cancel_at_period_end is True
    assert sub.cancel_at == epoch("2026-07-15T12:00:00Z") and sub.canceled_at == epoch(AS_OF)
    read = client.v1.subscriptions.retrieve("sub_active")
    assert (read.cancel_at_period_end, read.cancel_at) == (True, sub.cancel_at)
    record = store.get("subscriptions", "sub_active")
    assert record["updated_at"] == datetime(2026, 6, 30, tzinfo=UTC) and record["version"] == 2
    event = latest_event(client)
    assert event.type == "customer.subscription.updated" and event.created == epoch(AS_OF)
    assert event.data.object.id == "sub_active" and event.data.object.cancel_at_period_end
    assert event.data.previous_attributes.cancel_at_period_end is False
    assert event.request.id == sub.last_response.request_id
    assert event.request.idempotency_key == sub.last_response.idempotency_key  # SDK's own key

    undone = client.v1.subscriptions.update("sub_active", params={"cancel_at_period_end": False})
    assert undone.cancel_at_period_end is False and undone.cancel_at is None
    assert undone.canceled_at is None
    assert latest_event(client).data.previous_attributes.cancel_at == sub.cancel_at

    at = epoch("2026-09-01T00:00:00Z")
    custom = client.v1.subscriptions.update("sub_active", params={"cancel_at": at})
    assert custom.cancel_at == at and custom.cancel_at_period_end is False
    assert store.get("subscriptions", "sub_active")["ended_at"] == datetime(2026, 9, 1, tzinfo=UTC)


def test_pause_and_resume(client, sandbox):
    store = sandbox.emulator("stripe").store
    resumes = epoch("2026-08-01T00:00:00Z")
    paused = client.v1.subscriptions.update(
        "sub_active2",
        params={"pause_collection": {"behavior": "void", "resumes_at": resumes}},
    )
    assert paused.status == "active"
    assert (paused.pause_collection.behavior, paused.pause_collection.resumes_at) == (
        "void",
        resumes,
    )
    assert client.v1.subscriptions.retrieve("sub_active2").pause_collection.resumes_at == resumes
    record = store.get("subscriptions", "sub_active2")
    assert record["paused_at"] == datetime(2026, 6, 30, tzinfo=UTC)
    assert latest_event(client).data.previous_attributes.pause_collection is None

    resumed = client.v1.subscriptions.update("sub_active2", params={"pause_collection": ""})
    assert resumed.pause_collection is None
    assert record["resumes_at"] == datetime(2026, 6, 30, tzinfo=UTC)
    assert latest_event(client).data.previous_attributes.pause_collection.behavior == "void"


def test_coupon_write_and_unknown_coupon(client, sandbox):
    sub = client.v1.subscriptions.update(
        "sub_active2", params={"discounts": [{"coupon": "FIVE"}], "expand": ["discounts"]}
    )
    assert sub.discounts[0].source.coupon == "FIVE"
    assert sub.discounts[0].start == epoch(AS_OF) and sub.discounts[0].end is None
    assert latest_event(client).data.previous_attributes.discounts == []
    with pytest.raises(stripe.InvalidRequestError) as gone:  # removed in 2025-03-31
        client.v1.subscriptions.update("sub_active2", params={"coupon": "SAVE50"})
    assert (gone.value.code, gone.value.param) == ("parameter_unknown", "coupon")
    client.v1.subscriptions.update("sub_active2", params={"discounts": [{"coupon": "SAVE50"}]})
    version = sandbox.emulator("stripe").store.get("subscriptions", "sub_active2")["version"]

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.subscriptions.update(
            "sub_active2",
            params={"discounts": [{"coupon": "NOPE"}], "cancel_at_period_end": True},
        )
    assert (refused.value.http_status, refused.value.code) == (400, "resource_missing")
    assert refused.value.param == "discounts[0][coupon]"
    assert "No such coupon: 'NOPE'" in refused.value.user_message
    after = client.v1.subscriptions.retrieve("sub_active2", params={"expand": ["discounts"]})
    assert after.discounts[0].source.coupon == "SAVE50" and after.cancel_at_period_end is False
    assert (
        sandbox.emulator("stripe").store.get("subscriptions", "sub_active2")["version"] == version
    )

    removed = client.v1.subscriptions.update("sub_active2", params={"discounts": ""})
    assert removed.discounts == []


def test_trial_extension_and_end(client, sandbox):
    new_end = epoch("2026-08-01T00:00:00Z")
    sub = client.v1.subscriptions.update(
        "sub_pastdue", params={"trial_end": new_end, "proration_behavior": "none"}
    )
    item = sub["items"].data[0]
    assert sub.status == "trialing" and sub.trial_end == item.current_period_end == new_end
    assert sub.trial_start == item.current_period_start == epoch("2026-06-01T00:00:00Z")
    record = sandbox.emulator("stripe").store.get("subscriptions", "sub_pastdue")
    assert record["trial_end"] == datetime(2026, 8, 1, tzinfo=UTC)
    ended = client.v1.subscriptions.update("sub_trial", params={"trial_end": "now"})
    assert ended.status == "active" and ended.trial_end == epoch(AS_OF)
    assert latest_event(client).data.previous_attributes.status == "trialing"
    with pytest.raises(stripe.InvalidRequestError) as past:
        client.v1.subscriptions.update(
            "sub_trial", params={"trial_end": epoch("2026-01-01T00:00:00Z")}
        )
    assert past.value.param == "trial_end"


def test_plan_change_and_unknown_price(client):
    sub = client.v1.subscriptions.update(
        "sub_active2", params={"items": [{"id": "si_sub_active2", "price": "price_pro_m"}]}
    )
    item = sub["items"].data[0]
    assert item.plan.id == item.price.id == "price_pro_m"
    assert item.plan.amount == 4900 and item.id == "si_sub_active2"
    retrieved = client.v1.subscriptions.retrieve("sub_active2")
    assert retrieved["items"].data[0].price.recurring.interval == "month"
    previous = latest_event(client).data.previous_attributes
    assert previous["items"].data[0].price.id == "price_pro_y"
    jpy = client.v1.subscriptions.update("sub_active2", params={"items": [{"price": "price_jp_m"}]})
    assert jpy.currency == "jpy" and jpy["items"].data[0].plan.amount == 4900
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.subscriptions.update("sub_active2", params={"items": [{"price": "price_x"}]})
    assert (refused.value.http_status, refused.value.param) == (400, "items[0][price]")
    assert refused.value.code == "resource_missing"


def test_cancel_now_and_writes_on_canceled(client, sandbox):
    canceled = client.v1.subscriptions.cancel(
        "sub_unpaid", params={"prorate": True, "invoice_now": False}
    )
    assert canceled.status == "canceled"
    assert canceled.ended_at == canceled.canceled_at == epoch(AS_OF)
    assert client.v1.subscriptions.retrieve("sub_unpaid").status == "canceled"
    event = latest_event(client)
    assert event.type == "customer.subscription.deleted" and event.data.object.id == "sub_unpaid"
    entry = sandbox.emulator("stripe").request_log[-3]
    assert (entry["method"], entry["params"]) == (
        "DELETE",
        {"prorate": "true", "invoice_now": "false"},
    )
    assert ids(all_subscriptions(client, status="canceled")) == [
        "sub_recent",
        "sub_unpaid",
        "sub_ended",
    ]

    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.subscriptions.cancel("sub_unpaid")
    assert (again.value.http_status, again.value.code) == (404, "resource_missing")
    with pytest.raises(stripe.InvalidRequestError, match="canceled subscription can only update"):
        client.v1.subscriptions.update("sub_ended", params={"cancel_at_period_end": True})
    noted = client.v1.subscriptions.update("sub_ended", params={"metadata": {"note": "x"}})
    assert noted.metadata.note == "x"


def test_idempotent_replay(client, sandbox):
    emulator = sandbox.emulator("stripe")
    before = len(emulator.events.events)
    first = client.v1.subscriptions.update(
        "sub_paused", params={"cancel_at_period_end": True}, options={"idempotency_key": "k1"}
    )
    second = client.v1.subscriptions.update(
        "sub_paused", params={"cancel_at_period_end": True}, options={"idempotency_key": "k1"}
    )
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert second.last_response.request_id == first.last_response.request_id
    assert second.cancel_at == first.cancel_at
    assert len(emulator.events.events) == before + 1
    assert emulator.store.get("subscriptions", "sub_paused")["version"] == 2
    keyed = [entry for entry in emulator.request_log if entry["idempotency_key"] == "k1"]
    assert [entry["status"] for entry in keyed] == [200, 200]
    assert latest_event(client).request.idempotency_key == "k1"
    with pytest.raises(stripe.IdempotencyError):
        client.v1.subscriptions.update(
            "sub_paused", params={"cancel_at_period_end": False}, options={"idempotency_key": "k1"}
        )


# --------------------------------------------------------------------------- errors


def test_wrong_key_is_401_without_echoing_the_key(sandbox):
    wrong = "sk_test_wrongkey0000000xyz9"
    bad = stripe_client(wrong, sandbox.urls["stripe"], retries=0)
    with pytest.raises(stripe.AuthenticationError) as refused:
        bad.v1.subscriptions.list()
    assert refused.value.http_status == 401
    assert refused.value.user_message == "Invalid API Key provided: sk_test_***************xyz9"
    assert wrong not in refused.value.http_body
    assert refused.value.json_body["error"]["type"] == "invalid_request_error"


def test_unknown_id_is_404(client):
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.subscriptions.retrieve("sub_nope")
    error = missing.value
    assert (error.http_status, error.code, error.param) == (404, "resource_missing", "id")
    assert error.user_message == "No such subscription: 'sub_nope'"
    assert error.request_id.startswith("req_")
    with pytest.raises(stripe.InvalidRequestError, match="No such customer"):
        client.v1.customers.retrieve("cus_nope")
    with pytest.raises(stripe.InvalidRequestError) as cursor:
        client.v1.subscriptions.list(params={"starting_after": "sub_nope"})
    assert (cursor.value.http_status, cursor.value.param) == (400, "starting_after")


def test_rate_limit_429(client, sandbox):
    emulator = sandbox.emulator("stripe")
    emulator.faults = FaultConfig(script=deque(["429"]), retry_after=2)
    with pytest.raises(stripe.RateLimitError) as limited:
        client.v1.subscriptions.list()
    error = limited.value
    assert (error.http_status, error.error.code) == (429, "rate_limit")
    assert error.headers["Retry-After"] == "2"
    assert error.request_id.startswith("req_")
    assert emulator.request_log[-1]["fault"] == "429"
    assert len(client.v1.subscriptions.list().data) == 7  # the next call goes through


def test_clock_moves_a_scheduled_cancel_to_canceled(client, sandbox):
    sandbox.clock.advance(timedelta(days=11))  # past sub_sched's end on 2026-07-10
    sub = client.v1.subscriptions.retrieve("sub_sched")
    assert sub.status == "canceled" and sub.ended_at == epoch("2026-07-10T10:00:00Z")
    assert sub.cancel_at is None


TIERS = [
    {"up_to": 5, "unit_amount": "10.00", "flat_amount": "0"},
    {"up_to": None, "unit_amount": "8.00", "flat_amount": "2.50"},
]
ITEMS_SCENARIO = {
    **SCENARIO,
    "plans": [
        *SCENARIO["plans"],
        {**_plan("price_seats", "prod_seats", "Seats", "USD", "0", "month"), "tiers": TIERS}
        | {"pricing_model": "tiered"},
        {**_plan("price_vol", "prod_vol", "Volume", "USD", "0", "month"), "tiers": TIERS}
        | {"pricing_model": "volume"},
        _plan("price_packs", "prod_packs", "Packs", "USD", "5.00", "month")
        | {"pricing_model": "package", "package_size": 10},
        _plan("price_calls", "prod_calls", "Calls", "USD", "0.01", "month")
        | {"usage_type": "metered"},
    ],
    "subscriptions": [
        {
            **s,
            "items": [
                {"plan_id": "price_seats", "quantity": 7},
                {"plan_id": "price_vol", "quantity": 3},
                {"plan_id": "price_packs", "quantity": 25},
                {"plan_id": "price_calls"},
            ],
        }
        if s["subscription_id"] == "sub_active"
        else s
        for s in SCENARIO["subscriptions"]
    ],
}


def test_items_and_tiered_package_metered_prices(serve_scenario):
    """Every price is an item of its own: tiers sent only when expanded, a package price's
    `transform_quantity`, a metered price's meter and no quantity on its item; items are
    listed and paged, and each can be written by its id."""
    sandbox = serve_scenario(ITEMS_SCENARIO, systems=("stripe",))
    client = stripe_client(DEFAULT_API_KEY, sandbox.urls["stripe"], retries=0)
    sub = client.v1.subscriptions.retrieve("sub_active").to_dict()
    items = sub["items"]["data"]
    prices = [i["price"] for i in items]
    assert [p["id"] for p in prices] == [
        "price_pro_m", "price_seats", "price_vol", "price_packs", "price_calls",
    ]  # fmt: skip
    assert items[0]["id"] == "si_sub_active" and len({i["id"] for i in items}) == 5
    assert [(p["billing_scheme"], p["tiers_mode"], p["unit_amount"]) for p in prices[1:3]] == [
        ("tiered", "graduated", None),
        ("tiered", "volume", None),
    ]
    assert all("tiers" not in p for p in prices)  # expand-only
    assert prices[3]["transform_quantity"] == {"divide_by": 10, "round": "up"}
    assert (
        prices[3]["unit_amount"] == 500 and items[3]["plan"]["transform_usage"]["divide_by"] == 10
    )
    assert prices[4]["recurring"]["usage_type"] == "metered"
    assert prices[4]["recurring"]["meter"].startswith("mtr_") and "quantity" not in items[4]
    assert [i.get("quantity") for i in items[:4]] == [2, 7, 3, 25]

    expanded = client.v1.subscriptions.retrieve(
        "sub_active", params={"expand": ["items.data.price.tiers"]}
    ).to_dict()
    assert expanded["items"]["data"][1]["price"]["tiers"] == [
        {"flat_amount": 0, "flat_amount_decimal": Decimal("0"), "unit_amount": 1000,
         "unit_amount_decimal": Decimal("1000"), "up_to": 5},
        {"flat_amount": 250, "flat_amount_decimal": Decimal("250"), "unit_amount": 800,
         "unit_amount_decimal": Decimal("800"), "up_to": None},
    ]  # fmt: skip
    assert expanded["items"]["data"][0]["price"]["tiers"] is None

    listed = client.v1.subscription_items.list(params={"subscription": "sub_active", "limit": 2})
    assert [i.id for i in listed.auto_paging_iter()] == [i["id"] for i in items]
    by_price = client.v1.subscriptions.list(params={"price": "price_calls"})
    assert [s.id for s in by_price.data] == ["sub_active"]

    packs, calls = items[3]["id"], items[4]["id"]
    changed = client.v1.subscriptions.update(
        "sub_active", params={"items": [{"id": packs, "quantity": 31}]}
    )["items"].data
    assert (changed[3].id, changed[3].quantity) == (packs, 31)
    swapped = client.v1.subscriptions.update(
        "sub_active", params={"items": [{"id": packs, "price": "price_pro_y"}]}
    )["items"].data
    assert (swapped[3].id, swapped[3].price.id, swapped[0].price.id) == (
        packs, "price_pro_y", "price_pro_m",
    )  # fmt: skip
    with pytest.raises(stripe.InvalidRequestError) as metered:
        client.v1.subscriptions.update(
            "sub_active", params={"items": [{"id": calls, "quantity": 2}]}
        )
    assert metered.value.param == "items[0][quantity]"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.subscriptions.update(
            "sub_active", params={"items": [{"id": "si_x", "quantity": 2}]}
        )
    assert (unknown.value.param, unknown.value.code) == ("items[0][id]", "resource_missing")
