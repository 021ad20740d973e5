"""Write-backs without a network: actions derived from hand-made marts in an in-memory
DuckDB, applied through a scripted fake writer, the ledger checked after every run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from billing_clients.retries import Classifier, RetryPolicy
from billing_clients.systems import BILLING_SYSTEMS as SYSTEMS
from writebacks.catalog import Catalog, load_catalog
from writebacks.derive import action_id, derive_actions
from writebacks.ledger import TABLE, Ledger
from writebacks.runner import RunSummary, idempotency_key, run_writebacks
from writebacks.systems.base import Action, BillingWriter, WriteRequest

AT = datetime(2026, 6, 1, 12, tzinfo=UTC)  # when the visitors act
SINCE = "2026-01-01T00:00:00Z"
MAX_ATTEMPTS = 3
POLICY = RetryPolicy(max_attempts=MAX_ATTEMPTS, base_delay=0, sleep=lambda s: None)

OFFERS = {
    "pause_2m": {"type": "pause", "duration": 2, "interval": "month"},
    "save50": {"type": "discount", "coupon": "SAVE50", "chargebee": {"coupon": "cb-save50"}},
    "extend_14d": {"type": "extension", "days": 14},
    "downgrade": {
        "type": "plan_change",
        "stripe": {"plan": "price_basic"},
        "recurly": {"plan": "basic"},
        "chargebee": {"plan": "Basic-USD"},
    },
    "survey_gift": {"type": "custom"},
}
OFFER_TYPES = {offer_id: body["type"] for offer_id, body in OFFERS.items()}


# --------------------------------------------------------------------------- catalog


def catalog_maker(folder: Path):
    """`make(mode=..., offers=..., stripe={...})`: a catalog file in `folder`, loaded;
    every system in `mode` from SINCE unless its own settings say otherwise."""

    def make(mode: str = "live", offers: dict | None = None, **systems: dict) -> Catalog:
        settings = {"mode": mode, **({"since": SINCE} if mode == "live" else {})}
        document = {
            "billing_systems": {s: {**settings, **systems.get(s, {})} for s in SYSTEMS},
            "offers": OFFERS if offers is None else offers,
        }
        path = folder / "writebacks.yml"
        path.write_text(yaml.safe_dump(document))
        return load_catalog(path)

    return make


@pytest.fixture
def make_catalog(tmp_path):
    return catalog_maker(tmp_path)


# --------------------------------------------------------------------------- the marts

_MARTS = """
create schema marts;
create table marts.fct_exit_sessions (
    session_id varchar, episode_id varchar, billing_system varchar, billing_id varchar,
    action varchar, action_at timestamptz, offer_id varchar, offer_type varchar,
    started_at timestamptz);
create table marts.fct_exit_episodes (
    episode_id varchar, subscription_id varchar, customer_id varchar, validated_at timestamptz,
    billing_system varchar);
create table marts.dim_subscriptions (
    billing_system varchar, subscription_id varchar, customer_id varchar, currency varchar,
    activated_at timestamptz, ended_at timestamptz, current_period_end timestamptz,
    mrr decimal(38, 10));
