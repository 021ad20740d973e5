"""Event types and ids: deterministic, distinct per fact and type; a session row maps to
its action's event without the page's signature; the validation statuses are dbt's."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import yaml

from orchestration.settings import DBT_PROJECT_DIR
from webhooks.events import (
    EVENT_TYPES,
    VALIDATION_STATUSES,
    event_id,
    known_pattern,
    matches,
    session_event,
    validation_event,
)

ROW = {
    "session_id": "s1",
    "billing_system": "stripe",
    "billing_id": "sub_1",
    "started_at": datetime(2026, 5, 1, 12, tzinfo=UTC),
    "action": "offer_accepted",
    "offer_id": "pause3",
    "signature": "deadbeef",
    "timestamp": "1700000000",
    "_landed_seq": 7,
}


def test_event_ids_are_deterministic_and_differ_by_type_and_key() -> None:
    assert event_id("exit_session.canceled", "s1") == event_id("exit_session.canceled", "s1")
    assert event_id("exit_session.canceled", "s1") != event_id("exit_session.deflected", "s1")
    assert event_id("exit_session.canceled", "s1") != event_id("exit_session.canceled", "s2")
    assert event_id("x", "y").startswith("evt_") and len(event_id("x", "y")) == 28


def test_a_session_row_becomes_its_action_event_without_the_signature() -> None:
    event_type, eid, data = session_event(ROW)
    assert event_type == "exit_session.offer_accepted"
    assert eid == event_id(event_type, "s1")
    assert data["started_at"] == "2026-05-01T12:00:00+00:00"
    assert {"signature", "timestamp", "_landed_seq"}.isdisjoint(data)
    assert session_event({**ROW, "action": None})[0] == "exit_session.started"
    assert session_event({**ROW, "action": ""})[0] == "exit_session.started"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({**ROW, "action": "paused"}, "session action 'paused' is not one of canceled"),
        ({**ROW, "session_id": None}, "no session_id"),
    ],
)
def test_bad_session_rows_are_refused_naming_the_field(row: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        session_event(row)


def test_a_validated_episode_becomes_its_status_event() -> None:
    episode = {
        "episode_id": "s1",
        "validation_status": "invalid_save",
        "mrr": Decimal("12.5000000000"),
        "billing_id": "cus_1",
    }
    event_type, eid, data = validation_event(episode)
    assert event_type == "validation.invalid_save"
    assert eid == event_id(event_type, "s1")
    assert data["mrr"] == "12.5000000000"  # money as text: no float rounding
    assert data["billing_id"] == "cus_1"
    assert data["subscription_id"] is None
    with pytest.raises(ValueError, match="validation_status 'saved' is not one of"):
        validation_event({**episode, "validation_status": "saved"})


def test_the_validation_statuses_are_those_dbt_accepts() -> None:
    models = yaml.safe_load(
        (DBT_PROJECT_DIR / "models" / "marts" / "fct_exit_episodes.yml").read_text()
    )["models"]
    [column] = [c for c in models[0]["columns"] if c["name"] == "validation_status"]
    [accepted] = [t["accepted_values"] for t in column["data_tests"] if isinstance(t, dict)]
    assert sorted(accepted["arguments"]["values"]) == sorted(VALIDATION_STATUSES)


def test_patterns() -> None:
    assert matches("*", "validation.no_match")
    assert matches("validation.*", "validation.no_match")
    assert not matches("validation.*", "exit_session.canceled")
    assert matches("exit_session.canceled", "exit_session.canceled")
    assert all(known_pattern(t) for t in EVENT_TYPES)
    assert not known_pattern("validation.valid_saves")
    assert not known_pattern("billing.*")
