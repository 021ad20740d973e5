"""`validation_30d` on a hand-made `marts.fct_exit_episodes`: partition D counts the
episodes that started on D − 30 (UTC, boundaries exact), a rerun replaces the day's rows
instead of adding to them, and a backfill over several days fills each day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb
import pytest
from dagster import DagsterInstance, materialize

from orchestration.resources import Warehouse

pytestmark = pytest.mark.integration
T = datetime(2026, 6, 30, tzinfo=UTC)  # the latest billing sync


def _episode(started: datetime, status: str, outcome: str, saved=0, lost=0, system="stripe"):
    return (started, system, status, outcome, saved, lost, T)


EPISODES = [
    # cohort 2026-05-01 (partition 2026-05-31), from 00:00:00 inclusive ...
    _episode(datetime(2026, 5, 1, 0, 0, tzinfo=UTC), "valid_save", "saved", saved=10),
    _episode(datetime(2026, 5, 1, 12, 0, tzinfo=UTC), "valid_save", "saved", saved=5),
    _episode(datetime(2026, 5, 1, 23, 59, 59, tzinfo=UTC), "valid_cancel", "canceled", lost=7),
    # ... to the next midnight exclusive: cohort 2026-05-02 (partition 2026-06-01)
    _episode(datetime(2026, 5, 2, 0, 0, tzinfo=UTC), "invalid_save", "canceled", lost=3),
    _episode(datetime(2026, 5, 2, 9, 0, tzinfo=UTC), "no_match", "unknown", system="recurly"),
    # 1 May 01:00 in Berlin, but 30 April in UTC: cohort 2026-04-30 (partition 2026-05-30)
    _episode(datetime(2026, 4, 30, 23, 0, tzinfo=UTC), "valid_save", "saved", saved=99),
]


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("create schema marts").fetchall()
        con.execute(
            """
            create table marts.fct_exit_episodes (
                first_landed_at timestamptz, billing_system varchar, validation_status varchar,
                validated_outcome varchar, saved_mrr decimal(38, 10), lost_mrr decimal(38, 10),
                validated_at timestamptz)
            """
        ).fetchall()
        con.executemany(
            "insert into marts.fct_exit_episodes values (?, ?, ?, ?, ?, ?, ?)", EPISODES
        )
    return path


def _run(path, day: str, instance):
    from orchestration.validation import validation_30d

    result = materialize(
        [validation_30d],
        partition_key=day,
        resources={"warehouse": Warehouse(database=str(path))},
        instance=instance,
    )
    assert result.success
    return result.asset_materializations_for_node("validation_30d")[0].metadata


def _table(path) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(
            "select partition_date, cohort_date, billing_system, validation_status, "
            "validated_outcome, episodes, saved_mrr, lost_mrr from marts.validation_30d_daily "
            "order by all"
        ).fetchall()


def test_a_partition_counts_its_cohort_day_and_reruns_replace_it(warehouse):
    with DagsterInstance.ephemeral() as instance:
        metadata = _run(warehouse, "2026-05-31", instance)
        first = _table(warehouse)
        _run(warehouse, "2026-05-31", instance)  # a rerun
        assert _table(warehouse) == first
    assert [(r[3], r[5], float(r[6]), float(r[7])) for r in first] == [
        ("valid_cancel", 1, 0.0, 7.0),
        ("valid_save", 2, 15.0, 0.0),
    ]
    assert {r[0] for r in first} == {date(2026, 5, 31)}
    assert {r[1] for r in first} == {date(2026, 5, 1)}
    assert metadata["episodes"].value == 3
    assert metadata["cohort_date"].value == "2026-05-01"
    assert metadata["final"].value is True  # T is a month past the day: every window closed
    assert "valid_save" in metadata["by_status"].value


def test_a_backfill_fills_each_day_and_says_when_a_day_is_not_final(warehouse):
    days = [date(2026, 5, 30) + timedelta(days=i) for i in range(3)]
    with DagsterInstance.ephemeral() as instance:
        episodes = {d: _run(warehouse, d.isoformat(), instance)["episodes"].value for d in days}
        late = _run(warehouse, "2026-06-30", instance)  # the day T falls on
    assert episodes == {date(2026, 5, 30): 1, date(2026, 5, 31): 3, date(2026, 6, 1): 2}
    rows = _table(warehouse)
    assert {r[0] for r in rows} == set(days)  # the empty day 2026-06-30 wrote no rows
    assert sum(r[5] for r in rows) == len(EPISODES)
    assert late["episodes"].value == 0
    assert late["final"].value is False  # T is not past the end of 2026-06-30


def _run_range(path, first: str, last: str, instance):
    """One run over the partitions first..last, as a UI or CLI backfill launches it."""
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from orchestration.validation import validation_30d

    result = materialize(
        [validation_30d],
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        resources={"warehouse": Warehouse(database=str(path))},
        instance=instance,
    )
    assert result.success
    return result.asset_materializations_for_node("validation_30d")


def test_a_backfill_is_one_run_with_the_rows_of_a_run_per_day(warehouse, tmp_path):
    per_day = tmp_path / "per_day.duckdb"
    per_day.write_bytes(warehouse.read_bytes())
    days = [date(2026, 5, 29) + timedelta(days=i) for i in range(5)]
    with DagsterInstance.ephemeral() as instance:
        for day in days:
            _run(per_day, day.isoformat(), instance)
        _run(warehouse, "2026-05-31", instance)  # a day the backfill must replace, not add to
        materializations = _run_range(warehouse, "2026-05-29", "2026-06-02", instance)
        runs = instance.get_runs()
    assert _table(warehouse) == _table(per_day)
    assert sum(r[5] for r in _table(warehouse)) == len(EPISODES)
    assert {m.partition for m in materializations} == {d.isoformat() for d in days}
    assert len({r.run_id for r in runs if r.tags.get("dagster/asset_partition_range_start")}) == 1
    metadata = materializations[0].metadata
    assert metadata["cohort_date"].value == "2026-04-29...2026-05-03"
    assert metadata["episodes"].value == len(EPISODES)


def test_the_backfill_command_in_the_asset_description_fills_the_range(
    warehouse, dagster_env, monkeypatch
):
    """The exact command the asset's description gives, run as a user would."""
    import os
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    from orchestration.settings import PROJECT_DIR
    from orchestration.validation import BACKFILL_HINT

    command = BACKFILL_HINT.split("\n\n")[1].replace("\\\n", " ")
    command = command.replace("<first day>", "2026-05-30").replace("<yesterday>", "2026-06-01")
    argv = shlex.split(command)
    assert argv[:3] == ["dagster", "asset", "materialize"]
    monkeypatch.setenv("RETENTION_DUCKDB_PATH", str(warehouse))
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), *argv[1:]],
        cwd=PROJECT_DIR,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _table(warehouse)
    assert {r[0] for r in rows} == {date(2026, 5, 30), date(2026, 5, 31), date(2026, 6, 1)}
    assert sum(r[5] for r in rows) == len(EPISODES)
