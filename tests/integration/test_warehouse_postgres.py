"""One setting picks the warehouse (RETENTION_WAREHOUSE): the same small scenario run
through the code location's Dagster jobs (billing_sync, a validation_30d partition, the
write-back job) into DuckDB and into Postgres gives the same marts, row for row, and the
Postgres password appears nowhere: not in the run storage, the event logs or the output.
Skipped, with the reason, where no PostgreSQL server answers on 127.0.0.1:5432."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import orjson
import pytest
from dagster import DagsterInstance

from sandbox.exit_files import write_exit_session_files
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.scenario import load_scenario
from tests.writeback_pipeline import live_catalog, point_at

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
# validation_30d over two months of days, in one run (a single-run backfill).
VALIDATION_DAYS = ("2026-05-01", "2026-06-29")
# The ledger's clock readings: when the run happened, not what it decided.
RUN_STAMPS = {"derived_at", "last_attempt_at", "applied_at", "updated_at"}
# Accepted by the server's trust auth, so the run needs it like any password; never shown.
PASSWORD = "pw-never-shown-3f9a"


def _run_jobs() -> list[str]:
    """The three jobs of the code location the environment describes; their run ids."""
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from orchestration.definitions import build_definitions

    first, last = VALIDATION_DAYS
    days = {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
    defs = build_definitions()
    run_ids = []
    with DagsterInstance.get() as instance:
        for job, tags in (
            ("billing_sync", {}),
            ("validation_30d_daily", days),
            ("billing_writebacks_job", {}),
        ):
            result = defs.resolve_job_def(job).execute_in_process(
                instance=instance, tags=tags, raise_on_error=False
            )
            failed = [e.step_key for e in result.all_events if e.is_step_failure]
            assert result.success, f"{job} failed in {failed}"
            run_ids.append(result.run_id)
    return run_ids


def _value(v):
    """Comparable across the engines: numbers to 6 places whatever their type (DuckDB's
    HUGEINT sums, Postgres' numeric ones), times in UTC."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int | float | Decimal):
        return round(Decimal(str(v)), 6)
    if isinstance(v, datetime):
        return v.astimezone(UTC)
    return v


def _rows(cursor, sql: str) -> tuple[list[str], list[tuple]]:
    cursor.execute(sql)
    rows = [tuple(_value(v) for v in row) for row in cursor.fetchall()]
    return [d[0] for d in cursor.description], sorted(rows, key=repr)


def _marts_of(database: Path, postgres: str) -> dict[str, tuple[list, list, list]]:
    """Every table and view of `marts`: its DuckDB rows and its Postgres rows, each
    normalised and in one order, the run-time stamps left out."""
    import psycopg2

    marts = {}
    with duckdb.connect(str(database), read_only=True) as duck, psycopg2.connect(postgres) as pg:
        names = duck.execute(
            "select table_name from information_schema.tables where table_schema = 'marts'"
        ).fetchall()
        for (name,) in names:
            columns = [
                d[0] for d in duck.execute(f"select * from marts.{name} limit 0").description
            ]
            chosen = ", ".join(f'"{c}"' for c in columns if c not in RUN_STAMPS)
            sql = f"select {chosen} from marts.{name}"
            duck_columns, duck_rows = _rows(duck.cursor(), sql)
            with pg.cursor() as cursor:
                _, pg_rows = _rows(cursor, sql)
            marts[name] = (duck_columns, duck_rows, pg_rows)
    return marts


def test_duckdb_and_postgres_give_the_same_marts_through_the_jobs(
    tmp_path, serve_scenario, dagster_env, postgres, monkeypatch, capfd
):
    path = tmp_path / "scenario.json"
    write_scenario(GenerateOptions(120, 5, AS_OF), path)
    sandbox = serve_scenario(orjson.loads(path.read_bytes()))
    write_exit_session_files(load_scenario(path), dagster_env["SOURCES__EXIT_SESSIONS__FOLDER"])
    point_at(monkeypatch, sandbox)
    # Every system in dry run: the actions are derived and recorded, nothing is sent, so
    # the second warehouse syncs the same billing data as the first.
    monkeypatch.setenv("RETENTION_WRITEBACKS", str(live_catalog(tmp_path / "wb.yml", "dry_run")))

    monkeypatch.setenv("RETENTION_WAREHOUSE", "duckdb")
    _run_jobs()

    credentials = postgres.replace("postgres:postgres@", f"postgres:{PASSWORD}@")
    monkeypatch.setenv("RETENTION_WAREHOUSE", "postgres")
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", credentials)
    pg_runs = _run_jobs()

    marts = _marts_of(dagster_env["RETENTION_DUCKDB_PATH"], postgres)
    assert {"fct_exit_episodes", "rpt_retention_summary", "validation_30d_daily"} <= set(marts)
    assert {"fct_billing_writebacks", "fct_repurchase_cohorts", "dim_subscriptions"} <= set(marts)
    empty = [name for name, (_, duck_rows, _) in marts.items() if not duck_rows]
    assert not empty, f"empty marts prove nothing: {empty}"
    differ = [name for name, (_, duck_rows, pg_rows) in marts.items() if pg_rows != duck_rows]
    assert not differ, f"marts that differ between DuckDB and Postgres: {differ}"
    validated = {r[0] for r in marts["validation_30d_daily"][2]}
    first, last = map(date.fromisoformat, VALIDATION_DAYS)
    assert len(validated) > 1 and first <= min(validated) and max(validated) <= last

    # The password: in no event of the Postgres runs, no file of the instance, no output;
    # the warehouse is named in the logs with the password masked.
    with DagsterInstance.get() as instance:
        logged = "\n".join(
            f"{event.user_message} {event.dagster_event}"
            for run_id in pg_runs
            for event in instance.all_logs(run_id)
        )
    assert "postgres:***@127.0.0.1" in logged
    assert PASSWORD not in logged
    for stored in Path(dagster_env["DAGSTER_HOME"]).rglob("*"):
        assert not stored.is_file() or PASSWORD.encode() not in stored.read_bytes(), stored
    out, err = capfd.readouterr()
    assert PASSWORD not in out + err
