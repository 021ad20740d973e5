"""validation.md §2 and §3 in Python (writebacks.matching), for the fast path: the edge
cases, and agreement with tests/oracle.py on every oracle scenario (the oracle is held to
dbt's marts by the end-to-end and variety tests; tests/integration/test_fastpath.py holds
the matcher to dbt's fct_exit_episodes directly)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from sandbox.generate import GenerateOptions, write_scenario
from sandbox.scenario import Scenario, load_scenario, validate_scenario
from tests.integration.test_chargebee_variety import variety as chargebee_variety
from tests.oracle import Matcher, validate
from tests.recurly_variety import recurly_variety
from tests.small_scenarios import one_subscription_per_system
from tests.stripe_variety import stripe_variety
from writebacks.matching import SAVE_WINDOW, Episode, episode_of, match_subscription

S = datetime(2026, 5, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)


def sub(sid: str, *, customer: str = "cus_1", activated: datetime, ended=None, mrr="10"):
    return {
        "subscription_id": sid,
        "customer_id": customer,
        "activated_at": activated,
        "ended_at": ended,
        "mrr": None if mrr is None else Decimal(mrr),
    }


def matched(subs: list[dict], billing_id: str = "cus_1", start: datetime = S) -> str | None:
    found = match_subscription(subs, billing_id, start)
    return found["subscription_id"] if found else None


# --------------------------------------------------------------------------- §3 edge cases


def test_a_subscription_id_is_that_subscription_even_when_ended():
    subs = [sub("sub_a", activated=S - DAY, ended=S - DAY), sub("sub_b", activated=S - DAY)]
    assert matched(subs, "sub_a") == "sub_a"


def test_a_customer_with_several_in_service_gets_the_highest_mrr_then_latest_then_smallest():
    subs = [
        sub("sub_c", activated=S - 9 * DAY, mrr="10"),
        sub("sub_b", activated=S - 5 * DAY, mrr="30"),
        sub("sub_a", activated=S - 7 * DAY, mrr="30"),
        sub("sub_d", activated=S - 30 * DAY, ended=S + DAY, mrr=None),
    ]
    assert matched(subs) == "sub_b"  # mrr tie: latest activated
    subs[1]["activated_at"] = subs[2]["activated_at"]
    assert matched(subs) == "sub_a"  # full tie: smallest id
    assert matched([subs[3], subs[0]]) == "sub_c"  # an unknown mrr ranks last


def test_none_in_service_at_s_takes_the_latest_before_then_the_earliest_after():
    ended = [
        sub("sub_old", activated=S - 90 * DAY, ended=S - 60 * DAY, mrr="99"),
        sub("sub_x", activated=S - 40 * DAY, ended=S),  # ended exactly at S: not in service
        sub("sub_w", activated=S - 40 * DAY, ended=S - DAY),
    ]
    later = [sub("sub_late", activated=S + 9 * DAY), sub("sub_next", activated=S + 2 * DAY)]
    assert matched(ended + later) == "sub_w"  # latest before, then smallest id
    assert matched(later) == "sub_next"
    assert matched([*later, sub("sub_aa", activated=S + 2 * DAY)]) == "sub_aa"


def test_activated_exactly_at_s_is_in_service():
    subs = [sub("sub_now", activated=S, mrr="1"), sub("sub_before", activated=S - DAY, ended=S)]
    assert matched(subs) == "sub_now"


def test_other_customers_and_unknown_ids_match_nothing():
    subs = [sub("sub_a", customer="cus_2", activated=S - DAY)]
    assert matched(subs, "cus_1") is None
    assert matched([], "cus_1") is None


# --------------------------------------------------------------------------- §2 edge cases


def test_the_episode_starts_at_the_first_visit_within_the_window():
    visits = [(S, "s1"), (S + 10 * DAY, "s2"), (S + 29 * DAY, "s3")]
    assert episode_of("s4", S + 29 * DAY + timedelta(hours=23), visits) == Episode("s1", S)


def test_a_visit_at_s_plus_the_window_opens_the_next_episode():
    visits = [(S, "s1"), (S + SAVE_WINDOW, "s2")]
    assert episode_of("s3", S + SAVE_WINDOW + DAY, visits) == Episode("s2", S + SAVE_WINDOW)
    assert episode_of("s3", S + 40 * DAY, visits, window=timedelta(days=45)) == Episode("s1", S)


def test_later_visits_and_the_session_itself_do_not_move_its_start():
    visits = [(S - 40 * DAY, "s0"), (S, "s1"), (S + DAY, "s2"), (S + 50 * DAY, "s3")]
    assert episode_of("s1", S, visits) == Episode("s1", S)
    assert episode_of("s2", S + DAY, visits) == Episode("s1", S)


def test_visits_at_the_same_time_are_ordered_by_session_id():
    assert episode_of("s_b", S, [(S, "s_a")]) == Episode("s_a", S)
    assert episode_of("s_a", S, [(S, "s_b")]) == Episode("s_a", S)


# --------------------------------------------------------------------------- the oracle


def generated(tmp_path, customers: int, seed: int) -> Scenario:
    path = tmp_path / f"scenario-{customers}-{seed}.json"
    write_scenario(GenerateOptions(customers, seed, datetime(2026, 6, 30, tzinfo=UTC)), path)
    return load_scenario(path)


SCENARIOS = {
    "generated-700-21": lambda tmp: generated(tmp, 700, 21),  # end-to-end marts
    "generated-2500-7": lambda tmp: generated(tmp, 2500, 7),  # the write-back tests'
    "generated-1500-3": lambda tmp: generated(tmp, 1500, 3),
    "stripe-variety": lambda tmp: validate_scenario(stripe_variety()),
    "recurly-variety": lambda tmp: validate_scenario(recurly_variety()),
    "chargebee-variety": lambda tmp: validate_scenario(chargebee_variety()),
    "one-per-system": lambda tmp: validate_scenario(one_subscription_per_system()),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_matcher_agrees_with_the_oracle_on_every_session(name, tmp_path):
    """Each session, placed as the fast path places it (from the visits of its billing
    id), is in the oracle's episode, starting at its S, and matches its subscription."""
    scenario = SCENARIOS[name](tmp_path)
    oracle = Matcher(scenario)
    by_system: dict[str, list[dict]] = defaultdict(list)
    for (system, _), facts in oracle.subs.items():
        by_system[system].append({**facts, "mrr": oracle.mrr[(system, facts["subscription_id"])]})
    visits: dict[tuple, list] = defaultdict(list)
    for s in scenario.exit_sessions:
        visits[(s["billing_system"], s["billing_id"])].append((s["started_at"], s["session_id"]))
    checked = 0
    for want in validate(scenario):
        key = (want["billing_system"], want["billing_id"])
        for session in want["sessions"]:
            episode = episode_of(session["session_id"], session["started_at"], visits[key])
            assert episode == Episode(want["episode_id"], want["first_landed_at"]), session
            got = match_subscription(by_system[key[0]], key[1], episode.started_at)
            assert (got["subscription_id"] if got else None) == want["subscription_id"], want
            checked += 1
    assert checked == len(scenario.exit_sessions)
