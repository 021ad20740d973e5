"""The Chargebee emulator through the official `chargebee` SDK (3.x), against hand-written
scenarios whose facts are stated below, at a frozen as_of of 2026-06-30T00:00:00Z."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime

import pytest
from chargebee import APIError, InvalidRequestError

from billing_clients.sdk import chargebee_client
from sandbox.chargebee_api import ChargebeeEmulator
from sandbox.server import DEFAULT_API_KEY, FaultConfig

pytestmark = pytest.mark.integration

CB = "chargebee"


def ts(text: str) -> int:
    """Epoch seconds of an ISO-8601 UTC time, as Chargebee sends timestamps."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp())


AS_OF = ts("2026-06-30T00:00:00Z")


def _plan(plan_id: str, product: str, currency: str, amount: str, interval: str, count: int):
    return {
        "billing_system": CB,
        "plan_id": plan_id,
        "product_id": product,
        "product_name": product.removeprefix("prod_").title(),
        "currency": currency,
        "unit_amount": amount,
        "interval": interval,
        "interval_count": count,
    }


def _customer(customer_id: str, created: str, name: str = "Ada Lovelace"):
    return {
        "billing_system": CB,
        "customer_id": customer_id,
        "email": f"{customer_id}@example.com",
        "name": name,
        "created_at": created,
    }


def _sub(sub_id: str, customer: str, plan: str, activated: str, **facts):
    record = {
        "billing_system": CB,
        "subscription_id": sub_id,
        "customer_id": customer,
        "plan_id": plan,
        "quantity": 1,
        "coupon_id": None,
        "created_at": activated,
        "activated_at": activated,
        "trial_start": None,
        "trial_end": None,
        "canceled_at": None,
        "ended_at": None,
        "paused_at": None,
        "resumes_at": None,
    }
    record.update(facts)
    return record


def _invoice(
    invoice_id: str,
    customer: str,
    sub: str,
    currency: str,
    total: str,
    status: str,
    created: str,
    paid: str | None = None,
):
    return {
        "billing_system": CB,
        "invoice_id": invoice_id,
        "customer_id": customer,
        "subscription_id": sub,
        "currency": currency,
        "total": total,
        "status": status,
        "created_at": created,
        "paid_at": paid,
    }