"""


class Warehouse:
    """Minimal marts: one episode per session, subscriptions as given."""

    def __init__(self) -> None:
        self.db = duckdb.connect()
        self.db.execute(_MARTS)

    def subscription(
        self,
        subscription_id: str,
        *,
        system: str = "stripe",
        customer: str = "cus_1",
        activated_at: datetime = AT - timedelta(days=200),
        ended_at: datetime | None = None,
        current_period_end: datetime | None = AT + timedelta(days=10),
        currency: str = "USD",
        mrr: str | None = "10",
    ) -> None:
        values = [system, subscription_id, customer, currency, activated_at, ended_at]
        self.db.execute(
            "insert into marts.dim_subscriptions values (?, ?, ?, ?, ?, ?, ?, ?)",
            [*values, current_period_end, mrr],
        )

    def session(
        self,
        session_id: str,
        action: str,
        *,
        subscription: str = "sub_1",
        system: str = "stripe",
        customer: str = "cus_1",
        offer_id: str | None = None,
        offer_type: str | None = None,
        action_at: datetime = AT,
        validated_at: datetime | None = None,
        billing_id: str | None = None,
    ) -> str:
        """An exit session (landed a minute before acting, its billing id the
        subscription's unless given); returns the action id it asks for on `subscription`."""
        episode = f"ep_{session_id}"
        offer_type = offer_type or OFFER_TYPES.get(offer_id)
        self.db.execute(
            "insert into marts.fct_exit_sessions values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                *[session_id, episode, system, billing_id or subscription, action, action_at],
                *[offer_id, offer_type, action_at - timedelta(minutes=1)],
            ],
        )
        self.db.execute(
            "insert into marts.fct_exit_episodes values (?, ?, ?, ?, ?)",
            [episode, subscription, customer, validated_at, system],
        )
        return action_id(session_id, action, subscription)

    def accepted(self, session_id: str, offer_id: str, **options: Any) -> str:
        return self.session(session_id, "offer_accepted", offer_id=offer_id, **options)

    def canceled(self, session_id: str, **options: Any) -> str:
        return self.session(session_id, "canceled", **options)

    def forget(self, session_id: str) -> None:
        self.db.execute("delete from marts.fct_exit_sessions where session_id = ?", [session_id])

    def ledger(self) -> dict[str, dict[str, Any]]:
        """The ledger's rows by action id, every column."""
        cursor = self.db.execute(f"select * from {TABLE}")
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
        return {row["action_id"]: row for row in rows}


@pytest.fixture
def warehouse() -> Warehouse:
    return Warehouse()


def derived(warehouse: Warehouse, catalog: Catalog) -> dict[str, Any]:
    """derive_actions' rows by action id."""
    return {row.action_id: row for row in derive_actions(warehouse.db, catalog)}


# --------------------------------------------------------------------------- the fake writer


class Transient(Exception):
    """A 503 or a dropped connection: worth retrying."""


class Permanent(Exception):
    """A 4xx: invalid coupon, no such subscription."""


@dataclass
class Script:
    """One subscription as the fake billing system holds it."""

    status: str = "active"
    holds: set[str] = field(default_factory=set)  # action types already in place
    errors: list[Exception] = field(default_factory=list)  # raised by send, in turn


class FakeWriter(BillingWriter):
    system = "stripe"
    classifier = Classifier(
        retry_after=lambda exc: None, transient=lambda exc: isinstance(exc, Transient)
    )

    def __init__(self) -> None:
        self.subscriptions: dict[str, Script] = {}
        self.calls: list[tuple[str, ...]] = []
        self.sent = 0

    def script(self, subscription_id: str, **state: Any) -> Script:
        self.subscriptions[subscription_id] = Script(**state)
        return self.subscriptions[subscription_id]

    def _state(self, subscription_id: str) -> Script:
        return self.subscriptions.setdefault(subscription_id, Script())

    def read(self, subscription_id: str) -> dict[str, Any]:
        self.calls.append(("read", subscription_id))
        state = self._state(subscription_id)
        return {"id": subscription_id, "status": state.status, "holds": set(state.holds)}

    def request(self, action: Action, current: dict[str, Any] | None) -> WriteRequest:
        path = f"/v1/subscriptions/{action.subscription_id}/{action.action_type}"
        return WriteRequest(action.action_type, "POST", path, dict(action.parameters))

    def ended(self, current: dict[str, Any]) -> str | None:
        return current["status"] if current["status"] == "canceled" else None

    def holds(self, action: Action, current: dict[str, Any]) -> str | None:
        return f"{action.action_type} in place" if action.action_type in current["holds"] else None

    def send(self, request: WriteRequest, idempotency_key: str) -> str | None:
        subscription_id = request.path.split("/")[3]
        self.calls.append(("send", subscription_id, idempotency_key))
        state = self._state(subscription_id)
        if state.errors:
            raise state.errors.pop(0)
        state.holds.add(request.operation)
        self.sent += 1
        return f"req_{self.sent}"

    def error_message(self, exc: BaseException) -> str:
        return f"Fake API {type(exc).__name__}: {exc}"

    def sends(self) -> list[str]:
        return [call[1] for call in self.calls if call[0] == "send"]


@pytest.fixture
def writer() -> FakeWriter:
    return FakeWriter()


def run(warehouse: Warehouse, catalog: Catalog, writer: FakeWriter, **options) -> RunSummary:
    return run_writebacks(warehouse.db, catalog, lambda system: writer, policy=POLICY, **options)


