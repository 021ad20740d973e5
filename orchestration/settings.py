"""Where the orchestration reads and writes, from the environment with project defaults.

One environment variable per place, shared with the tools that already read it, so the
CLI, dbt, dlt and Dagster cannot disagree about which warehouse they work on:
`RETENTION_WAREHOUSE` (duckdb, postgres or spark) is also dbt's target (profiles.yml),
`RETENTION_DUCKDB_PATH` is also what dbt's profiles.yml reads, the Postgres credentials
are dlt's own (`DESTINATION__POSTGRES__CREDENTIALS`), which dbt's profile reads too,
`RETENTION_SPARK_LAKE` is where dlt lands the raw Delta tables and where dbt's
register_raw_tables() finds them, and `SOURCES__EXIT_SESSIONS__FOLDER` is what the dlt
exit-sessions source reads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from dagster import EnvVar

from billing_clients.systems import BILLING_SYSTEMS

# The drop folder (dlt's variable for the exit-sessions source's `folder`) and its default
# have their home with the collector, which writes into it and may not import orchestration.
from collector.settings import DEFAULT_DROP_FOLDER as DEFAULT_DROP_FOLDER
from collector.settings import DROP_FOLDER_ENV as DROP_FOLDER_ENV

if TYPE_CHECKING:
    from dlt.destinations.impl.postgres.configuration import PostgresCredentials

PROJECT_DIR = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_DIR / "dbt_project"
# The instance settings every DAGSTER_HOME of this project starts from (pools, telemetry).
INSTANCE_TEMPLATE = Path(__file__).resolve().parent / "dagster.yaml"

WAREHOUSE_ENV = "RETENTION_WAREHOUSE"
WAREHOUSES = ("duckdb", "postgres", "spark")  # the first is the default
DUCKDB_PATH_ENV = "RETENTION_DUCKDB_PATH"
# dlt's name for its Postgres destination's credentials (a connection string, or the
# [destination.postgres] credentials of .dlt/secrets.toml); dbt's profile reads the same.
POSTGRES_CREDENTIALS_ENV = "DESTINATION__POSTGRES__CREDENTIALS"
# Spark: the raw tables' root, a local folder or an object-store URL dlt's filesystem
# destination takes (s3://, gs://, az://, with credentials in dlt's
# DESTINATION__FILESYSTEM__CREDENTIALS__*); dbt's macros/spark_raw.sql reads it too.
SPARK_LAKE_ENV = "RETENTION_SPARK_LAKE"
# Spark's tables and Derby metastore (dbt's profiles.yml reads it; the Python steps read the
# marts' parquet folders under it).
SPARK_WAREHOUSE_DIR_ENV = "RETENTION_SPARK_WAREHOUSE_DIR"
SYNC_CRON_ENV = "RETENTION_SYNC_CRON"
WRITEBACKS_CRON_ENV = "RETENTION_WRITEBACKS_CRON"
VALIDATION_START_ENV = "RETENTION_VALIDATION_START"
# Names the billing systems in use, of BILLING_SYSTEMS (billing_clients/systems.py); dbt
# reads the same variable (macros/billing_systems.sql, dbt_project.yml).
BILLING_SYSTEMS_ENV = "RETENTION_BILLING_SYSTEMS"

# dbt's profile defaults to ../warehouse.duckdb from dbt_project/: the same file.
DEFAULT_DATABASE = PROJECT_DIR / "warehouse.duckdb"
# dbt's macros/spark_raw.sql defaults to ../lake from dbt_project/: the same folder.
DEFAULT_SPARK_LAKE = PROJECT_DIR / "lake"
DEFAULT_DAGSTER_HOME = PROJECT_DIR / ".dagster_home"
DEFAULT_SYNC_CRON = "0 * * * *"  # hourly, on the hour (UTC)
DEFAULT_WRITEBACKS_CRON = "30 * * * *"  # hourly, half an hour after the sync
DEFAULT_VALIDATION_START = "2024-01-01"

# Every asset that writes the DuckDB file runs in this pool; DuckDB allows one writer
# process, so the instance limits the pool to 1 (orchestration/dagster.yaml). Postgres
# takes concurrent writers: there the limit may be lifted.
DUCKDB_POOL = "duckdb"


def warehouse_kind(env: Mapping[str, str] = os.environ) -> str:
    """Which warehouse every step reads and writes: `duckdb` (the default), `postgres` or
    `spark`. Anything else is refused, naming the variable: a typo must not quietly load
    a DuckDB file while dbt builds Postgres."""
    value = (env.get(WAREHOUSE_ENV) or WAREHOUSES[0]).strip().lower()
    if value not in WAREHOUSES:
        raise ValueError(
            f"{WAREHOUSE_ENV}={value!r} is not a warehouse; choose "
            f"{', '.join(WAREHOUSES[:-1])} or {WAREHOUSES[-1]}"
        )
    return value


def spark_lake(env: Mapping[str, str] = os.environ) -> str:
    """Where the Spark warehouse's raw tables land: RETENTION_SPARK_LAKE as given when it
    is a URL (`s3://...`), else that folder (or the project's `lake/`) as an absolute path,
    so dlt and dbt, started from different folders, name the same one."""
    value = (env.get(SPARK_LAKE_ENV) or "").strip()
    if "://" in value:
        return value.rstrip("/")
    return str(Path(value or DEFAULT_SPARK_LAKE).resolve())


def postgres_credentials() -> PostgresCredentials:
    """The Postgres warehouse's credentials, read through dlt's providers (the
    environment, then .dlt/secrets.toml), exactly as dlt's loads read them. Printing them
    (`str`) masks the password. (dlt is imported here, not with the settings, which
    every command reads, `--help` included.)"""
    from dlt.common.configuration import resolve_configuration
    from dlt.common.configuration.exceptions import ConfigurationException
    from dlt.destinations.impl.postgres.configuration import PostgresCredentials

    try:
        return resolve_configuration(PostgresCredentials(), sections=("destination", "postgres"))
    except ConfigurationException:
        raise ValueError(
            f"{WAREHOUSE_ENV}=postgres needs the warehouse's credentials: set "
            f"{POSTGRES_CREDENTIALS_ENV}=postgresql://<user>:<password>@<host>:<port>/<database> "
            "(or [destination.postgres] credentials in .dlt/secrets.toml)"
        ) from None


def env_or_default(name: str, default: str, env: Mapping[str, str] = os.environ) -> str | EnvVar:
    """`EnvVar(name)` when the variable is set, so Dagster resolves it in the run's own
    process and shows where the value comes from; else the project default. (An unset
    EnvVar fails the run, and a default belongs to the project, not to the machine.)"""
    return EnvVar(name) if env.get(name) else default


def save_window(project_dir: Path = DBT_PROJECT_DIR) -> timedelta:
    """The save window of validation.md §2: the dbt var `save_window_days` as the project
    sets it (dbt_project.yml), so the daily validation and the models cannot disagree."""
    with (project_dir / "dbt_project.yml").open() as project:
        return timedelta(days=int(yaml.safe_load(project)["vars"]["save_window_days"]))


def setting(name: str, default: str, env: Mapping[str, str] = os.environ) -> str:
    """A plain setting read when the definitions are built (schedules, partitions)."""
    return env.get(name) or default


def parse_billing_systems(value: str, source: str) -> tuple[str, ...]:
    """A comma-separated list of billing systems, in the project's order; an unknown name
    is an error that says where it came from and what the choices are."""
    chosen = {s.strip() for s in value.split(",") if s.strip()}
    unknown = sorted(chosen - set(BILLING_SYSTEMS))
    if unknown:
        raise ValueError(
            f"{source}: unknown billing system(s) {', '.join(unknown)}; "
            f"choose from {', '.join(BILLING_SYSTEMS)}, comma-separated"
        )
    return tuple(s for s in BILLING_SYSTEMS if s in chosen)


def billing_systems_in_use(env: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The billing systems this deployment loads and models (all three when unset): an
    account on one system has no data, and no key, for the others."""
    value = env.get(BILLING_SYSTEMS_ENV)
    if value is None or not value.strip():
        return BILLING_SYSTEMS
    return parse_billing_systems(value, BILLING_SYSTEMS_ENV)