def scenario(legacy: bool = False) -> dict:
    """Seven subscriptions, one per Chargebee status (two active: USD and JPY); with
    `legacy`, a customer, subscription and invoice last changed in 2022 (> 730 days)."""
    doc = {
        "as_of": "2026-06-30T00:00:00Z",
        "reporting_currency": "USD",
        "fx_rates": {"USD": "1", "JPY": "0.0067"},
        "plans": [
            _plan("pro_usd_m", "prod_pro", "USD", "49.00", "month", 1),
            _plan("pro_jpy_m", "prod_pro", "JPY", "4900", "month", 1),
            _plan("team_usd_w", "prod_team", "USD", "12.50", "week", 1),
            _plan("pro_usd_q", "prod_pro", "USD", "120.00", "month", 3),
        ],
        "coupons": [
            {
                "billing_system": CB,
                "coupon_id": "SAVE20",
                "name": "20% off",
                "percent_off": "20",
                "amount_off": None,
                "currency": None,
                "duration": "forever",
                "duration_in_months": None,
            },
            {
                "billing_system": CB,
                "coupon_id": "TENOFF",
                "name": "10 off",
                "percent_off": None,
                "amount_off": "10.00",
                "currency": "USD",
                "duration": "repeating",
                "duration_in_months": 3,
            },
        ],
        "customers": [
            _customer("cus_a", "2025-01-03T10:00:00Z"),
            _customer("cus_b", "2025-02-01T00:00:00Z", "Grace"),
            _customer("cus_c", "2025-03-01T00:00:00Z"),
            _customer("cus_f", "2026-06-01T00:00:00Z"),
        ],
        "subscriptions": [
            _sub(
                "sub_active",
                "cus_a",
                "pro_usd_m",
                "2025-01-03T10:00:00Z",
                quantity=2,
                coupon_id="SAVE20",
            ),
            _sub("sub_jpy", "cus_b", "pro_jpy_m", "2025-02-01T00:00:00Z"),
            _sub(
                "sub_trial",
                "cus_c",
                "team_usd_w",
                "2026-06-20T00:00:00Z",
                trial_start="2026-06-20T00:00:00Z",
                trial_end="2026-07-04T00:00:00Z",
            ),
            _sub(
                "sub_future",
                "cus_f",
                "pro_usd_m",
                "2026-07-15T00:00:00Z",
                created_at="2026-06-01T00:00:00Z",
            ),
            _sub(
                "sub_nonrenew",
                "cus_a",
                "pro_usd_q",
                "2026-01-10T00:00:00Z",
                canceled_at="2026-06-10T00:00:00Z",
                ended_at="2026-07-10T00:00:00Z",
            ),
            _sub(
                "sub_paused",
                "cus_b",
                "pro_usd_m",
                "2025-06-01T00:00:00Z",
                paused_at="2026-06-01T00:00:00Z",
                resumes_at="2026-08-01T00:00:00Z",
            ),
            _sub(
                "sub_cancelled",
                "cus_c",
                "pro_usd_m",
                "2025-03-01T00:00:00Z",
                canceled_at="2026-03-01T00:00:00Z",
                ended_at="2026-03-01T00:00:00Z",
            ),
        ],
        "invoices": [
            _invoice(
                "inv_usd",
                "cus_a",
                "sub_active",
                "USD",
                "78.40",
                "paid",
                "2026-06-03T10:00:00Z",
                "2026-06-03T10:05:00Z",
            ),
            _invoice("inv_jpy", "cus_b", "sub_jpy", "JPY", "4900", "open", "2026-06-01T00:00:00Z"),
            _invoice(
                "inv_void", "cus_c", "sub_cancelled", "USD", "49.00", "void", "2026-02-01T00:00:00Z"
            ),
        ],
    }
    if legacy:
        doc["customers"].append(_customer("cus_old", "2021-05-01T00:00:00Z"))
        doc["subscriptions"].append(
            _sub(
                "sub_old",
                "cus_old",
                "pro_usd_m",
                "2021-05-01T00:00:00Z",
                canceled_at="2022-05-01T00:00:00Z",
                ended_at="2022-05-01T00:00:00Z",
            )
        )
        doc["invoices"].append(
            _invoice(
                "inv_old",
                "cus_old",
                "sub_old",
                "USD",
                "49.00",
                "paid",
                "2021-06-01T00:00:00Z",
                "2021-06-01T01:00:00Z",
            )
        )
    return doc


@pytest.fixture
def served(serve_scenario):
    """(sandbox, SDK client) for the main scenario."""
    sandbox = serve_scenario(scenario(), systems=(CB,))
    return sandbox, chargebee_client(DEFAULT_API_KEY, base_url=sandbox.urls[CB])


def list_all(resource, params: dict, wrap: str = "subscription") -> list:
    """Every entry of a list, page by page through next_offset."""
    entries, offset = [], None
    while True:
        page = resource.list({**params, **({"offset": offset} if offset else {})})
        entries += [getattr(entry, wrap) for entry in page.list]
        offset = page.next_offset
        if not offset:
            return entries


# --------------------------------------------------------------------------- reads