# =========================================================================== derive


@pytest.mark.parametrize(
    ("validated_at", "anchor"),
    [
        (None, AT),
        (AT - timedelta(days=3), AT),
        (AT + timedelta(days=2, hours=3), AT + timedelta(days=2, hours=3)),
    ],
    ids=["not-validated", "synced-before", "synced-after"],
)
def test_pause_resumes_duration_after_the_later_of_action_and_sync(
    warehouse, make_catalog, validated_at, anchor
):
    warehouse.subscription("sub_1")
    wanted = warehouse.accepted("s1", "pause_2m", validated_at=validated_at)
    [row] = derived(warehouse, make_catalog()).values()
    assert row.action_id == wanted
    assert (row.status, row.action_type, row.subscription_id) == ("pending", "pause", "sub_1")
    resumes = anchor.replace(month=anchor.month + 2)
    # No `cycles` unless the catalog sets them: Recurly's writer counts the duration in
    # the plan's billing cycles.
    assert row.parameters == {
        "duration": 2,
        "interval": "month",
        "resumes_at": resumes.isoformat(),
    }


@pytest.mark.parametrize(
    ("period_end", "start"),
    [
        (AT + timedelta(days=10), AT + timedelta(days=10)),
        (AT - timedelta(days=1), AT),  # term already over: the days count from now
        (None, AT),
    ],
    ids=["term-running", "term-over", "no-term"],
)
def test_extension_adds_days_to_the_current_term(warehouse, make_catalog, period_end, start):
    warehouse.subscription("sub_1", current_period_end=period_end)
    warehouse.accepted("s1", "extend_14d")
    [row] = derived(warehouse, make_catalog()).values()
    assert row.action_type == "extension"
    assert row.parameters == {"days": 14, "until": (start + timedelta(days=14)).isoformat()}


@pytest.mark.parametrize(
    ("system", "offer_id", "parameters"),
    [
        ("stripe", "save50", {"coupon": "SAVE50"}),
        ("chargebee", "save50", {"coupon": "cb-save50"}),
        ("stripe", "downgrade", {"plan": "price_basic"}),
        ("recurly", "downgrade", {"plan": "basic"}),
        ("chargebee", "downgrade", {"plan": "Basic-USD"}),
    ],
)
def test_discount_and_plan_change_use_the_systems_own_ids(
    warehouse, make_catalog, system, offer_id, parameters
):
    warehouse.subscription("sub_1", system=system)
    warehouse.accepted("s1", offer_id, system=system)
    [row] = derived(warehouse, make_catalog()).values()
    assert (row.billing_system, row.action_type) == (system, OFFER_TYPES[offer_id])
    assert row.parameters == parameters


@pytest.mark.parametrize(("currency", "plan"), [("EUR", "basic-eur"), ("USD", "basic-usd")])
def test_a_plan_per_currency_follows_the_subscription(warehouse, make_catalog, currency, plan):
    offers = {
        "downgrade": {"type": "plan_change", "plan": {"USD": "basic-usd", "EUR": "basic-eur"}}
    }
    warehouse.subscription("sub_1", currency=currency)
    warehouse.accepted("s1", "downgrade")
    [row] = derived(warehouse, make_catalog(offers=offers)).values()
    assert (row.status, row.parameters) == ("pending", {"plan": plan})


def test_no_plan_in_the_subscriptions_currency_is_a_failed_action(warehouse, make_catalog):
    offers = {"downgrade": {"type": "plan_change", "plan": {"USD": "basic-usd"}}}
    warehouse.subscription("sub_1", currency="JPY")
    warehouse.accepted("s1", "downgrade")
    [row] = derived(warehouse, make_catalog(offers=offers)).values()
    assert row.status == "failed"
    assert "no target plan for JPY subscriptions (offers.downgrade.stripe in" in row.error


def test_custom_offer_and_other_actions_ask_for_nothing(warehouse, make_catalog):
    warehouse.subscription("sub_1")
    warehouse.accepted("s1", "survey_gift")
    warehouse.session("s2", "deflected")
    warehouse.session("s3", "abandoned")
    assert derived(warehouse, make_catalog()) == {}


