"""The generator is deterministic, valid, and covers every rule the marts must handle."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from retention_cli import main
from sandbox.billing import neutral_status
from sandbox.scenario import INVOICE_STATUSES, load_scenario
from tests.oracle import validate

AS_OF = "2026-06-30T00:00:00Z"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "scenario.json"
    result = CliRunner().invoke(
        main,
        [
            "sandbox",
            "generate",
            "--customers",
            "3000",
            "--seed",
            "11",
            "--as-of",
            AS_OF,
            "--out",
            str(path),
        ],
    )
    assert result.exit_code == 0, result.output
    return path, load_scenario(path)


def test_same_seed_same_bytes_other_seed_differs(generated, tmp_path):
    path, _ = generated
    runner = CliRunner()
    for seed, same in (("11", True), ("12", False)):
        out = tmp_path / f"s{seed}.json"
        args = ["sandbox", "generate", "--customers", "3000", "--seed", seed, "--as-of", AS_OF]
        assert runner.invoke(main, [*args, "--out", str(out)]).exit_code == 0
        assert (out.read_bytes() == path.read_bytes()) is same


def test_billing_history_variety(generated):
    _, s = generated
    as_of = s.as_of
    assert Counter(c["billing_system"] for c in s.customers).keys() == {
        "stripe",
        "recurly",
        "chargebee",
    }
    assert {p["currency"] for p in s.plans} == {"USD", "EUR", "GBP", "JPY"}
    assert {(p["interval"], p["interval_count"]) for p in s.plans} >= {
        ("month", 1),
        ("year", 1),
        ("week", 1),
        ("month", 3),
    }
    statuses = Counter((x["billing_system"], neutral_status(x, as_of)) for x in s.subscriptions)
    for system in ("stripe", "recurly", "chargebee"):
        for status in ("trialing", "active", "paused", "non_renewing", "canceled"):
            assert statuses[(system, status)] > 0, (system, status)
    for status in ("past_due", "unpaid"):
        assert statuses[("stripe", status)] > 0
    assert statuses[("recurly", "future")] > 0 and statuses[("chargebee", "future")] > 0
    assert any(x["coupon_id"] for x in s.subscriptions)
    expired_without_request = [x for x in s.subscriptions if x["ended_at"] and not x["canceled_at"]]
    assert expired_without_request
    per_customer = Counter((x["billing_system"], x["customer_id"]) for x in s.subscriptions)
    assert max(per_customer.values()) >= 2
    assert {i["status"] for i in s.invoices} == set(INVOICE_STATUSES)
    jpy = [p for p in s.plans if p["currency"] == "JPY"]
    assert all(p["unit_amount"] == p["unit_amount"].to_integral_value() for p in jpy)


def test_exit_sessions_reach_every_status_and_outcome(generated):
    _, s = generated
    episodes = validate(s)
    assert {e["validation_status"] for e in episodes} == {
        "valid_save",
        "invalid_save",
        "expired_pre_session",
        "canceled_pre_session",
        "activated_post_session",
        "no_match",
        "valid_cancel",
    }
    assert {e["page_outcome"] for e in episodes} == {"saved", "watch_list", "canceled"}
    assert {e["validated_outcome"] for e in episodes} == {"saved", "canceled", "unknown", "pending"}
    assert {e["save_type"] for e in episodes} == {"offer", "deflect", "passive", None}
    assert {e["offer_type"] for e in episodes} >= {
        "pause",
        "discount",
        "extension",
        "plan_change",
        "custom",
    }
    holdout = [e for e in episodes if e["page_id"] == "holdout"]
    assert holdout and not any(e["save_type"] == "offer" for e in holdout)
    subscription_ids = {(x["billing_system"], x["subscription_id"]) for x in s.subscriptions}
    by_customer_id = [
        e
        for e in episodes
        if e["subscription_id"] and (e["billing_system"], e["billing_id"]) not in subscription_ids
    ]
    assert by_customer_id, "no billing id that is a customer id"
    assert any(e["billing_id"].startswith("acct-") for e in by_customer_id)


def test_repeat_visits_inside_and_outside_the_window(generated):
    _, s = generated
    visits = defaultdict(list)
    for x in s.exit_sessions:
        visits[(x["billing_system"], x["billing_id"])].append(x["started_at"])
    gaps = {
        b - a
        for times in visits.values()
        for a, b in zip(sorted(times), sorted(times)[1:], strict=False)
    }
    for days in (10, 29, 30, 31):
        assert timedelta(days=days) in gaps, days
    episodes = validate(s)
    assert any(len(e["sessions"]) > 1 for e in episodes)
    per_id = Counter((e["billing_system"], e["billing_id"]) for e in episodes)
    assert max(per_id.values()) >= 2


def test_default_as_of_is_today(tmp_path):
    out = tmp_path / "s.json"
    result = CliRunner().invoke(
        main, ["sandbox", "generate", "--customers", "50", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert load_scenario(out).as_of == today


def test_bad_as_of_is_refused(tmp_path):
    result = CliRunner().invoke(
        main, ["sandbox", "generate", "--as-of", "30/06/2026", "--out", str(tmp_path / "x.json")]
    )
    assert result.exit_code == 2 and "write e.g. 2026-06-30T00:00:00Z" in result.output


def test_the_variety_of_real_accounts_is_in_the_default_demo(generated):
    """A share of every variety a years-old account holds, on each system that has it."""
    _, s = generated
    subs, customers = s.subscriptions, s.customers
    found = Counter()
    for x in subs:
        system = x["billing_system"]
        for field in ("currency", "extra_coupon_ids", "term_cycles", "pending_plan_id"):
            found[(field, system)] += x[field] is not None
        for field in ("deleted_at", "transferred_at"):
            found[(field, system)] += x[field] is not None
    for c in customers:
        found[("customer.deleted_at", c["billing_system"])] += c["deleted_at"] is not None
        found[("customer.coupon_id", c["billing_system"])] += c["coupon_id"] is not None
    for i in s.invoices:
        found[(f"invoice.{i['kind']}.{i['status']}", i["billing_system"])] += 1
    expected = [
        *[("currency", sys) for sys in ("stripe", "recurly")],
        *[
            (f, sys)
            for f in ("extra_coupon_ids", "pending_plan_id", "customer.deleted_at")
            for sys in ("stripe", "recurly", "chargebee")
        ],
        *[("term_cycles", sys) for sys in ("recurly", "chargebee")],
        ("deleted_at", "chargebee"),
        ("transferred_at", "chargebee"),
        ("customer.coupon_id", "stripe"),
        ("invoice.credit.paid", "recurly"),
        *[
            (f"invoice.charge.{status}", sys)
            for status in ("draft", "past_due", "uncollectible")
            for sys in ("stripe", "recurly", "chargebee")
        ],
    ]
    assert [key for key in expected if not found[key]] == []
    assert {p["plan_id"] for p in s.plans if p["archived_at"]}
    assert {c["coupon_id"] for c in s.coupons if c["deleted_at"]}