def test_catalog_in_minor_units_jpy_unchanged(served):
    _, cb = served
    prices = {p.item_price.id: p.item_price for p in cb.ItemPrice.list({"limit": 100}).list}
    assert prices["pro_usd_m"].price == 4900 and prices["pro_usd_m"].currency_code == "USD"
    assert prices["pro_jpy_m"].price == 4900 and prices["pro_jpy_m"].currency_code == "JPY"
    weekly, quarterly = prices["team_usd_w"], prices["pro_usd_q"]
    assert (weekly.price, weekly.period, weekly.period_unit) == (1250, 1, "week")
    assert (quarterly.price, quarterly.period, quarterly.period_unit) == (12000, 3, "month")
    assert quarterly.item_id == "prod_pro" and quarterly.item_type == "plan"
    assert quarterly.pricing_model == "per_unit" and quarterly.status == "active"

    items = {i.item.id: i.item for i in cb.Item.list().list}
    assert {k: (v.name, v.type, v.item_family_id) for k, v in items.items()} == {
        "prod_pro": ("Pro", "plan", "default"),
        "prod_team": ("Team", "plan", "default"),
    }
    assert cb.Item.retrieve("prod_team").item.status == "active"
    assert cb.ItemPrice.retrieve("pro_jpy_m").item_price.price == 4900
    with pytest.raises(InvalidRequestError) as v1_only:  # a 2.0 site has no plans
        cb.Plan.retrieve("team_usd_w")
    assert v1_only.value.api_error_code == "configuration_incompatible"

    percent = cb.Coupon.retrieve("SAVE20").coupon
    assert (percent.discount_type, percent.discount_percentage) == ("percentage", 20.0)
    assert percent.duration_type == "forever" and percent.apply_on == "invoice_amount"
    fixed = cb.Coupon.retrieve("TENOFF").coupon
    assert (fixed.discount_type, fixed.discount_amount, fixed.currency_code) == (
        "fixed_amount",
        1000,
        "USD",
    )
    assert (fixed.duration_type, fixed.period, fixed.period_unit) == ("limited_period", 3, "month")


def test_every_status_at_as_of(served):
    _, cb = served
    got = {
        sid: cb.Subscription.retrieve(sid)
        for sid in (
            "sub_active",
            "sub_jpy",
            "sub_trial",
            "sub_future",
            "sub_nonrenew",
            "sub_paused",
            "sub_cancelled",
        )
    }
    assert {sid: r.subscription.status for sid, r in got.items()} == {
        "sub_active": "active",
        "sub_jpy": "active",
        "sub_trial": "in_trial",
        "sub_future": "future",
        "sub_nonrenew": "non_renewing",
        "sub_paused": "paused",
        "sub_cancelled": "cancelled",
    }
    active = got["sub_active"]
    assert active.customer.id == "cus_a" and active.customer.first_name == "Ada"
    item = active.subscription.subscription_items[0]
    assert (item.item_price_id, item.quantity, item.unit_price, item.amount) == (
        "pro_usd_m",
        2,
        4900,
        9800,
    )
    assert active.subscription.coupons[0].coupon_id == "SAVE20"
    assert active.subscription.mrr == 7840  # 2 × 49.00, 20% off, in cents
    assert active.subscription.current_term_start == ts("2026-06-03T10:00:00Z")
    assert active.subscription.current_term_end == ts("2026-07-03T10:00:00Z")

    jpy = got["sub_jpy"].subscription
    assert (jpy.currency_code, jpy.subscription_items[0].unit_price, jpy.mrr) == ("JPY", 4900, 4900)
    assert jpy.due_invoices_count == 1 and jpy.total_dues == 4900

    trial = got["sub_trial"].subscription
    assert (trial.billing_period, trial.billing_period_unit) == (1, "week")
    assert trial.trial_end == ts("2026-07-04T00:00:00Z") == trial.next_billing_at
    assert trial.activated_at is None and trial.started_at == ts("2026-06-20T00:00:00Z")

    future = got["sub_future"].subscription
    assert future.start_date == ts("2026-07-15T00:00:00Z") and future.started_at is None

    nonrenew = got["sub_nonrenew"].subscription
    assert (nonrenew.billing_period, nonrenew.billing_period_unit) == (3, "month")
    assert nonrenew.current_term_start == ts("2026-04-10T00:00:00Z")
    assert nonrenew.cancelled_at == ts("2026-07-10T00:00:00Z") == nonrenew.current_term_end
    assert nonrenew.cancel_schedule_created_at == ts("2026-06-10T00:00:00Z")
    assert nonrenew.next_billing_at is None

    paused = got["sub_paused"].subscription
    assert paused.pause_date == ts("2026-06-01T00:00:00Z")
    assert paused.resume_date == ts("2026-08-01T00:00:00Z")

    cancelled = got["sub_cancelled"].subscription
    assert cancelled.cancelled_at == ts("2026-03-01T00:00:00Z")
    assert cancelled.cancel_schedule_created_at is None and cancelled.mrr == 0