@pytest.mark.parametrize(
    ("system", "cancel", "parameters"),
    [
        (
            "stripe",
            {"when": "immediately", "prorate": True},
            {"when": "immediately", "scope": "subscription", "prorate": True, "invoice_now": False},
        ),
        (
            "recurly",
            {"when": "immediately", "refund": "full"},
            {"when": "immediately", "scope": "subscription", "refund": "full"},
        ),
        ("chargebee", {}, {"when": "period_end", "scope": "subscription"}),
    ],
)
def test_cancel_carries_the_systems_cancel_options(
    warehouse, make_catalog, system, cancel, parameters
):
    warehouse.subscription("sub_1", system=system)
    wanted = warehouse.canceled("s1", system=system)
    catalog = make_catalog(**{system: {"cancel": cancel}})
    [row] = derived(warehouse, catalog).values()
    assert (row.action_id, row.action_type, row.offer_id) == (wanted, "cancel", None)
    assert row.parameters == parameters


def test_customer_scope_cancels_every_subscription_in_service_then(warehouse, make_catalog):
    warehouse.subscription("sub_a")
    warehouse.subscription("sub_b", activated_at=AT - timedelta(days=5))
    warehouse.subscription("sub_old", ended_at=AT - timedelta(days=1))
    warehouse.subscription("sub_later", activated_at=AT + timedelta(days=1))
    warehouse.subscription("sub_other", customer="cus_2")
    warehouse.subscription("sub_elsewhere", system="recurly")  # same customer id, other system
    warehouse.canceled("s1", subscription="sub_a")
    catalog = make_catalog(stripe={"cancel": {"scope": "customer"}})
    rows = derived(warehouse, catalog)
    assert sorted(row.subscription_id for row in rows.values()) == ["sub_a", "sub_b"]
    assert set(rows) == {action_id("s1", "canceled", s) for s in ("sub_a", "sub_b")}
    assert all(row.parameters["scope"] == "customer" for row in rows.values())


def test_customer_scope_leaves_offers_to_the_matched_subscription(warehouse, make_catalog):
    warehouse.subscription("sub_a")
    warehouse.subscription("sub_b")
    warehouse.accepted("s1", "save50", subscription="sub_a")
    catalog = make_catalog(stripe={"cancel": {"scope": "customer"}})
    assert [row.subscription_id for row in derived(warehouse, catalog).values()] == ["sub_a"]


def test_no_matching_subscription_is_a_failed_action(warehouse, make_catalog):
    warehouse.canceled("s1", subscription="sub_unknown", customer="cus_9")
    [row] = derived(warehouse, make_catalog()).values()
    assert row.action_id == action_id("s1", "canceled", None)
    assert (row.status, row.subscription_id, row.customer_id) == ("failed", None, "cus_9")
    assert row.error.startswith("no stripe subscription matches billing id 'sub_unknown'")
    assert "retry failed actions" in row.error and "fix the page's billing id" in row.error


def test_offer_missing_from_the_catalog_is_a_failed_action(warehouse, make_catalog):
    warehouse.subscription("sub_1")
    warehouse.accepted("s1", "save70", offer_type="discount")
    catalog = make_catalog()
    [row] = derived(warehouse, catalog).values()
    assert (row.status, row.action_type, row.parameters) == ("failed", "discount", {})
    assert f"offer 'save70' is not in the write-back catalog {catalog.path}" in row.error


@pytest.mark.parametrize(
    "stripe",
    [{"mode": "off"}, {"since": (AT + timedelta(seconds=1)).isoformat()}],
    ids=["system-off", "before-since"],
)
def test_sessions_not_enabled_ask_for_nothing(warehouse, make_catalog, stripe):
    warehouse.subscription("sub_1")
    warehouse.subscription("sub_2", system="recurly")
    warehouse.canceled("s1")
    wanted = warehouse.canceled("s2", system="recurly", subscription="sub_2")
    assert set(derived(warehouse, make_catalog(stripe=stripe))) == {wanted}


