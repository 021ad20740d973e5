"""Webhooks in Dagster: validation_30d sends one signed event per settled episode of its
partition to a real local receiver, and a rerun sends nothing again; events a receiver
refused end in the dead letters, which webhook_outbox's check lists and `redeliver`
sends again; the sensor asks for a run only when events are due; a bad webhooks.yml
fails validation_30d before anything is written."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
import yaml
from dagster import DagsterInstance, build_sensor_context, materialize

from orchestration.resources import Warehouse
from tests.webhook_receiver import Receiver, receiving
from webhooks.config import load_config
from webhooks.outbox import Outbox

pytestmark = pytest.mark.integration
SECRET = "whsec_dagster"
T = datetime(2026, 6, 30, tzinfo=UTC)
MAY_1 = datetime(2026, 5, 1, 9, tzinfo=UTC)
COLUMNS = """
    episode_id varchar, billing_system varchar, billing_id varchar, subscription_id varchar,
    customer_id varchar, first_landed_at timestamptz, save_event_at timestamptz,
    page_outcome varchar, save_type varchar, offer_id varchar, offer_type varchar,
    validation_status varchar, validated_outcome varchar, mrr decimal(38, 10),
    saved_mrr decimal(38, 10), lost_mrr decimal(38, 10), validated_at timestamptz