def test_invoices_amounts_and_statuses(served):
    _, cb = served
    invoices = {i.id: i for i in list_all(cb.Invoice, {"limit": 2}, "invoice")}
    assert {k: (v.status, v.total, v.amount_paid, v.amount_due) for k, v in invoices.items()} == {
        "inv_usd": ("paid", 7840, 7840, 0),
        "inv_jpy": ("posted", 4900, 0, 4900),  # open: issued, not yet due
        "inv_void": ("voided", 4900, 0, 0),
    }
    usd = cb.Invoice.retrieve("inv_usd").invoice
    assert usd.paid_at == ts("2026-06-03T10:05:00Z") and usd.date == ts("2026-06-03T10:00:00Z")
    line = usd.line_items[0]
    assert (line.entity_id, line.amount, line.date_from, line.date_to) == (
        "pro_usd_m",
        7840,
        ts("2026-06-03T10:00:00Z"),
        ts("2026-07-03T10:00:00Z"),
    )
    due = cb.Invoice.list({"status": {"is": "posted"}, "customer_id": {"is": "cus_b"}})
    assert [e.invoice.id for e in due.list] == ["inv_jpy"]


def test_pagination_to_the_last_page(served):
    _, cb = served
    first = cb.Subscription.list({"limit": 2})
    assert len(first.list) == 2 and first.next_offset
    assert all(entry.customer.id == entry.subscription.customer_id for entry in first.list)
    subs = list_all(cb.Subscription, {"limit": 2})
    ids = [s.id for s in subs]
    assert len(ids) == 7 == len(set(ids))
    created = [s.created_at for s in subs]
    assert created == sorted(created, reverse=True)  # default order: newest first
    last = cb.Subscription.list({"limit": 3, "offset": first.next_offset, "id": {"in": ids[2:5]}})
    assert [e.subscription.id for e in last.list] == ids[2:5] and last.next_offset is None
    customers = list_all(cb.Customer, {"limit": 2}, "customer")
    assert sorted(c.id for c in customers) == ["cus_a", "cus_b", "cus_c", "cus_f"]


def test_sort_and_filters(served):
    _, cb = served
    ascending = list_all(
        cb.Subscription,
        {"limit": 2, "sort_by": {"asc": "updated_at"}, "include_deleted": True},
    )
    stamps = [s.updated_at for s in ascending]
    assert len(stamps) == 7 and stamps == sorted(stamps)

    def ids(params: dict) -> list[str]:
        return sorted(s.id for s in list_all(cb.Subscription, {"limit": 2, **params}))

    assert ids({"status": {"in": ["paused", "in_trial"]}}) == ["sub_paused", "sub_trial"]
    assert ids({"status[is]": "future"}) == ["sub_future"]
    assert ids({"customer_id": {"is": "cus_a"}}) == ["sub_active", "sub_nonrenew"]
    assert ids({"created_at": {"after": ts("2026-06-01T00:00:00Z")}}) == ["sub_trial"]
    assert ids(
        {"created_at": {"between": [ts("2026-01-10T00:00:00Z"), ts("2026-06-01T00:00:00Z")]}}
    ) == ["sub_future", "sub_nonrenew"]
    assert ids({"updated_at": {"before": ts("2026-01-01T00:00:00Z")}}) == ["sub_active", "sub_jpy"]
    assert ids({"include_deleted": False, "item_price_id": {"is": "pro_usd_q"}}) == ["sub_nonrenew"]
    with pytest.raises(InvalidRequestError) as refused:
        cb.Subscription.list({"plan_id": {"is": "pro_usd_m"}})
    assert refused.value.http_status_code == 400 and refused.value.param == "plan_id"
    with pytest.raises(InvalidRequestError):
        cb.Subscription.list({"limit": 101})


