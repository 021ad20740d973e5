"""The same scenario on DuckDB and on Spark (#15): extracted into a DuckDB file and into
the Delta lake, built by dbt on each, gives the same marts, row for row, to 6 decimals.

Spark runs inside this process (dbt-spark's `session` method, as in the spark target),
once per module; its mart tables are read from their parquet folders with DuckDB."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from orchestration.extract import run_extract
from sandbox.app import start_sandbox
from sandbox.exit_files import write_exit_session_files
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.scenario import load_scenario

pytestmark = [pytest.mark.integration, pytest.mark.spark]
if shutil.which("java") is None:
    pytest.skip(
        "Spark needs Java (a JRE 17 on PATH, e.g. apt-get install openjdk-17-jre-headless)",
        allow_module_level=True,
    )

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
CUSTOMERS = 160  # the smallest scenario of the catalog tests: each system has every kind
DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"


@dataclass
class Built:
    folder: Path
    duckdb: Path
    lake: Path
    env: pytest.MonkeyPatch

    def dbt(self, target: str, *args: str) -> None:
        """dbt on `target` in this process; fails the test on a dbt failure."""
        from dbt.cli.main import dbtRunner

        self.env.setenv("RETENTION_WAREHOUSE", target)
        result = dbtRunner().invoke(
            [
                *args,
                *("--project-dir", str(DBT_PROJECT), "--profiles-dir", str(DBT_PROJECT)),
                *("--target-path", str(self.folder / f"dbt_target_{target}")),
                *("--log-path", str(self.folder / f"dbt_logs_{target}")),
            ]
        )
        assert result.success, f"dbt {' '.join(args)} on {target}: {result.exception or ''}"

    def extract(self, target: str) -> None:
        self.env.setenv("RETENTION_WAREHOUSE", target)
        results = run_extract(
            database=self.duckdb,
            exit_sessions_folder=self.folder / "drop",
            pipelines_dir=self.folder / "dlt",
        )
        assert [r.error for r in results] == [None] * 4


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Iterator[Built]:
    """The scenario served, extracted into DuckDB (built there) and into the lake."""
    folder = tmp_path_factory.mktemp("spark")
    write_scenario(GenerateOptions(CUSTOMERS, 7, AS_OF), folder / "scenario.json")
    scenario = load_scenario(folder / "scenario.json")
    write_exit_session_files(scenario, folder / "drop")
    sandbox = start_sandbox(scenario, frozen=True)
    with pytest.MonkeyPatch.context() as env:
        for system, url in sandbox.urls.items():
            env.setenv(f"SOURCES__{system.upper()}__BASE_URL", url)
        env.setenv("RETENTION_DUCKDB_PATH", str(folder / "warehouse.duckdb"))
        env.setenv("RETENTION_SPARK_LAKE", str(folder / "lake"))
        env.setenv("RETENTION_SPARK_WAREHOUSE_DIR", str(folder / "spark"))
        it = Built(folder, folder / "warehouse.duckdb", folder / "lake", env)
        try:
            it.extract("duckdb")
            it.extract("spark")
        finally:
            sandbox.stop()
        it.dbt("duckdb", "build")
        yield it


def spark():
    """The Spark session dbt started in this process."""
    from pyspark.sql import SparkSession

    return SparkSession.builder.getOrCreate()


def warehouse(built: Built) -> duckdb.DuckDBPyConnection:
    """The DuckDB file. Not read_only: dbt-duckdb may still hold it open in this process,
    and DuckDB refuses a second connection with a different configuration."""
    return duckdb.connect(str(built.duckdb))


def loaded_raw_tables(con) -> dict[str, int]:
    """The raw tables of the DuckDB extract holding rows (a table dlt made but never
    loaded into has no folder, so nothing to register, in the lake), with their counts."""
    names = con.sql(
        "select table_schema || '.' || table_name from information_schema.tables "
        "where table_schema like 'raw\\_%' escape '\\' and table_name not like '\\_dlt%' "
        "escape '\\' and table_schema not like '%\\_staging' escape '\\'"
    ).fetchall()
    counts = {name: con.sql(f"select count(*) from {name}").fetchall()[0][0] for (name,) in names}
    return {name: count for name, count in counts.items() if count}


def test_registration_finds_every_raw_table(built):
    built.dbt("spark", "run", "--select", "stg_stripe__syncs")
    with warehouse(built) as con:
        want = loaded_raw_tables(con)
    datasets = {name.split(".")[0] for name in want}
    registered = {
        f"{dataset}.{table.name}"
        for dataset in datasets
        for table in spark().catalog.listTables(dataset)
    }
    assert registered == set(want)
    for name, count in want.items():
        assert spark().sql(f"select count(*) from {name}").collect()[0][0] == count, name


def normal(value):
    """A value as both engines must agree on it: numbers to 6 decimals, instants in UTC."""
    if isinstance(value, float | Decimal) and not isinstance(value, bool):
        return Decimal(value).quantize(Decimal("0.000001"))
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value


def rows(con, relation: str) -> tuple[list[str], list[tuple]]:
    """Column names and the normalised rows, in one order whatever the engine's."""
    result = con.sql(f"select * from {relation}")
    data = [tuple(normal(v) for v in row) for row in result.fetchall()]
    return [d[0] for d in result.description], sorted(data, key=repr)


def test_every_mart_is_the_same_on_spark(built):
    built.dbt("spark", "build")
    tables = spark().conf.get("spark.sql.warehouse.dir").removeprefix("file:")
    with warehouse(built) as con:
        marts = [
            name
            for (name,) in con.sql(
                "select table_name from information_schema.tables "
                "where table_schema = 'marts' and table_type = 'BASE TABLE' order by 1"
            ).fetchall()
        ]
        assert "fct_exit_episodes" in marts
        for mart in marts:
            want = rows(con, f"marts.{mart}")
            got = rows(con, f"read_parquet('{tables}/marts.db/{mart}/*.parquet')")
            assert got[0] == want[0], mart
            assert len(got[1]) == len(want[1]), mart
            for got_row, want_row in zip(got[1], want[1], strict=True):
                assert got_row == want_row, mart