def test_action_ids_are_deterministic_and_distinct(warehouse, make_catalog):
    warehouse.subscription("sub_1")
    warehouse.subscription("sub_2")
    warehouse.canceled("s1")
    warehouse.accepted("s2", "save50")
    warehouse.accepted("s3", "save50", subscription="sub_2")
    catalog = make_catalog()
    first, again = derived(warehouse, catalog), derived(warehouse, catalog)
    assert list(first) == list(again)
    assert len(first) == 3
    assert all(a.startswith("wb_") and len(a) == 27 for a in first)
    assert action_id("s1", "canceled", "sub_1") == action_id("s1", "canceled", "sub_1")
    assert (
        len(
            {
                action_id(*key)
                for key in [
                    ("s1", "canceled", "sub_1"),
                    ("s1", "canceled", "sub_2"),
                    ("s1", "offer_accepted", "sub_1"),
                    ("s2", "canceled", "sub_1"),
                ]
            }
        )
        == 4
    )


# =========================================================================== runner


def test_dry_run_sends_nothing_and_records_the_request(warehouse, make_catalog, writer):
    warehouse.subscription("sub_1")
    cancel = warehouse.canceled("s1")
    discount = warehouse.accepted("s2", "save50")
    summary = run(warehouse, make_catalog(mode="dry_run"), writer)
    assert writer.calls == []
    assert summary.count("dry_run") == 2
    ledger = warehouse.ledger()
    for wanted, kind, params in [
        (
            cancel,
            "cancel",
            {"when": "period_end", "scope": "subscription", "prorate": False, "invoice_now": False},
        ),
        (discount, "discount", {"coupon": "SAVE50"}),
    ]:
        row = ledger[wanted]
        path = f"/v1/subscriptions/sub_1/{kind}"
        assert (row["status"], row["mode"], row["attempts"]) == ("dry_run", "dry_run", 0)
        assert row["reason"] == f"dry run: would send POST {path}"
        assert json.loads(row["request"]) == {"method": "POST", "path": path, "params": params}
        assert row["applied_at"] is None


def test_live_applies_with_the_billing_request_id(warehouse, make_catalog, writer):
    warehouse.subscription("sub_1")
    wanted = warehouse.accepted("s1", "save50")
    summary = run(warehouse, make_catalog(), writer)
    key = idempotency_key(wanted, writer.request(_stored_action(warehouse, wanted), None))
    assert writer.calls == [("read", "sub_1"), ("send", "sub_1", key)]
    assert summary.count("applied") == 1
    row = warehouse.ledger()[wanted]
    assert (row["status"], row["attempts"], row["billing_request_id"]) == ("applied", 1, "req_1")
    assert row["applied_at"] is not None and row["error"] is None
    assert json.loads(row["request"])["params"] == {"coupon": "SAVE50"}


def _stored_action(warehouse: Warehouse, wanted: str) -> Action:
    [row] = Ledger(warehouse.db).rows("action_id = ?", [wanted])
    return Action(
        wanted,
        row.billing_system,
        row.subscription_id,
        row.customer_id,
        row.action_type,
        row.parameters,
    )


@pytest.mark.parametrize(
    ("action", "state", "status", "reason"),
    [
        ("cancel", {"holds": {"cancel"}}, "skipped", "already true in billing: cancel in place"),
        (
            "cancel",
            {"status": "canceled"},
            "skipped",
            "already true in billing: subscription is canceled",
        ),
        (
            "discount",
            {"holds": {"discount"}},
            "skipped",
            "already true in billing: discount in place",
        ),
        (
            "discount",
            {"status": "canceled"},
            "skipped",
            "subscription is canceled: nothing to change",
        ),
    ],
    ids=["already-scheduled", "already-ended", "coupon-on", "moot"],
)
def test_nothing_is_sent_when_billing_already_agrees(
    warehouse, make_catalog, writer, action, state, status, reason
):
    warehouse.subscription("sub_1")
    kind, offer_id = {"cancel": ("canceled", None), "discount": ("offer_accepted", "save50")}[
        action
    ]
    wanted = warehouse.session("s1", kind, offer_id=offer_id)
    writer.script("sub_1", **state)
    run(warehouse, make_catalog(), writer)
    assert writer.sends() == []
    row = warehouse.ledger()[wanted]
    assert (row["status"], row["reason"], row["attempts"]) == (status, reason, 0)