def test_legacy_records_have_no_updated_at(serve_scenario):
    sandbox = serve_scenario(scenario(legacy=True), systems=(CB,))
    cb = chargebee_client(DEFAULT_API_KEY, base_url=sandbox.urls[CB])
    assert ChargebeeEmulator.legacy_updated_at_days == 730
    everything = {s.id: s for s in list_all(cb.Subscription, {"limit": 2})}
    assert len(everything) == 8
    old = everything["sub_old"]
    assert old.status == "cancelled" and old.updated_at is None and old.resource_version is None
    assert "updated_at" not in old.raw_data
    assert cb.Customer.retrieve("cus_old").customer.updated_at is None
    assert cb.Invoice.retrieve("inv_old").invoice.updated_at is None
    assert everything["sub_jpy"].updated_at == ts("2025-02-01T00:00:00Z")

    since_epoch = {"limit": 2, "updated_at": {"after": 0}}
    filtered = {s.id for s in list_all(cb.Subscription, since_epoch)}
    assert filtered == set(everything) - {"sub_old"}
    by_updated = {
        s.id for s in list_all(cb.Subscription, {**since_epoch, "sort_by": {"desc": "updated_at"}})
    }
    assert by_updated == filtered
    invoices = {i.id for i in list_all(cb.Invoice, {"updated_at": {"after": 0}}, "invoice")}
    assert invoices == {"inv_usd", "inv_jpy", "inv_void"}

    # A refused write changes nothing, so the record stays without updated_at.
    with pytest.raises(InvalidRequestError):
        cb.Subscription.cancel_for_items("sub_old")
    assert cb.Subscription.retrieve("sub_old").subscription.updated_at is None


def test_legacy_record_gets_updated_at_once_written(serve_scenario):
    doc = scenario()
    doc["subscriptions"].append(
        _sub(
            "sub_2019",
            "cus_a",
            "pro_usd_m",
            "2019-01-01T00:00:00Z",
            created_at="2019-01-01T00:00:00Z",
        )
    )
    sandbox = serve_scenario(doc, systems=(CB,))
    cb = chargebee_client(DEFAULT_API_KEY, base_url=sandbox.urls[CB])
    assert cb.Subscription.retrieve("sub_2019").subscription.updated_at is None
    cancelled = cb.Subscription.cancel_for_items("sub_2019", {"end_of_term": True}).subscription
    assert cancelled.status == "non_renewing" and cancelled.updated_at == AS_OF
    changed = list_all(cb.Subscription, {"updated_at": {"after": AS_OF - 1}})
    assert [s.id for s in changed] == ["sub_2019"]


# --------------------------------------------------------------------------- writes


def test_cancel_at_term_end_then_undo_then_cancel_now(served):
    _, cb = served
    before = cb.Subscription.retrieve("sub_active").subscription
    result = cb.Subscription.cancel_for_items("sub_active", {"end_of_term": True})
    sub = result.subscription
    assert result.customer.id == "cus_a" and not result.is_idempotency_replayed
    assert sub.status == "non_renewing" and sub.cancelled_at == ts("2026-07-03T10:00:00Z")
    assert sub.cancel_schedule_created_at == AS_OF
    assert sub.updated_at == AS_OF and sub.resource_version > before.resource_version
    assert cb.Subscription.retrieve("sub_active").subscription.status == "non_renewing"

    undone = cb.Subscription.remove_scheduled_cancellation("sub_active").subscription
    assert undone.status == "active" and undone.cancelled_at is None
    with pytest.raises(InvalidRequestError) as nothing_scheduled:
        cb.Subscription.remove_scheduled_cancellation("sub_active")
    assert nothing_scheduled.value.api_error_code == "invalid_state_for_request"

    now = cb.Subscription.cancel_for_items(
        "sub_active", {"cancel_option": "immediately"}
    ).subscription
    assert now.status == "cancelled" and now.cancelled_at == AS_OF
    with pytest.raises(InvalidRequestError) as again:
        cb.Subscription.cancel_for_items("sub_active", {"end_of_term": False})
    assert again.value.http_status_code == 400
    assert again.value.api_error_code == "invalid_state_for_request"

    dated = cb.Subscription.cancel_for_items(
        "sub_jpy", {"cancel_option": "specific_date", "cancel_at": AS_OF + 86_400}
    ).subscription
    assert dated.status == "non_renewing" and dated.cancelled_at == AS_OF + 86_400


