"""The Recurly emulator through the official recurly SDK (4.x, API v2021-02-25).

Every test serves a small hand-written scenario and talks to it only through
`billing_clients.sdk.recurly_client`, with the SDK's strict mode on: a field the SDK's
schema does not know fails the test, so the field names are the API's own.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta

import pytest
import recurly
from recurly import errors

from billing_clients.sdk import recurly_client
from sandbox.server import DEFAULT_API_KEY, FaultConfig

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)


def _plan(plan_id: str, currency: str, amount: str, interval: str, count: int = 1) -> dict:
    return {
        "billing_system": "recurly",
        "plan_id": plan_id,
        "product_id": plan_id.split("_")[0],
        "product_name": plan_id.upper(),
        "currency": currency,
        "unit_amount": amount,
        "interval": interval,
        "interval_count": count,
    }


def _customer(n: int, created: str) -> dict:
    return {
        "billing_system": "recurly",
        "customer_id": f"cus_{n}",
        "email": f"c{n}@example.com",
        "name": f"Customer Number{n}" if n != 6 else "Mononym",
        "created_at": created,
    }


def _sub(sub_id: str, customer: int, plan: str, activated: str, **facts) -> dict:
    return {
        "billing_system": "recurly",
        "subscription_id": sub_id,
        "customer_id": f"cus_{customer}",
        "plan_id": plan,
        "quantity": facts.pop("quantity", 1),
        "coupon_id": facts.pop("coupon_id", None),
        "created_at": facts.pop("created_at", activated),
        "activated_at": activated,
        **{
            name: facts.get(name)
            for name in (
                "trial_start",
                "trial_end",
                "canceled_at",
                "ended_at",
                "paused_at",
                "resumes_at",
            )
        },
    }


def _invoice(
    number: str, customer: int, sub_id: str, currency: str, total: str, status: str, created: str
):
    return {
        "billing_system": "recurly",
        "invoice_id": number,
        "customer_id": f"cus_{customer}",
        "subscription_id": sub_id,
        "currency": currency,
        "total": total,
        "status": status,
        "created_at": created,
        "paid_at": created.replace("T00:00", "T00:05") if status == "paid" else None,
    }


SCENARIO = {
    "as_of": "2026-06-30T00:00:00Z",
    "reporting_currency": "USD",
    "fx_rates": {"USD": "1", "JPY": "0.0067"},
    "plans": [
        _plan("pro_m", "USD", "49.00", "month"),
        _plan("pro_y", "USD", "490.00", "year"),
        _plan("jp_m", "JPY", "4900", "month"),
        _plan("team_w", "USD", "12.50", "week", 2),
    ],
    "coupons": [
        {
            "billing_system": "recurly",
            "coupon_id": "SAVE",
            "name": "Half off for 3 months",
            "percent_off": "50",
            "duration": "repeating",
            "duration_in_months": 3,
        },
        {
            "billing_system": "recurly",
            "coupon_id": "FLAT10",
            "name": "10 off once",
            "amount_off": "10.00",
            "currency": "USD",
            "duration": "once",
            "redemption_resource": "subscription",
        },
        {
            "billing_system": "recurly",
            "coupon_id": "JPYOFF",
            "name": "500 yen off",
            "amount_off": "500",
            "currency": "JPY",
            "duration": "forever",
            "redemption_resource": "subscription",
        },
    ],
    "customers": [_customer(n, f"2025-01-0{n}T00:00:00Z") for n in range(1, 8)],
    "subscriptions": [
        _sub("sub_active", 1, "pro_m", "2025-01-15T00:00:00Z", quantity=2),
        _sub("sub_week", 1, "team_w", "2026-01-05T00:00:00Z", created_at="2026-01-04T00:00:00Z"),
        _sub(
            "sub_trial",
            2,
            "pro_m",
            "2026-06-20T00:00:00Z",
            trial_start="2026-06-20T00:00:00Z",
            trial_end="2026-07-04T00:00:00Z",
        ),
        _sub(
            "sub_cancel",
            3,
            "pro_y",
            "2025-09-01T00:00:00Z",
            canceled_at="2026-05-01T00:00:00Z",
            ended_at="2026-09-01T00:00:00Z",
        ),
        _sub(
            "sub_ended",
            4,
            "jp_m",
            "2025-01-10T00:00:00Z",
            canceled_at="2026-03-01T00:00:00Z",
            ended_at="2026-03-10T00:00:00Z",
        ),
        _sub(
            "sub_paused",
            5,
            "team_w",
            "2026-01-05T12:00:00Z",
            paused_at="2026-06-01T00:00:00Z",
            resumes_at="2026-07-27T00:00:00Z",
        ),
        _sub("sub_future", 6, "jp_m", "2026-07-10T00:00:00Z", created_at="2026-06-25T00:00:00Z"),
        _sub("sub_jp", 7, "jp_m", "2026-02-01T00:00:00Z", coupon_id="JPYOFF"),
    ],
    "invoices": [
        _invoice("1001", 1, "sub_active", "USD", "98.00", "paid", "2026-05-15T00:00:00Z"),
        _invoice("1002", 1, "sub_active", "USD", "98.00", "paid", "2026-06-15T00:00:00Z"),
        _invoice("1003", 7, "sub_jp", "JPY", "4400", "open", "2026-06-01T00:00:00Z"),
        _invoice("1004", 4, "sub_ended", "JPY", "4900", "void", "2026-02-10T00:00:00Z"),
    ],
}
ALL_SUBS = {s["subscription_id"] for s in SCENARIO["subscriptions"]}
CREATED = {s["subscription_id"]: s["created_at"] for s in SCENARIO["subscriptions"]}


@pytest.fixture(autouse=True)
def strict_sdk(monkeypatch):
    """Make the SDK refuse any field its generated schema does not have."""
    monkeypatch.setattr(recurly, "STRICT_MODE", True)


@pytest.fixture
def sandbox(serve_scenario):
    return serve_scenario(SCENARIO, systems=("recurly",))


@pytest.fixture
def client(sandbox):
    return recurly_client(DEFAULT_API_KEY, sandbox.urls["recurly"])


def _ids(items) -> list[str]:
    return [item.id for item in items]


def _raw(resource) -> dict:
    """The JSON the SDK parsed (it keeps it on the response), to check number types."""
    return resource.get_response().body


# --------------------------------------------------------------------------- reads


def test_money_in_major_units_and_intervals_in_days_or_months(client):
    plans = {plan.code: plan for plan in client.list_plans(params={"limit": 200}).items()}
    assert {code: (p.interval_unit, p.interval_length) for code, p in plans.items()} == {
        "pro_m": ("months", 1),
        "pro_y": ("months", 12),
        "jp_m": ("months", 1),
        "team_w": ("days", 14),
    }
    assert plans["pro_m"].currencies[0].unit_amount == 49.0
    assert plans["team_w"].currencies[0].unit_amount == 12.5
    jpy = client.get_plan("code-jp_m")
    assert (jpy.name, jpy.state, jpy.currencies[0].currency) == ("JP_M", "active", "JPY")
    assert _raw(jpy)["currencies"][0]["unit_amount"] == 4900
    assert isinstance(_raw(jpy)["currencies"][0]["unit_amount"], int)  # no decimals in JPY
    assert client.get_plan(jpy.id).code == "jp_m"  # the derived id names it too

    jp_sub = client.get_subscription("sub_jp")
    assert (jp_sub.currency, jp_sub.unit_amount, jp_sub.subtotal) == ("JPY", 4900, 4900)
    usd_sub = client.get_subscription("sub_active")
    assert (usd_sub.currency, usd_sub.unit_amount, usd_sub.quantity, usd_sub.total) == (
        "USD",
        49.0,
        2,
        98.0,
    )


def test_coupons_render_percent_fixed_and_durations(client):
    coupons = {c.code: c for c in client.list_coupons().items()}
    save = coupons["SAVE"]
    assert (save.duration, save.temporal_unit, save.temporal_amount) == ("temporal", "month", 3)
    assert (save.discount.type, save.discount.percent, save.state) == ("percent", 50, "redeemable")
    flat = client.get_coupon("code-FLAT10")
    assert (flat.duration, flat.discount.type) == ("single_use", "fixed")
    assert [(p.currency, p.amount) for p in flat.discount.currencies] == [("USD", 10.0)]
    yen = client.get_coupon(coupons["JPYOFF"].id)
    assert yen.duration == "forever"
    assert _raw(yen)["discount"]["currencies"] == [{"currency": "JPY", "amount": 500}]
    assert client.get_subscription("sub_jp").coupon_redemptions[0].coupon.code == "JPYOFF"


def test_invoices_states_and_amounts(client):
    invoices = {i.number: i for i in client.list_invoices(params={"order": "asc"}).items()}
    assert list(invoices) == ["1004", "1001", "1003", "1002"]  # created_at ascending
    paid, pending, voided = invoices["1002"], invoices["1003"], invoices["1004"]
    assert (paid.state, paid.total, paid.paid, paid.balance) == ("paid", 98.0, 98.0, 0.0)
    assert paid.closed_at == datetime(2026, 6, 15, 0, 5, tzinfo=UTC)
    assert paid.subscription_ids == ["sub_active"]
    assert (pending.state, pending.currency, pending.balance) == ("pending", "JPY", 4400)
    assert (voided.state, voided.paid, voided.balance) == ("voided", 0, 0)
    assert client.get_invoice("number-1003").id == pending.id
    assert client.get_invoice(pending.id).account.code == "cus_7"
    paid_only = client.list_invoices(params={"state": "paid"}).items()
    assert sorted(i.number for i in paid_only) == ["1001", "1002"]
    mine = client.list_account_invoices("code-cus_1", params={"limit": 1}).items()
    assert sorted(i.number for i in mine) == ["1001", "1002"]


def test_subscription_states_at_as_of(client):
    subs = {s.id: s for s in client.list_subscriptions(params={"limit": 200}).items()}
    assert {sid: s.state for sid, s in subs.items()} == {
        "sub_active": "active",
        "sub_week": "active",
        "sub_trial": "active",
        "sub_cancel": "canceled",
        "sub_ended": "expired",
        "sub_paused": "paused",
        "sub_future": "future",
        "sub_jp": "active",
    }
    active = subs["sub_active"]
    assert (active.current_period_started_at, active.current_period_ends_at) == (
        datetime(2026, 6, 15, tzinfo=UTC),
        datetime(2026, 7, 15, tzinfo=UTC),
    )
    assert active.account.code == "cus_1" and active.plan.code == "pro_m"
    assert (active.account.first_name, active.account.last_name) == ("Customer", "Number1")
    trial = subs["sub_trial"]
    assert (trial.trial_started_at, trial.trial_ends_at, trial.current_period_ends_at) == (
        datetime(2026, 6, 20, tzinfo=UTC),
        datetime(2026, 7, 4, tzinfo=UTC),
        datetime(2026, 7, 4, tzinfo=UTC),
    )
    canceled = subs["sub_cancel"]
    assert canceled.canceled_at == datetime(2026, 5, 1, tzinfo=UTC)
    assert canceled.expires_at == datetime(2026, 9, 1, tzinfo=UTC)
    assert subs["sub_ended"].expires_at == datetime(2026, 3, 10, tzinfo=UTC)
    paused = subs["sub_paused"]
    # Two-week periods from 2026-01-05T12:00: the one holding as_of starts 06-22T12:00,
    # and 07-27 is reached after 3 more periods (07-06, 07-20, 08-03).
    assert (paused.paused_at, paused.resume_at, paused.remaining_pause_cycles) == (
        datetime(2026, 6, 1, tzinfo=UTC),
        datetime(2026, 7, 27, tzinfo=UTC),
        3,
    )
    assert subs["sub_future"].activated_at == datetime(2026, 7, 10, tzinfo=UTC)
    by_uuid = client.get_subscription(f"uuid-{active.uuid}")
    assert (by_uuid.id, len(active.uuid)) == ("sub_active", 32)

    account = client.get_account("code-cus_6")
    assert (account.first_name, account.last_name, account.email) == (
        "Mononym",
        None,
        "c6@example.com",
    )
    assert (account.has_future_subscription, account.has_active_subscription) == (True, False)
    assert client.get_account(account.id).code == "cus_6"


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("active", {"sub_active", "sub_week", "sub_trial", "sub_jp"}),
        ("canceled", {"sub_cancel"}),
        ("expired", {"sub_ended"}),
        ("future", {"sub_future"}),
        ("in_trial", {"sub_trial"}),
        ("live", {"sub_active", "sub_week", "sub_trial", "sub_jp", "sub_cancel", "sub_future"}),
    ],
)
def test_state_filter(client, state, expected):
    pager = client.list_subscriptions(params={"state": state, "limit": 2})
    assert set(_ids(pager.items())) == expected
    assert pager.count() == len(expected)  # HEAD with Recurly-Total-Records


# --------------------------------------------------------------------------- paging


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_pagination_to_the_last_page(client, sandbox, order):
    ids = _ids(client.list_subscriptions(params={"limit": 2, "order": order}).items())
    assert len(ids) == len(set(ids)) == len(ALL_SUBS)
    expected = sorted(ALL_SUBS, key=lambda sid: (CREATED[sid], sid), reverse=order == "desc")
    assert ids == expected
    pages = [r for r in sandbox.emulator("recurly").request_log if r["path"] == "/subscriptions"]
    assert len(pages) == 4
    # The pager sends `next` verbatim: every later page carries the filters and a cursor.
    assert all(p["params"]["order"] == order and p["params"]["limit"] == "2" for p in pages)
    assert ["cursor" in p["params"] for p in pages] == [False, True, True, True]


def test_time_window_is_inclusive_and_carried_in_next(client, sandbox):
    params = {
        "limit": 2,
        "order": "asc",
        "sort": "created_at",
        "begin_time": "2025-09-01T00:00:00Z",  # sub_cancel's created_at, exactly
        "end_time": datetime(2026, 6, 25),  # sub_future's; naive means UTC
    }
    ids = _ids(client.list_subscriptions(params=params).items())
    assert ids == ["sub_cancel", "sub_week", "sub_paused", "sub_jp", "sub_trial", "sub_future"]
    later = [r for r in sandbox.emulator("recurly").request_log if "cursor" in r["params"]]
    assert len(later) == 2
    assert all(r["params"]["begin_time"] == params["begin_time"] for r in later)
    assert all(r["params"]["end_time"] == "2026-06-25T00:00:00" for r in later)
    descending = client.list_subscriptions(params={**params, "order": "desc"}).items()
    assert _ids(descending) == ids[::-1]
    assert client.list_subscriptions(params=params).count() == 6


def test_account_scoped_subscriptions_and_ids_filter(client):
    mine = client.list_account_subscriptions("code-cus_1", params={"limit": 1, "order": "asc"})
    assert _ids(mine.items()) == ["sub_active", "sub_week"]
    picked = client.list_subscriptions(params={"ids": ["sub_jp", "sub_trial", "nope"]}).items()
    assert sorted(_ids(picked)) == ["sub_jp", "sub_trial"]
    with pytest.raises(errors.NotFoundError):
        client.list_account_subscriptions("code-nobody").first()


def test_an_update_while_paging_shows_up_in_the_next_updated_at_run(client, sandbox):
    params = {"limit": 2, "sort": "updated_at", "order": "asc"}
    items = client.list_subscriptions(params=params).items()
    first_page = [next(items), next(items)]
    sandbox.clock.set(AS_OF + timedelta(hours=2))
    written_at = sandbox.clock.now()
    client.cancel_subscription("sub_jp")
    rest = [sub.id for sub in items]
    seen = _ids(first_page) + rest
    assert set(seen) == ALL_SUBS  # the moved record may show twice, none is lost
    assert seen[-1] == "sub_jp"  # it moved behind the cursor, to the end
    rerun = client.list_subscriptions(
        params={**params, "begin_time": (written_at - timedelta(seconds=1)).isoformat()}
    ).items()
    again = list(rerun)
    assert [(s.id, s.updated_at, s.state) for s in again] == [("sub_jp", written_at, "canceled")]


# --------------------------------------------------------------------------- writes


def test_cancel_reactivate_and_terminate(client, sandbox):
    canceled = client.cancel_subscription("sub_active", body={"timeframe": "term_end"})
    assert (canceled.state, canceled.canceled_at) == ("canceled", AS_OF)
    assert canceled.expires_at == canceled.current_term_ends_at == datetime(2026, 7, 15, tzinfo=UTC)
    assert client.get_subscription("sub_active").updated_at == AS_OF

    reactivated = client.reactivate_subscription("sub_active")
    assert (reactivated.state, reactivated.canceled_at, reactivated.expires_at) == (
        "active",
        None,
        None,
    )

    trial = client.cancel_subscription("sub_trial", body={"timeframe": "bill_date"})
    assert (trial.state, trial.expires_at) == ("canceled", datetime(2026, 7, 4, tzinfo=UTC))

    sandbox.clock.set(AS_OF + timedelta(days=1))
    ended = client.terminate_subscription("sub_active", params={"refund": "none"})
    assert (ended.state, ended.expires_at) == ("expired", AS_OF + timedelta(days=1))
    assert sandbox.emulator("recurly").request_log[-1]["params"] == {"refund": "none"}
    assert client.get_subscription("sub_active").state == "expired"

    future = client.cancel_subscription("sub_future")
    assert future.state == "failed"  # a future subscription canceled never starts


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda c: c.cancel_subscription("sub_ended"), "Only active and future"),
        (lambda c: c.reactivate_subscription("sub_active"), "Only canceled"),
        (lambda c: c.terminate_subscription("sub_ended"), "Cannot expire an inactive"),
        (
            lambda c: c.pause_subscription("sub_cancel", {"remaining_pause_cycles": 1}),
            "cannot be paused",
        ),
        (lambda c: c.resume_subscription("sub_active"), "Unable to resume"),
        (lambda c: c.create_subscription_change("sub_ended", {"plan_code": "pro_y"}), "Expired"),
    ],
)
def test_invalid_transitions_are_refused(client, write, message):
    before = client.get_subscription("sub_ended").updated_at
    with pytest.raises(errors.ValidationError) as refused:
        write(client)
    assert refused.value.error.type == "validation"
    assert message in refused.value.error.message
    assert refused.value.error.get_response().status == 422
    assert client.get_subscription("sub_ended").updated_at == before


def test_pause_at_next_renewal_then_resume(client, sandbox):
    paused = client.pause_subscription("sub_active", {"remaining_pause_cycles": 2})
    assert paused.state == "active"  # Recurly pauses at the next renewal
    assert (paused.paused_at, paused.resume_at, paused.remaining_pause_cycles) == (
        datetime(2026, 7, 15, tzinfo=UTC),
        datetime(2026, 9, 15, tzinfo=UTC),
        2,
    )
    sandbox.clock.set(datetime(2026, 7, 20, tzinfo=UTC))
    during = client.get_subscription("sub_active")
    assert (during.state, during.remaining_pause_cycles) == ("paused", 2)
    resumed = client.resume_subscription("sub_active")
    assert (resumed.state, resumed.paused_at, resumed.updated_at) == (
        "active",
        None,
        datetime(2026, 7, 20, tzinfo=UTC),
    )

    pending = client.pause_subscription("sub_jp", {"remaining_pause_cycles": 1})
    assert pending.paused_at == datetime(2026, 8, 1, tzinfo=UTC)
    dropped = client.pause_subscription("sub_jp", {"remaining_pause_cycles": 0})
    assert (dropped.state, dropped.paused_at, dropped.resume_at) == ("active", None, None)
    with pytest.raises(errors.ValidationError):
        client.pause_subscription("sub_jp", {})


def test_next_bill_date_extends_the_term(client):
    extended = client.update_subscription("sub_active", {"next_bill_date": "2026-08-15T00:00:00Z"})
    assert (extended.current_period_started_at, extended.current_period_ends_at) == (
        datetime(2026, 6, 15, tzinfo=UTC),
        datetime(2026, 8, 15, tzinfo=UTC),
    )
    assert client.get_subscription("sub_active").current_term_ends_at == datetime(
        2026, 8, 15, tzinfo=UTC
    )
    with pytest.raises(errors.ValidationError):
        client.update_subscription("sub_active", {"next_bill_date": "2026-01-01T00:00:00Z"})


def test_plan_change_applies_at_once(client):
    change = client.create_subscription_change(
        "sub_active", {"plan_code": "pro_y", "timeframe": "now"}
    )
    assert type(change).__name__ == "SubscriptionChange"
    assert (change.subscription_id, change.plan.code, change.unit_amount) == (
        "sub_active",
        "pro_y",
        490.0,
    )
    assert change.get_response().status == 201
    after = client.get_subscription("sub_active")
    assert (after.plan.code, after.unit_amount, after.total, after.updated_at) == (
        "pro_y",
        490.0,
        980.0,
        AS_OF,
    )

    by_id = client.get_plan("code-pro_m").id
    back = client.create_subscription_change(
        "sub_active", {"plan_id": by_id, "timeframe": "renewal"}
    )
    assert (back.plan.code, back.activated) == ("pro_m", False)
    pending = client.get_subscription("sub_active")  # on pro_y until the renewal
    assert (pending.plan.code, pending.pending_change.plan.code) == ("pro_y", "pro_m")
    assert pending.pending_change.activate_at == pending.current_period_ends_at
    client.create_subscription_change("sub_active", {"plan_code": "pro_m", "timeframe": "now"})
    assert client.get_subscription("sub_active").pending_change is None  # replaced
    with pytest.raises(errors.ValidationError):  # no JPY price on a USD subscription
        client.create_subscription_change("sub_active", {"plan_code": "jp_m"})
    with pytest.raises(errors.NotFoundError):
        client.create_subscription_change("sub_active", {"plan_code": "gold"})


# --------------------------------------------------------------------------- add-ons


def _add_on(code: str, model: str, amount: str = "0", tiers=None, usage="licensed") -> dict:
    """A scenario add-on record: monthly, in USD, like pro_m (and basic_m below)."""
    return _plan(code, "USD", amount, "month") | {
        "kind": "addon",
        "usage_type": usage,
        "pricing_model": model,
        "tiers": tiers,
    }


def _tiers(*rows: tuple) -> list[dict]:
    return [{"up_to": u, "unit_amount": unit, "flat_amount": flat} for u, unit, flat in rows]


ADD_ONS = [
    _add_on("seats", "per_unit", "7.00"),
    _add_on("graduated", "tiered", tiers=_tiers((5, "10.00", "0"), (None, "6.00", "0"))),
    _add_on(
        "steps",
        "stairstep",
        tiers=_tiers((10, "0", "15.00"), (50, "0", "40.00"), (None, "0", "90.00")),
    ),
    _add_on("volume", "volume", tiers=_tiers((10, "9.00", "0"), (None, "7.00", "0"))),
    _add_on("api", "per_unit", "0.01", usage="metered"),
]
ACTIVE_ITEMS = [("seats", 3), ("graduated", 7), ("steps", 12), ("api", 1)]


@pytest.fixture
def add_on_client(serve_scenario):
    """SCENARIO with add-ons on its monthly USD plans, a second such plan (basic_m), and
    sub_active (pro_m x 2) carrying four add-ons, sub_trial one volume add-on."""
    doc = {**SCENARIO, "plans": [*SCENARIO["plans"], _plan("basic_m", "USD", "19.00", "month")]}
    doc["plans"] += ADD_ONS
    items = {"sub_active": ACTIVE_ITEMS, "sub_trial": [("volume", 12)]}
    doc["subscriptions"] = [
        sub | {"items": [{"plan_id": p, "quantity": q} for p, q in items[sub["subscription_id"]]]}
        if sub["subscription_id"] in items
        else sub
        for sub in SCENARIO["subscriptions"]
    ]
    sandbox = serve_scenario(doc, systems=("recurly",))
    return recurly_client(DEFAULT_API_KEY, sandbox.urls["recurly"])


def test_add_ons_are_served_under_each_plan_of_their_period_never_as_plans(add_on_client):
    client = add_on_client
    codes = {plan.code for plan in client.list_plans(params={"limit": 200}).items()}
    assert codes == {"pro_m", "pro_y", "jp_m", "team_w", "basic_m"}
    with pytest.raises(errors.NotFoundError):
        client.get_plan("code-seats")
    offered = {
        plan: [a.code for a in client.list_plan_add_ons(f"code-{plan}").items()]
        for plan in ("pro_m", "basic_m", "pro_y", "jp_m")
    }
    every = sorted(a["plan_id"] for a in ADD_ONS)
    assert {plan: sorted(found) for plan, found in offered.items()} == {
        "pro_m": every,
        "basic_m": every,
        "pro_y": [],
        "jp_m": [],
    }
    steps = client.get_plan_add_on("code-pro_m", "code-steps")
    assert (steps.tier_type, steps.add_on_type, steps.currencies) == ("stairstep", "fixed", [])
    # A stairstep tier's one price is the whole step's; the last tier has Recurly's ceiling.
    assert [(t.ending_quantity, t.currencies[0].unit_amount) for t in steps.tiers] == [
        (10, 15.0),
        (50, 40.0),
        (999999999, 90.0),
    ]
    assert client.get_plan_add_on("code-pro_m", steps.id).code == "steps"
    assert client.get_plan_add_on("code-basic_m", "code-steps").id != steps.id
    api = client.get_plan_add_on("code-pro_m", "code-api")
    assert (api.add_on_type, api.usage_type, api.currencies[0].unit_amount) == (
        "usage",
        "price",
        0.01,
    )
    with pytest.raises(errors.NotFoundError):
        client.get_plan_add_on("code-pro_y", "code-seats")


def test_a_subscription_carries_its_add_ons_and_bills_the_fixed_ones(add_on_client):
    sub = add_on_client.get_subscription("sub_active")
    assert [(a.add_on.code, a.quantity) for a in sub.add_ons] == ACTIVE_ITEMS
    seats, graduated, steps, api = sub.add_ons
    assert (seats.tier_type, seats.unit_amount, seats.tiers) == ("flat", 7.0, [])
    assert (graduated.tier_type, graduated.unit_amount) == ("tiered", None)
    assert [(t.ending_quantity, t.unit_amount) for t in graduated.tiers] == [
        (5, 10.0),
        (999999999, 6.0),
    ]
    assert [t.unit_amount for t in steps.tiers] == [15.0, 40.0, 90.0]
    assert (api.add_on.add_on_type, api.usage_calculation_type) == ("usage", "cumulative")
    # 3 x 7 + (5 x 10 + 2 x 6) + the 11-50 step (40); usage bills in arrears: 0.
    assert (sub.add_ons_total, sub.subtotal, sub.total) == (123.0, 98.0 + 123.0, 221.0)
    trial = add_on_client.get_subscription("sub_trial")
    assert (trial.add_ons_total, trial.subtotal) == (84.0, 49.0 + 84.0)  # 12 x 7: volume


def test_a_plan_change_swaps_the_plan_and_keeps_the_add_ons_it_offers(add_on_client):
    client = add_on_client
    change = client.create_subscription_change("sub_active", {"plan_code": "basic_m"})
    assert [a.add_on.code for a in change.add_ons] == [code for code, _ in ACTIVE_ITEMS]
    after = client.get_subscription("sub_active")
    assert (after.plan.code, after.quantity, after.unit_amount) == ("basic_m", 2, 19.0)
    assert [(a.add_on.code, a.quantity) for a in after.add_ons] == ACTIVE_ITEMS
    assert after.subtotal == 38.0 + 123.0
    # A yearly plan offers none of these monthly add-ons: they cannot stay.
    client.create_subscription_change("sub_active", {"plan_code": "pro_y"})
    assert client.get_subscription("sub_active").add_ons == []


def test_coupon_redemption_at_account_and_subscription_level(client):
    """SAVE is redeemed at account level (Recurly's default): it discounts every charge of
    the account, is listed under the account and not on any subscription. FLAT10 is a
    subscription-level coupon: on its subscription, and in the account's list with it."""
    assert client.get_account("code-cus_1").updated_at < AS_OF
    redemption = client.create_coupon_redemption(
        "code-cus_1", {"coupon_id": "code-SAVE", "currency": "USD"}
    )
    assert type(redemption).__name__ == "CouponRedemption"
    assert (
        redemption.coupon.code,
        redemption.coupon.redemption_resource,
        redemption.state,
        redemption.account.code,
        redemption.subscription_id,
    ) == ("SAVE", "account", "active", "cus_1", None)
    for sub_id in ("sub_active", "sub_week"):
        sub = client.get_subscription(sub_id)
        assert sub.coupon_redemptions == []
        assert sub.updated_at == AS_OF
    assert client.get_account("code-cus_1").updated_at == AS_OF  # incremental reads see it
    # One redemption per subscription it came with (sub_active, then sub_week), both
    # account level; the answer is the first one's.
    listed = list(client.list_account_coupon_redemptions("code-cus_1").items())
    active = list(client.list_active_coupon_redemptions("code-cus_1").items())
    assert [(r.coupon.code, r.subscription_id) for r in listed] == [("SAVE", None)] * 2
    assert redemption.id in {r.id for r in listed} == {r.id for r in active}

    flat_id = client.get_coupon("code-FLAT10").id
    one = client.create_coupon_redemption(
        "code-cus_3", {"coupon_id": flat_id, "subscription_id": "sub_cancel"}
    )
    assert one.subscription_id == "sub_cancel"
    on_sub = client.get_subscription("sub_cancel").coupon_redemptions
    assert [(r.id, r.coupon.code) for r in on_sub] == [(one.id, "FLAT10")]
    listed = list(client.list_account_coupon_redemptions("code-cus_3").items())
    assert [(r.id, r.subscription_id) for r in listed] == [(one.id, "sub_cancel")]
    with pytest.raises(errors.NotFoundError):
        client.create_coupon_redemption("code-cus_1", {"coupon_id": "code-NOPE"})
    with pytest.raises(errors.ValidationError):  # cus_4's only subscription has ended
        client.create_coupon_redemption("code-cus_4", {"coupon_id": "code-SAVE"})
    assert client.get_subscription("sub_ended").coupon_redemptions == []


# --------------------------------------------------------------------------- protocol


def test_headers_the_sdk_reads(client):
    sub = client.get_subscription("sub_active")
    response = sub.get_response()
    assert response.content_type == "application/vnd.recurly.v2021-02-25"
    assert response.request_id
    assert response._Response__headers["Recurly-Version"] == "recurly.v2021-02-25"
    assert response.rate_limit == response.rate_limit_remaining == 2000


def test_wrong_key_is_unauthorized(sandbox):
    stranger = recurly_client("wrong_key", sandbox.urls["recurly"])
    with pytest.raises(errors.UnauthorizedError) as refused:
        stranger.get_subscription("sub_active")
    assert refused.value.error.type == "unauthorized"


def test_unknown_ids_are_not_found(client):
    with pytest.raises(errors.NotFoundError) as missing:
        client.get_subscription("sub_missing")
    assert missing.value.error.message == "Couldn't find Subscription with id = sub_missing"
    with pytest.raises(errors.NotFoundError) as missing_account:
        client.get_account("code-cus_missing")
    assert missing_account.value.error.message == "Couldn't find Account with code = cus_missing"
    with pytest.raises(errors.NotFoundError):
        client.get_invoice("number-9999")


def test_rate_limit_gives_the_sdk_its_error_and_reset(client, sandbox):
    sandbox.emulator("recurly").faults = FaultConfig(script=deque(["429"]), retry_after=7)
    with pytest.raises(errors.RateLimitedError) as limited:
        client.list_subscriptions().first()
    response = limited.value.error.get_response()
    assert (response.status, response.rate_limit_remaining) == (429, 0)
    waited = response.rate_limit_reset - datetime.now(UTC).replace(tzinfo=None)
    assert timedelta(seconds=5) < waited <= timedelta(seconds=8)
    assert response._Response__headers["Retry-After"] == "7"
    assert client.list_subscriptions().first() is not None  # the next request goes through


def test_bad_parameters_and_unsupported_versions(client, monkeypatch):
    with pytest.raises(errors.BadRequestError):
        next(client.list_subscriptions(params={"limit": 500}).pages())
    with pytest.raises(errors.BadRequestError):
        client.list_subscriptions(params={"state": "sleeping"}).first()
    monkeypatch.setattr(client, "api_version", lambda: "v2019-10-10")
    with pytest.raises(errors.InvalidApiVersionError) as refused:
        client.get_subscription("sub_active")
    assert refused.value.error.get_response().status == 406


def test_idempotency_key_replays_a_write_once(client, sandbox):
    headers = {"Idempotency-Key": "cancel-sub_active-1"}
    first = client.cancel_subscription(
        "sub_active", body={"timeframe": "term_end"}, headers=headers
    )
    again = client.cancel_subscription(
        "sub_active", body={"timeframe": "term_end"}, headers=headers
    )
    assert first.state == again.state == "canceled"
    # The replay is the first answer, request id included (the SDK hides Idempotency-Prior).
    assert again.get_response().request_id == first.get_response().request_id
    writes = [e for e in sandbox.emulator("recurly").request_log if e["method"] == "PUT"]
    assert [e["idempotency_key"] for e in writes] == ["cancel-sub_active-1"] * 2
    with pytest.raises(errors.ValidationError):  # a new key: the real transition check
        client.cancel_subscription("sub_active", body={"timeframe": "term_end"})