def test_interrupted_attempt_is_confirmed_by_reading_back(warehouse, make_catalog, writer):
    warehouse.subscription("sub_1")
    wanted = warehouse.canceled("s1")
    catalog = make_catalog()
    ledger = Ledger(warehouse.db)
    ledger.insert(derive_actions(warehouse.db, catalog))
    ledger.start_attempt(wanted, {"method": "POST"})  # counted, sent, then the crash
    writer.script("sub_1", holds={"cancel"})  # the request had landed
    summary = run(warehouse, catalog, writer)
    assert writer.sends() == []
    assert summary.count("applied") == 1
    row = warehouse.ledger()[wanted]
    assert (row["status"], row["attempts"]) == ("applied", 1)
    assert row["reason"] == (
        "confirmed by reading back after an interrupted attempt: cancel in place"
    )


def test_permanent_error_fails_one_action_and_the_run_goes_on(warehouse, make_catalog, writer):
    for sub in ("sub_1", "sub_2"):
        warehouse.subscription(sub)
    bad = warehouse.accepted("s1", "save50", action_at=AT)
    good = warehouse.accepted(
        "s2", "save50", subscription="sub_2", action_at=AT + timedelta(minutes=1)
    )
    writer.script("sub_1", errors=[Permanent("No such coupon: 'SAVE50'")])
    summary = run(warehouse, make_catalog(), writer)
    assert writer.sends() == ["sub_1", "sub_2"]  # a permanent error is not retried
    ledger = warehouse.ledger()
    assert (ledger[bad]["status"], ledger[bad]["attempts"]) == ("failed", 1)
    assert ledger[bad]["error"] == "Fake API Permanent: No such coupon: 'SAVE50'"
    assert ledger[good]["status"] == "applied"
    assert summary.failures == [
        {"action_id": bad, "billing_system": "stripe", "error": ledger[bad]["error"]}
    ]


def test_transient_errors_leave_the_action_pending_for_the_next_run(
    warehouse, make_catalog, writer
):
    warehouse.subscription("sub_1")
    wanted = warehouse.canceled("s1")
    catalog = make_catalog()
    writer.script("sub_1", errors=[Transient("503 Service Unavailable")] * MAX_ATTEMPTS)
    summary = run(warehouse, catalog, writer)
    assert summary.count("retry_later") == 1
    assert len(writer.sends()) == MAX_ATTEMPTS
    row = warehouse.ledger()[wanted]
    assert (row["status"], row["attempts"]) == ("pending", MAX_ATTEMPTS)
    assert (
        f"gave up after {MAX_ATTEMPTS} attempts: Transient: 503 Service Unavailable" in row["error"]
    )

    writer.calls.clear()
    summary = run(warehouse, catalog, writer)
    assert writer.sends() == ["sub_1"]
    row = warehouse.ledger()[wanted]
    assert (row["status"], row["attempts"], row["error"]) == ("applied", MAX_ATTEMPTS + 1, None)
    assert row["billing_request_id"] == "req_1"


def test_dry_runs_recorded_as_skipped_by_an_older_ledger_get_their_own_status(
    warehouse, make_catalog, writer
):
    warehouse.subscription("sub_1")
    wanted = warehouse.canceled("s1")
    run(warehouse, make_catalog(mode="dry_run"), writer)
    warehouse.db.execute(f"update {TABLE} set status = 'skipped'")  # as an older ledger had it
    Ledger(warehouse.db)
    assert warehouse.ledger()[wanted]["status"] == "dry_run"


def test_a_system_switched_to_dry_run_sends_nothing_more(warehouse, make_catalog, writer):
    warehouse.subscription("sub_1")
    wanted = warehouse.canceled("s1")
    writer.script("sub_1", errors=[Transient("503")] * MAX_ATTEMPTS)
    run(warehouse, make_catalog(), writer)
    assert warehouse.ledger()[wanted]["status"] == "pending"
    writer.calls.clear()
    run(warehouse, make_catalog(mode="dry_run"), writer)
    assert writer.calls == []
    row = warehouse.ledger()[wanted]
    assert (row["status"], row["mode"]) == ("dry_run", "dry_run")
    assert row["reason"].startswith("dry run: would send POST /v1/subscriptions/sub_1/cancel")
    assert "an earlier live attempt may have reached billing" in row["reason"]