def test_pause_and_resume(served):
    _, cb = served
    resume_at = ts("2026-09-01T00:00:00Z")
    paused = cb.Subscription.pause(
        "sub_jpy", {"pause_option": "immediately", "resume_date": resume_at}
    ).subscription
    assert paused.status == "paused" and paused.pause_date == AS_OF
    assert paused.resume_date == resume_at and paused.updated_at == AS_OF
    with pytest.raises(InvalidRequestError) as twice:
        cb.Subscription.pause("sub_jpy", {"pause_option": "immediately"})
    assert twice.value.api_error_code == "invalid_state_for_request"

    resumed = cb.Subscription.resume("sub_jpy", {"resume_option": "immediately"}).subscription
    assert resumed.status == "active" and resumed.pause_date is None
    resumed_paused = cb.Subscription.resume("sub_paused").subscription
    assert resumed_paused.status == "active"

    scheduled = cb.Subscription.pause("sub_active", {"pause_option": "end_of_term"}).subscription
    assert scheduled.status == "active" and scheduled.pause_date == ts("2026-07-03T10:00:00Z")
    with pytest.raises(InvalidRequestError) as ended:
        cb.Subscription.pause("sub_cancelled", {"pause_option": "immediately"})
    assert ended.value.api_error_code == "invalid_state_for_request"


def test_pause_refused_in_trial_and_term_end_refused_while_paused(served):
    """Chargebee pauses only active/non-renewing subscriptions and moves no paused term."""
    _, cb = served
    with pytest.raises(InvalidRequestError) as trial:
        cb.Subscription.pause("sub_trial", {"pause_option": "immediately"})
    assert (trial.value.http_status_code, trial.value.api_error_code) == (
        400,
        "invalid_state_for_request",
    )
    with pytest.raises(InvalidRequestError) as paused:
        cb.Subscription.change_term_end("sub_paused", {"term_ends_at": AS_OF + 86_400})
    assert paused.value.api_error_code == "invalid_state_for_request"
    assert paused.value.type == "invalid_request"
    for sid in ("sub_trial", "sub_paused"):  # nothing changed
        sub = cb.Subscription.retrieve(sid).subscription
        assert sub.updated_at < AS_OF


def test_pause_needs_the_site_pause_feature(serve_scenario):
    sandbox = serve_scenario(scenario(), systems=(CB,), options={CB: {"pause_feature": False}})
    cb = chargebee_client(DEFAULT_API_KEY, base_url=sandbox.urls[CB])
    with pytest.raises(InvalidRequestError) as off:
        cb.Subscription.pause("sub_active", {"pause_option": "immediately"})
    assert (off.value.http_status_code, off.value.api_error_code) == (
        400,
        "configuration_incompatible",
    )
    assert "pause feature is currently disabled" in off.value.json_obj["message"]
    assert cb.Subscription.retrieve("sub_active").subscription.status == "active"


def test_change_term_end(served):
    _, cb = served
    new_end = ts("2026-08-15T00:00:00Z")
    sub = cb.Subscription.change_term_end("sub_active", {"term_ends_at": new_end}).subscription
    assert sub.current_term_start == ts("2026-06-03T10:00:00Z")
    assert sub.current_term_end == new_end == sub.next_billing_at
    assert sub.updated_at == AS_OF
    nonrenew = cb.Subscription.change_term_end("sub_nonrenew", {"term_ends_at": new_end})
    assert nonrenew.subscription.cancelled_at == new_end
    with pytest.raises(InvalidRequestError) as past:
        cb.Subscription.change_term_end("sub_active", {"term_ends_at": AS_OF - 60})
    assert past.value.param == "term_ends_at"


