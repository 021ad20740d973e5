"""The same models on DuckDB and Postgres: one sandbox extracted into both, dbt built on
both, and every mart equal row for row. Skipped, with the reason, where no PostgreSQL
server answers on 127.0.0.1:5432."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import duckdb
import orjson
import pytest

from orchestration.extract import run_extract
from sandbox.exit_files import write_exit_session_files
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.scenario import load_scenario

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
MARTS = (
    "fct_exit_sessions",
    "fct_exit_episodes",
    "fct_repurchase_cohorts",
    "dim_subscriptions",
    "dim_subscriber_profiles",
    "rpt_retention_summary",
)


def _normalised(rows: list[tuple]) -> list[tuple]:
    """Comparable values: decimals to 6 places, times in UTC, sorted rows."""

    def value(v):
        if isinstance(v, Decimal | float):
            return round(Decimal(str(v)), 6)
        if isinstance(v, datetime):
            return v.astimezone(UTC)
        return v

    return sorted((tuple(value(v) for v in row) for row in rows), key=repr)


def test_duckdb_and_postgres_build_the_same_marts(
    tmp_path, serve_scenario, monkeypatch, dbt, postgres
):
    import psycopg2

    path = tmp_path / "scenario.json"
    write_scenario(GenerateOptions(300, 5, datetime(2026, 6, 30, tzinfo=UTC)), path)
    sandbox = serve_scenario(orjson.loads(path.read_bytes()))
    write_exit_session_files(load_scenario(path), tmp_path / "drop")
    for system, url in sandbox.urls.items():
        monkeypatch.setenv(f"SOURCES__{system.upper()}__BASE_URL", url)

    duck = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("RETENTION_WAREHOUSE", "duckdb")
    results = run_extract(
        database=duck, exit_sessions_folder=tmp_path / "drop", pipelines_dir=tmp_path / "dlt_duck"
    )
    assert [r.error for r in results] == [None] * 4
    dbt(duck, "build")

    monkeypatch.setenv("RETENTION_WAREHOUSE", "postgres")
    results = run_extract(exit_sessions_folder=tmp_path / "drop", pipelines_dir=tmp_path / "dlt_pg")
    assert [r.error for r in results] == [None] * 4
    dbt(duck, "build", target="postgres")

    with duckdb.connect(str(duck)) as duck_con, psycopg2.connect(postgres) as pg_con:
        for mart in MARTS:
            duck_rel = duck_con.sql(f"select * from marts.{mart}")
            columns = [d[0] for d in duck_rel.description]
            with pg_con.cursor() as cur:
                cur.execute(
                    f"select {', '.join(f'{chr(34)}{c}{chr(34)}' for c in columns)} from marts.{mart}"
                )
                pg_rows = cur.fetchall()
            duck_rows = duck_rel.fetchall()
            assert duck_rows, mart
            assert _normalised(pg_rows) == _normalised(duck_rows), mart
