"""The same scenario on DuckDB and on Spark (#15): extracted into a DuckDB file and into
the Delta lake, built by dbt on each, gives the same marts, row for row, to 6 decimals.

Spark runs inside this process (dbt-spark's `session` method, as in the spark target),
once per module; its mart tables are read from their parquet folders with DuckDB."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize

from orchestration.extract import run_extract
from orchestration.marts_metadata import MARTS_METADATA
from orchestration.resources import BillingTargets, Warehouse
from orchestration.serving import publish
from orchestration.spark import LEDGER_TABLE as LEDGER
from orchestration.validation import validation_30d
from orchestration.writebacks import billing_writebacks
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


# The Python steps on Spark (#15): validation_30d, the write-backs and the marts' figures
# read the Spark marts through the state DuckDB file's views and give DuckDB's answers;
# the ledger published to the lake makes the same fct_billing_writebacks. These run after
# the test above, on its Spark build, and add validation's table to the DuckDB file.

# The last 90 days to as_of: one single-run backfill.
VALIDATION_DAYS = {
    "dagster/asset_partition_range_start": (AS_OF.date() - timedelta(days=90)).isoformat(),
    "dagster/asset_partition_range_end": (AS_OF.date() - timedelta(days=1)).isoformat(),
}
# The ledger's wall-clock columns: when this test ran, not what was derived.
WALL_CLOCK = {"derived_at", "updated_at", "last_attempt_at", "applied_at"}


def steps(database: Path, kind: str) -> Warehouse:
    return Warehouse(kind=kind, database=str(database))


def run_assets(assets: list, wh: Warehouse, tags: dict[str, str] | None = None) -> None:
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            assets,
            instance=instance,
            resources={"warehouse": wh, "billing": BillingTargets(sandbox_api_key="unused")},
            tags=tags,
            raise_on_error=False,
        )
    assert result.success, [e.message for e in result.all_events if e.is_failure]


def table_rows(wh: Warehouse, relation: str, leave_out: set[str] = frozenset()) -> list[tuple]:
    with wh.get_connection() as con:
        names = [d[0] for d in con.execute(f"select * from {relation} limit 0").description]
        kept = ", ".join(f'"{n}"' for n in names if n not in leave_out)
        return rows(con, f"(select {kept} from {relation})")[1]


def duckdb_copy(built: Built) -> Path:
    """The DuckDB warehouse as a file of its own: dbt-duckdb may still hold the built one
    open in this process, with a configuration a Dagster resource's connection differs
    from, and validation's table must not join the marts the test above compares."""
    with warehouse(built) as con:
        con.execute("checkpoint")
    copy = built.folder / "steps.duckdb"
    shutil.copyfile(built.duckdb, copy)
    return copy


def test_the_python_steps_give_duckdbs_answers_on_spark(built):
    duck = steps(duckdb_copy(built), "duckdb")
    spark_state = steps(built.folder / "state.duckdb", "spark")
    with duck.get_connection() as d, spark_state.get_connection() as s:
        for key, figures in MARTS_METADATA.items():
            assert figures(s) == figures(d), key.to_user_string()

    for wh in (duck, spark_state):
        run_assets([validation_30d], wh, VALIDATION_DAYS)
        run_assets([billing_writebacks], wh)
    validated = table_rows(duck, "marts.validation_30d_daily")
    assert validated and table_rows(spark_state, "marts.validation_30d_daily") == validated
    ledger = table_rows(duck, "writebacks.actions", WALL_CLOCK)
    assert ledger and table_rows(spark_state, LEDGER, WALL_CLOCK) == ledger

    spark_state.prepare_dbt()  # publishes the ledger, as the dbt step does before dbt
    built.dbt("spark", "run", "--select", "fct_billing_writebacks")
    mart = table_rows(spark_state, "marts.fct_billing_writebacks")
    assert len(mart) == len(ledger) and mart == table_rows(spark_state, LEDGER)


def test_the_serving_copy_holds_the_spark_marts_and_validation(built, tmp_path):
    spark_state = steps(built.folder / "state.duckdb", "spark")
    with spark_state.get_connection() as con:
        build = publish(con, tmp_path / "serving.duckdb", "run-id", "test")
    assert "validation_30d_daily" in build.tables and "fct_exit_episodes" in build.tables
    with duckdb.connect(str(built.duckdb)) as con:
        assert (
            build.tables["fct_exit_episodes"]
            == con.sql("select count(*) from marts.fct_exit_episodes").fetchall()[0][0]
        )


def registration(name: str) -> tuple[list[str], str]:
    """A raw table's columns and when Spark created it."""
    described = spark().sql(f"describe table extended {name}").collect()
    created = next(r.data_type for r in described if r.col_name == "Created Time")
    return [c.name for c in spark().catalog.listColumns(name)], created


def test_registration_keeps_current_tables_and_re_creates_a_changed_one(built):
    """Re-created only when the lake's schema changed: an empty file with one more column
    (no row added, so the marts stay as they are) makes the table re-created with it."""
    kept, changed = "raw_stripe.customers", "raw_stripe.subscriptions"
    before = {name: registration(name) for name in (kept, changed)}
    folder = built.lake / "raw_stripe" / "subscriptions"
    latest = max(folder.glob("*.parquet"), key=lambda p: p.stat().st_mtime)
    empty = pq.read_table(latest).slice(0, 0)
    empty = empty.append_column("late_column", pa.array([], pa.string()))
    pq.write_table(empty, folder / "zz-late-column.parquet")

    built.dbt("spark", "run-operation", "register_raw_tables")
    assert registration(kept) == before[kept]
    columns, created = registration(changed)
    assert columns == [*before[changed][0], "late_column"] and created != before[changed][1]