"""


def _episode(eid, landed, outcome, status, validated, saved=0, lost=0):
    ids = (eid, "stripe", f"cus_{eid}", f"sub_{eid}", f"cus_{eid}")
    offer = (None, None, None)  # save_type, offer_id, offer_type
    return (*ids, landed, landed, outcome, *offer, status, validated, saved + lost, saved, lost, T)


EPISODES = [
    _episode("e1", MAY_1, "saved", "valid_save", "saved", saved=10),
    _episode("e2", MAY_1, "saved", "invalid_save", "canceled", lost=20),
    _episode("e3", MAY_1, "canceled", "valid_cancel", "canceled", lost=30),
    _episode("e4", MAY_1, "watch_list", "valid_save", "pending"),  # not settled: no event
    _episode("e5", datetime(2026, 5, 2, 9, tzinfo=UTC), "saved", "valid_save", "saved", 5),
]
SETTLED_MAY_1 = {
    "e1": "validation.valid_save",
    "e2": "validation.invalid_save",
    "e3": "validation.valid_cancel",
}


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("create schema marts").fetchall()
        con.execute(f"create table marts.fct_exit_episodes ({COLUMNS})").fetchall()
        con.executemany(
            f"insert into marts.fct_exit_episodes values ({', '.join('?' * 17)})", EPISODES
        )
    return path


@pytest.fixture
def webhooks_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """webhooks.yml to the receiver it is given, and the state database, in tmp."""

    def point_at(receiver: Receiver, **delivery: float) -> Path:
        path = tmp_path / "webhooks.yml"
        document = {
            "endpoints": {
                "crm": {"url": receiver.url, "secret_env": "CRM_SECRET", "events": ["validation.*"]}
            },
            "delivery": {"initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.05, **delivery},
        }
        path.write_text(yaml.safe_dump(document))
        monkeypatch.setenv("RETENTION_WEBHOOKS", str(path))
        return path

    monkeypatch.setenv("CRM_SECRET", SECRET)
    monkeypatch.setenv("RETENTION_COLLECTOR_DB", str(tmp_path / "state" / "collector.sqlite"))
    return point_at


def _validate(path: Path, instance: DagsterInstance, day: str = "2026-05-31"):
    from orchestration.validation import validation_30d

    result = materialize(
        [validation_30d],
        partition_key=day,
        resources={"warehouse": Warehouse(database=str(path))},
        instance=instance,
        raise_on_error=False,
    )
    return result


def _outbox_run(instance: DagsterInstance, **config):
    from orchestration.webhooks import webhook_outbox

    result = materialize(
        [webhook_outbox],
        instance=instance,
        run_config={"ops": {"webhook_outbox": {"config": config}}} if config else None,
    )
    assert result.success
    [check] = result.get_asset_check_evaluations()
    return result.asset_materializations_for_node("webhook_outbox")[0].metadata, check


def test_a_partition_sends_one_event_per_settled_episode_and_a_rerun_none(
    warehouse, webhooks_env
) -> None:
    with receiving(Receiver(SECRET.encode())) as receiver, DagsterInstance.ephemeral() as instance:
        webhooks_env(receiver)
        first = _validate(warehouse, instance)
        again = _validate(warehouse, instance)
    assert first.success and again.success
    assert {e["data"]["episode_id"]: e["type"] for e in receiver.accepted} == SETTLED_MAY_1
    assert receiver.refused == []
    e2 = next(e["data"] for e in receiver.accepted if e["data"]["episode_id"] == "e2")
    assert (e2["billing_id"], e2["subscription_id"], e2["validated_outcome"]) == (
        "cus_e2",
        "sub_e2",
        "canceled",
    )
    assert e2["lost_mrr"] == "20.0000000000" and e2["validated_at"] == T.isoformat()
    metadata = first.asset_materializations_for_node("validation_30d")[0].metadata
    assert metadata["webhook_events_emitted"].value == 3
    assert metadata["webhooks_delivered"].value == 3
    assert (
        again.asset_materializations_for_node("validation_30d")[0]
        .metadata["webhook_events_emitted"]
        .value
        == 0
    )
    assert len(receiver.accepted) == 3  # the rerun sent nothing


def test_dead_letters_show_in_the_check_and_redeliver_sends_them(warehouse, webhooks_env) -> None:
    refusing = Receiver(SECRET.encode(), fail_rate=1.0)
    with receiving(refusing) as receiver, DagsterInstance.ephemeral() as instance:
        webhooks_env(receiver, max_attempts=1)
        assert _validate(warehouse, instance).success  # a receiver down fails no validation
        metadata, check = _outbox_run(instance)
        assert not check.passed
        assert check.metadata["dead_letters"].value == 3
        assert "HTTP 500" in check.metadata["events"].value
        assert metadata["webhooks_dead"].value == 0  # already dead after the validation step
        receiver.fail_rate = 0.0  # the receiver is fixed
        metadata, check = _outbox_run(instance, redeliver=True)
    assert check.passed
    assert metadata["webhooks_delivered"].value == 3
    assert {e["data"]["episode_id"] for e in receiver.accepted} == set(SETTLED_MAY_1)


def test_the_sensor_asks_for_a_run_only_when_events_are_due(tmp_path, webhooks_env) -> None:
    from orchestration.webhooks import webhook_outbox_sensor, webhooks_job

    sensor = webhook_outbox_sensor(webhooks_job())
    with receiving(Receiver(SECRET.encode())) as receiver, DagsterInstance.ephemeral() as instance:
        webhooks_env(receiver)
        assert sensor(build_sensor_context(instance=instance)).skip_message  # no state file yet
        outbox = Outbox(tmp_path / "state" / "collector.sqlite", load_config())
        outbox.emit("validation.valid_save", {"episode_id": "e1"}, event_id="evt_1")
        request = sensor(build_sensor_context(instance=instance))
        assert request.tags["retention/webhook_events_due"] == "1"
        outbox.deliver_pending()
        assert (
            "no webhook event due" in sensor(build_sensor_context(instance=instance)).skip_message
        )


def test_a_bad_webhooks_file_fails_the_partition_before_anything_is_written(
    warehouse, tmp_path, monkeypatch
) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "endpoints:\n  crm:\n    url: https://h/x\n    secret_env: UNSET_VAR\n    events: ['*']\n"
    )
    monkeypatch.setenv("RETENTION_WEBHOOKS", str(bad))
    monkeypatch.delenv("UNSET_VAR", raising=False)
    with DagsterInstance.ephemeral() as instance:
        result = _validate(warehouse, instance)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "endpoints.crm.secret_env: UNSET_VAR is not set" in str(
        failure.event_specific_data.error
    )
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = con.execute("select table_name from information_schema.tables").fetchall()
    assert ("validation_30d_daily",) not in tables
