"""Dagster resources: the tools (dlt, dbt), the warehouse (a DuckDB file, Postgres, or
Spark with its operational state in a DuckDB file: RETENTION_WAREHOUSE), the drop folder and where each billing system points.

Values come from the environment through `EnvVar` when set (resolved in each run's own
process, never written into the definitions or the run storage), else the project's
defaults. Billing keys are the `billing` resource's fields, `EnvVar`s of the variables dlt
reads (`SOURCES__<SYSTEM>__API_KEY`, ...); what no field gives is read from dlt's
providers when a run starts, `.dlt/secrets.toml` included, exactly as `retention extract`
reads it (`billing_clients.targets`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import psycopg2.extras
from dagster import Config, ConfigurableResource
from dagster_dbt import DbtCliResource
from dagster_dlt import DagsterDltResource
from dagster_duckdb import DuckDBResource
from pydantic import Field

from billing_clients.targets import (
    ENVIRONMENT_ENV,
    SANDBOX_KEY_ENV,
    DltSettings,
    Target,
    resolve_target,
    variable,
)
from orchestration.dbt_project import DBT_EXECUTABLE, retention_dbt
from orchestration.settings import (
    BILLING_SYSTEMS,
    DEFAULT_DATABASE,
    DEFAULT_DROP_FOLDER,
    DROP_FOLDER_ENV,
    DUCKDB_PATH_ENV,
    SPARK_WAREHOUSE_DIR_ENV,
    env_or_default,
    postgres_credentials,
    spark_lake,
    warehouse_kind,
)
from orchestration.spark import (
    LAKE_TABLE_FORMAT,
    attach_marts,
    lands_in_lake,
    load_as_the_lake_needs,
    publish_ledger,
    require_raw_tables,
    spark_tables_dir,
)

# What a failed warehouse statement raises, on either engine.
WAREHOUSE_ERRORS = (duckdb.Error, psycopg2.Error)
# The dbt var that names the DuckDB file (dbt_project/profiles.yml).
DUCKDB_PATH_VAR = "duckdb_path"


class PostgresResult:
    """A statement's result on Postgres, read as DuckDB's are: `description`, `fetchall`
    (no rows for a statement that returns none, where psycopg2 would raise)."""

    def __init__(self, cursor: psycopg2.extensions.cursor):
        self._cursor = cursor
        self.description = cursor.description

    def fetchall(self) -> list[tuple]:
        with self._cursor as cursor:
            return cursor.fetchall() if self.description is not None else []


def _pyformat(sql: str) -> str:
    """DuckDB's `?` placeholders as psycopg2's `%s` (a literal `%` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresConnection:
    """psycopg2 behind the part of DuckDB's connection the steps use, so their SQL is
    written once: `execute(sql, params)` with `?` placeholders, and each statement
    committed on its own (autocommit, DuckDB's default), `begin`/`commit` statements
    making a transaction as they do on DuckDB. The dialects' other differences are kept
    out of the SQL (no `group by all`, no integer division)."""

    def __init__(self, connection: psycopg2.extensions.connection):
        connection.autocommit = True
        self._connection = connection

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> PostgresResult:
        cursor = self._connection.cursor()
        if params:
            cursor.execute(_pyformat(sql), list(params))
        else:
            cursor.execute(sql)
        return PostgresResult(cursor)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._connection.cursor() as cursor:
            psycopg2.extras.execute_batch(cursor, _pyformat(sql), rows)

    def close(self) -> None:
        self._connection.close()


class Warehouse(DuckDBResource):
    """The warehouse every step reads and writes: the DuckDB file `database` (`kind`
    duckdb, the default), or Postgres, whose credentials are read through dlt's providers
    in the run's own process (`settings.postgres_credentials`): never a field, so never in
    the definitions or the run storage. On DuckDB, connections are dagster-duckdb's (with
    its retries on a held lock)."""

    kind: str = "duckdb"
    database: str = str(DEFAULT_DATABASE)  # the DuckDB file (not read on Postgres)
    # Spark: the session's warehouse folder, whose tables/ hold the marts' files; None:
    # RETENTION_SPARK_WAREHOUSE_DIR (or its default), as dbt's profile reads it.
    spark_warehouse_dir: str | None = None

    @contextmanager
    def get_connection(self) -> Iterator[Any]:
        """A DuckDB connection (DuckDB, and Spark, whose operational state stays in the
        DuckDB file beside the lake, its `marts` schema showing the Spark marts as views
        over their parquet files: `spark.attach_marts`), or a `PostgresConnection`: the
        same `execute` either way."""
        if self.kind in ("duckdb", "spark"):
            with super().get_connection() as con:
                if self.kind == "spark":
                    attach_marts(con, self._spark_tables())
                yield con
            return
        con = PostgresConnection(
            psycopg2.connect(postgres_credentials().to_native_representation())
        )
        try:
            yield con
        finally:
            con.close()

    def describe(self) -> str:
        """Where the warehouse is, for logs: the Postgres password masked."""
        if self.kind == "duckdb":
            return f"DuckDB {Path(self.database).resolve()}"
        if self.kind == "spark":
            return f"Spark lake {spark_lake()} (state: DuckDB {Path(self.database).resolve()})"
        return f"Postgres {postgres_credentials()}"

    def _spark_tables(self) -> Path:
        given = {SPARK_WAREHOUSE_DIR_ENV: self.spark_warehouse_dir}
        return spark_tables_dir(given if self.spark_warehouse_dir else os.environ)

    def prepare_dbt(self) -> None:
        """What dbt needs before it builds: on Spark, raw tables in the lake (else an
        error naming RETENTION_SPARK_LAKE and what to run) and the write-back ledger,
        which lives in the DuckDB state file, published to the lake where dbt registers
        it for fct_billing_writebacks. Nothing on DuckDB and Postgres, where dbt reads
        the warehouse the steps write."""
        if self.kind != "spark":
            return
        lake = spark_lake()
        require_raw_tables(lake)
        with self.get_connection() as con:
            publish_ledger(con, lake)

    def dbt_args(self) -> list[str]:
        """dbt's target, and its DuckDB file as an absolute path (dbt runs in
        dbt_project/), so dlt, dbt and the figures share one warehouse whatever the run's
        working directory. Given on dbt's command line, not through os.environ, which
        belongs to the whole process (other steps, other runs in a test session). On
        Postgres, dbt's profile reads dlt's credentials variable itself: they never pass
        through a command line."""
        database = json.dumps({DUCKDB_PATH_VAR: str(Path(self.database).resolve())})
        return ["--target", self.kind, "--vars", database]


class LakeAwareDltResource(DagsterDltResource):
    """dagster-dlt's runs; into the Spark lake, loaded as `retention extract` loads it:
    Delta tables, one row per key, vacuumed (`spark.load_as_the_lake_needs`). Without
    this, a Dagster sync into the lake would write plain parquet, where a merge appends."""

    def _run(self, context, dlt_source, dlt_pipeline, dagster_dlt_translator, **kwargs):
        if lands_in_lake(dlt_pipeline):
            load_as_the_lake_needs(dlt_pipeline)
            kwargs["table_format"] = LAKE_TABLE_FORMAT
        return super()._run(context, dlt_source, dlt_pipeline, dagster_dlt_translator, **kwargs)


class DropFolder(ConfigurableResource):
    """The folder the cancel page drops exit-session files into (JSON Lines, CSV,
    Parquet). The exit-sessions load and the sensor that notices new files share it."""

    path: str

    def files(self) -> list[Path]:
        """The files the exit-sessions source reads (or quarantines); none if the folder is
        absent, so a sensor waits quietly for the folder instead of failing every tick."""
        from dlt_sources.exit_sessions import drop_files

        return drop_files(Path(self.path))


class SystemTarget(Config):
    """One billing system's settings (`SOURCES__<SYSTEM>__<FIELD>`); None: dlt's providers."""

    environment: str | None = None
    api_key: str | None = None
    base_url: str | None = None
    site: str | None = None


class BillingTargets(ConfigurableResource):
    """Where the loads and the write-backs point, per billing system: the fields given here
    (`EnvVar`s in a deployment; literal values in a test), then dlt's providers."""

    environment: str | None = None
    sandbox_api_key: str | None = None
    systems: dict[str, SystemTarget] = Field(default_factory=dict)

    def settings(self) -> DltSettings:
        """The fields as the variables they stand for, over dlt's providers."""
        given = {ENVIRONMENT_ENV: self.environment, SANDBOX_KEY_ENV: self.sandbox_api_key}
        for system, fields in self.systems.items():
            given |= {variable(system, k): v for k, v in fields.model_dump().items()}
        return DltSettings({name: value for name, value in given.items() if value})

    def target(self, system: str) -> Target:
        return resolve_target(system, self.settings())


def billing_targets(env: Mapping[str, str] = os.environ) -> BillingTargets:
    """An `EnvVar` field for every billing variable set in `env`: the UI shows which
    variable each value comes from, never the value. The unset ones stay None, so dlt's
    providers (`.dlt/secrets.toml`) still give them when the run starts."""

    def field(name: str) -> str | None:
        return env_or_default(name, None, env)

    return BillingTargets(
        environment=field(ENVIRONMENT_ENV),
        sandbox_api_key=field(SANDBOX_KEY_ENV),
        systems={
            system: SystemTarget(
                **{name: field(variable(system, name)) for name in SystemTarget.model_fields}
            )
            for system in BILLING_SYSTEMS
        },
    )


def build_resources(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The resources every asset, job and sensor of the code location uses."""
    return {
        "dlt": LakeAwareDltResource(),
        "dbt": DbtCliResource(project_dir=retention_dbt, dbt_executable=DBT_EXECUTABLE),
        "warehouse": Warehouse(
            kind=warehouse_kind(env),
            database=env_or_default(DUCKDB_PATH_ENV, str(DEFAULT_DATABASE), env),
        ),
        "drop_folder": DropFolder(
            path=env_or_default(DROP_FOLDER_ENV, str(DEFAULT_DROP_FOLDER), env)
        ),
        "billing": billing_targets(env),
    }