def test_a_second_run_sends_nothing_new(warehouse, make_catalog, writer):
    warehouse.subscription("sub_1")
    warehouse.subscription("sub_2")
    warehouse.canceled("s1")
    warehouse.accepted("s2", "pause_2m", subscription="sub_2")
    warehouse.accepted("s3", "extend_14d", subscription="sub_2")
    catalog = make_catalog()
    run(warehouse, catalog, writer)
    assert len(writer.sends()) == 3
    before = warehouse.ledger()
    writer.calls.clear()
    summary = run(warehouse, catalog, writer)
    assert writer.calls == []
    assert summary.outcomes == {}
    assert warehouse.ledger() == before


def test_a_session_no_longer_asking_is_skipped(warehouse, make_catalog, writer):
    warehouse.subscription("sub_1")
    wanted = warehouse.canceled("s1")
    catalog = make_catalog()
    Ledger(warehouse.db).insert(derive_actions(warehouse.db, catalog))
    warehouse.forget("s1")
    summary = run(warehouse, catalog, writer)
    assert writer.calls == []
    assert summary.outcomes == {("stripe", "superseded"): 1}
    row = warehouse.ledger()[wanted]
    assert row["status"] == "skipped"
    assert row["reason"].startswith("no longer asked for")


@pytest.mark.parametrize(
    ("retry_failed", "reopened"),
    [(False, False), (True, True), ("this-one", True), (["wb_someone_else"], False)],
)
def test_failed_actions_are_reopened_only_on_request(
    warehouse, make_catalog, writer, retry_failed, reopened
):
    warehouse.subscription("sub_1")
    wanted = warehouse.accepted("s1", "save70", offer_type="discount")
    run(warehouse, make_catalog(), writer)
    assert warehouse.ledger()[wanted]["status"] == "failed"

    fixed = make_catalog(offers={**OFFERS, "save70": {"type": "discount", "coupon": "SAVE70"}})
    if retry_failed == "this-one":
        retry_failed = [wanted]
    run(warehouse, fixed, writer, retry_failed=retry_failed)
    row = warehouse.ledger()[wanted]
    if reopened:
        assert (row["status"], row["error"], row["billing_request_id"]) == (
            "applied",
            None,
            "req_1",
        )
        assert json.loads(row["parameters"]) == {"coupon": "SAVE70"}
        assert writer.sends() == ["sub_1"]
    else:
        assert row["status"] == "failed"
        assert "is not in the write-back catalog" in row["error"]
        assert writer.calls == []


def test_failed_action_stays_failed_when_still_unresolvable(warehouse, make_catalog, writer):
    warehouse.subscription("sub_1")
    wanted = warehouse.accepted("s1", "save70", offer_type="discount")
    catalog = make_catalog()
    run(warehouse, catalog, writer)
    summary = run(warehouse, catalog, writer, retry_failed=True)
    assert "reopened" not in {outcome for _, outcome in summary.outcomes}
    assert warehouse.ledger()[wanted]["status"] == "failed"
    assert writer.calls == []


def test_a_subscription_synced_later_gets_its_action(warehouse, make_catalog, writer):
    wanted = warehouse.canceled("s1")
    catalog = make_catalog()
    run(warehouse, catalog, writer)
    unmatched = action_id("s1", "canceled", None)
    assert warehouse.ledger()[unmatched]["status"] == "failed"
    warehouse.subscription("sub_1")  # the billing sync caught up
    run(warehouse, catalog, writer)
    ledger = warehouse.ledger()
    assert ledger[unmatched]["status"] == "skipped"
    assert ledger[wanted]["status"] == "applied"
    assert writer.sends() == ["sub_1"]


# =========================================================================== idempotency keys


def _request(**params: Any) -> WriteRequest:
    return WriteRequest("discount", "POST", "/v1/subscriptions/sub_1/discount", params)


def test_idempotency_key_follows_the_action_and_the_exact_request():
    key = idempotency_key("wb_1", _request(coupon="SAVE50"))
    assert key.startswith("wb_1-")
    assert key == idempotency_key("wb_1", _request(coupon="SAVE50"))
    assert key != idempotency_key("wb_1", _request(coupon="SAVE70"))
    assert key != idempotency_key("wb_2", _request(coupon="SAVE50"))
    other_path = WriteRequest(
        "discount", "POST", "/v1/subscriptions/sub_2/discount", {"coupon": "SAVE50"}
    )
    assert key != idempotency_key("wb_1", other_path)