def test_update_for_items_coupon_and_plan(served):
    _, cb = served
    with_coupon = cb.Subscription.update_for_items("sub_jpy", {"coupon_ids": ["SAVE20"]})
    assert [c.coupon_id for c in with_coupon.subscription.coupons] == ["SAVE20"]
    assert with_coupon.subscription.mrr == 3920

    changed = cb.Subscription.update_for_items(
        "sub_active",
        {
            "subscription_items": [{"item_price_id": "pro_usd_q", "quantity": 1}],
            "replace_items_list": True,
        },
    ).subscription
    item = changed.subscription_items[0]
    assert (item.item_price_id, item.quantity, item.unit_price) == ("pro_usd_q", 1, 12000)
    assert (changed.billing_period, changed.billing_period_unit) == (3, "month")
    assert cb.Subscription.retrieve("sub_active").subscription.updated_at == AS_OF

    with pytest.raises(InvalidRequestError) as no_coupon:
        cb.Subscription.update_for_items("sub_active", {"coupon_ids": ["NOPE"]})
    assert no_coupon.value.http_status_code == 404
    assert (no_coupon.value.api_error_code, no_coupon.value.param) == (
        "resource_not_found",
        "coupon_ids[0]",
    )
    with pytest.raises(InvalidRequestError) as no_price:
        cb.Subscription.update_for_items(
            "sub_active", {"subscription_items": [{"item_price_id": "nope"}]}
        )
    assert no_price.value.http_status_code == 404
    with pytest.raises(InvalidRequestError) as currency:
        cb.Subscription.update_for_items(
            "sub_active", {"subscription_items": [{"item_price_id": "pro_jpy_m"}]}
        )
    assert currency.value.http_status_code == 400
    with pytest.raises(InvalidRequestError) as cancelled:
        cb.Subscription.update_for_items("sub_cancelled", {"coupon_ids": ["SAVE20"]})
    assert cancelled.value.api_error_code == "invalid_state_for_request"
    unchanged = cb.Subscription.retrieve("sub_active").subscription
    assert unchanged.subscription_items[0].item_price_id == "pro_usd_q"


def test_idempotency_key_replays_the_first_answer(served):
    sandbox, cb = served
    key = {"chargebee-idempotency-key": "pause-once"}
    params = {"pause_option": "immediately"}
    first = cb.Subscription.pause("sub_jpy", params, headers=dict(key))
    second = cb.Subscription.pause("sub_jpy", params, headers=dict(key))
    assert not first.is_idempotency_replayed and second.is_idempotency_replayed
    assert second.subscription.raw_data == first.subscription.raw_data
    log = [r for r in sandbox.emulator(CB).request_log if r["path"].endswith("/sub_jpy/pause")]
    assert [(r["idempotency_key"], r["status"]) for r in log] == [
        ("pause-once", 200),
        ("pause-once", 200),
    ]
    sub = cb.Subscription.retrieve("sub_jpy").subscription
    assert sub.status == "paused" and sub.resource_version == first.subscription.resource_version
    with pytest.raises(InvalidRequestError):  # without the key it is a second, refused pause
        cb.Subscription.pause("sub_jpy", params)


# --------------------------------------------------------------------------- errors


def test_wrong_key_unknown_id_and_rate_limit(served):
    sandbox, cb = served
    wrong = chargebee_client("sk_wrong", base_url=sandbox.urls[CB])
    with pytest.raises(APIError) as denied:
        wrong.Subscription.list()
    assert denied.value.http_status_code == 401
    assert denied.value.api_error_code == "api_authentication_failed"

    with pytest.raises(APIError) as missing:
        cb.Subscription.retrieve("sub_nope")
    assert missing.value.http_status_code == 404
    assert missing.value.api_error_code == "resource_not_found"
    with pytest.raises(APIError):
        cb.Customer.retrieve("cus_nope")

    sandbox.emulator(CB).faults = FaultConfig(script=deque(["429"]), retry_after=7)
    with pytest.raises(APIError) as limited:  # the SDK's retries are off by default
        cb.Subscription.list({"limit": 1})
    assert limited.value.http_status_code == 429
    assert limited.value.api_error_code == "api_request_limit_exceeded"
    assert limited.value.http_headers["retry-after"] == "7"
    assert len(cb.Subscription.list({"limit": 1}).list) == 1  # the script is spent
