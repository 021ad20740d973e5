"""`retention demo`: the whole pipeline once, through Dagster, on a local sandbox.

Generate a scenario (or take one), serve it in this process as Stripe, Recurly and
Chargebee on free loopback ports with the clock frozen at its `as_of`, write its exit
sessions as the cancel page's drop files, then run the code location's own jobs on the
instance in DAGSTER_HOME, in a process started with the environment a deployment would
set (`demo.jobs`: the sources pointed at the sandbox): `billing_sync` (every load, every
model and dbt test), the `validation_30d` partitions from the first day with episodes to
the day before `as_of` (one backfill run), and `billing_writebacks_job` with the
project's catalog (writebacks.yml: a dry run until a system is switched to live, so the
demo records what it would send to billing and sends nothing). The runs are in that
instance's history, so `make ui` shows them afterwards. The warehouse is the one
RETENTION_WAREHOUSE picks: a new DuckDB file, a Postgres database holding no warehouse
yet (DESTINATION__POSTGRES__CREDENTIALS), or Spark on a new lake and Spark warehouse folder
in the work folder (the state, ledger included, in the new DuckDB file).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from demo import DemoError
from demo.summary import DemoSummary, summarise
from orchestration.marts_metadata import query
from orchestration.resources import Warehouse
from orchestration.settings import (
    DEFAULT_DAGSTER_HOME,
    DROP_FOLDER_ENV,
    DUCKDB_PATH_ENV,
    INSTANCE_TEMPLATE,
    POSTGRES_CREDENTIALS_ENV,
    PROJECT_DIR,
    SPARK_LAKE_ENV,
    SPARK_WAREHOUSE_DIR_ENV,
    postgres_credentials,
    warehouse_kind,
)
from orchestration.validation import validation_partitions
from sandbox.app import Sandbox, start_sandbox
from sandbox.exit_files import write_exit_session_files
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.scenario import ScenarioError, load_scenario

DEFAULT_WORKDIR = PROJECT_DIR / ".demo"
DEFAULT_SEED = 7


def ensure_dagster_home(path: Path) -> Path:
    """A DAGSTER_HOME with the project's instance settings (the `duckdb` pool limit)."""
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        shutil.copyfile(INSTANCE_TEMPLATE, config)
    return path.resolve()


def _fresh_database(database: Path | None, workdir: Path) -> Path:
    """The demo's own file is rebuilt each time; a file the user named must be new, since
    merging a second scenario into a warehouse mixes two worlds."""
    if database is None:
        database = workdir / "warehouse.duckdb"
        for stale in (database, database.with_name(database.name + ".wal")):
            stale.unlink(missing_ok=True)
    elif database.exists():
        raise DemoError(f"{database} exists: give the demo a new file (it loads one scenario)")
    database.parent.mkdir(parents=True, exist_ok=True)
    return database.resolve()


def _fresh_postgres(warehouse: Warehouse) -> None:
    """The demo loads one scenario: into a Postgres database that holds none yet (no
    `marts`, no `raw_*` schema), never over someone's warehouse."""
    with warehouse.get_connection() as con:
        taken = query(
            con,
            "select schema_name from information_schema.schemata "
            "where schema_name = 'marts' or schema_name like 'raw!_%' escape '!' order by 1",
        )[1]
    if taken:
        raise DemoError(
            f"{warehouse.describe()} already holds a warehouse (schemas "
            f"{', '.join(name for (name,) in taken)}): give the demo a new database "
            f"({POSTGRES_CREDENTIALS_ENV})"
        )


def _fresh_spark(kind: str, workdir: Path) -> dict[str, str]:
    """On Spark, the demo's own lake and Spark warehouse folder (models' files and the
    metastore) under `workdir`, emptied, as the variables the runs read: one scenario
    per lake. Nothing elsewhere."""
    if kind != "spark":
        return {}
    places = {
        SPARK_LAKE_ENV: workdir / "lake",
        SPARK_WAREHOUSE_DIR_ENV: workdir / "spark-warehouse",
    }
    for folder in places.values():
        shutil.rmtree(folder, ignore_errors=True)
    return {name: str(folder) for name, folder in places.items()}


def _scenario(path: Path | None, workdir: Path, customers: int, say: Callable[[str], None]):
    if path is not None:
        return path.resolve()
    path = workdir / "scenario.json"
    as_of = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    say(f"generating a scenario: {customers:,} customers, as_of {as_of:%Y-%m-%dT%H:%M:%SZ}")
    write_scenario(GenerateOptions(customers, DEFAULT_SEED, as_of), path)
    return path.resolve()


def _ui_command(database: Path, drop: Path, dagster_home: Path, spark: Mapping[str, str]) -> str:
    """`make ui` shows the default demo; another warehouse or instance needs naming, and
    so do the demo's own lake and Spark folder (`spark`: their variables)."""
    defaults = (
        DEFAULT_WORKDIR.resolve() / "warehouse.duckdb",
        DEFAULT_WORKDIR.resolve() / "drop",
        DEFAULT_DAGSTER_HOME.resolve(),
    )
    if (database, drop, dagster_home) == defaults and not spark:
        return "make ui"
    places = "".join(f"{name}={value} " for name, value in spark.items())
    return (
        f"{places}{DUCKDB_PATH_ENV}={database} {DROP_FOLDER_ENV}={drop} "
        f"DAGSTER_HOME={dagster_home} make ui"
    )


def _runs_environment(
    sandbox: Sandbox, database: Path, drop: Path, dagster_home: Path, workdir: Path
) -> dict[str, str]:
    """What a deployment on this sandbox would set: the variables the code location reads."""
    env = {
        DUCKDB_PATH_ENV: str(database),
        DROP_FOLDER_ENV: str(drop),
        "DAGSTER_HOME": str(dagster_home),
        "SANDBOX_API_KEY": sandbox.api_key,
        "DLT_DATA_DIR": str(workdir / "dlt"),
    }
    for system, url in sandbox.urls.items():
        env[f"SOURCES__{system.upper()}__BASE_URL"] = url
        env[f"SOURCES__{system.upper()}__API_KEY"] = sandbox.api_key
    return env


def _run_jobs(
    env: Mapping[str, str],
    database: Path,
    validation_day: date | None,
    log: Path,
    say: Callable[[str], None],
) -> tuple[list[str], date | None]:
    """`demo.jobs` in a new process with `env` added to this one's environment, its output
    in `log`, its progress on the console; the run ids and the first validation day."""
    command = [sys.executable, "-m", "demo.jobs", "--database", str(database)]
    if validation_day:
        command += ["--validation-day", validation_day.isoformat()]
    read, write = os.pipe()
    outcome: dict = {}
    with (
        log.open("w") as out,
        subprocess.Popen(
            [*command, "--report-fd", str(write)],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=(write,),
        ) as child,
    ):
        os.close(write)  # the child holds the only writing end: its exit ends the loop
        with os.fdopen(read) as reports:
            for line in reports:
                message = json.loads(line)
                if "say" in message:
                    say(message["say"])
                else:
                    outcome = message
    if "error" in outcome:
        raise DemoError(outcome["error"])
    if child.returncode or "run_ids" not in outcome:
        raise DemoError(f"the Dagster runs stopped (exit status {child.returncode})")
    first = outcome["validation_from"]
    return outcome["run_ids"], first and date.fromisoformat(first)


def run_demo(
    scenario: Path | None = None,
    database: Path | None = None,
    customers: int = 3000,
    workdir: Path = DEFAULT_WORKDIR,
) -> DemoSummary:
    """Everything once; returns the figures. Progress lines go to the console as it is
    on entry, tool output (dlt, dbt, Dagster) to `<workdir>/demo.log`."""
    console = sys.stdout

    def say(line: str) -> None:
        print(line, file=console, flush=True)

    workdir.mkdir(parents=True, exist_ok=True)
    workdir = workdir.resolve()
    scenario_path = _scenario(scenario, workdir, customers, say)
    try:  # before anything is deleted: a bad scenario leaves the last demo as it was
        loaded = load_scenario(scenario_path)
    except ScenarioError as exc:
        raise DemoError(f"{scenario_path}: {exc}\nnothing was changed") from None
    try:  # before anything is deleted too
        kind = warehouse_kind()
        if kind == "postgres":
            _fresh_postgres(Warehouse(kind=kind))
    except ValueError as exc:  # an unknown warehouse, or Postgres without credentials
        raise DemoError(str(exc)) from None
    database = _fresh_database(database, workdir)
    spark = _fresh_spark(kind, workdir)
    warehouse = Warehouse(
        kind=kind, database=str(database), spark_warehouse_dir=spark.get(SPARK_WAREHOUSE_DIR_ENV)
    )
    drop = workdir / "drop"
    shutil.rmtree(drop, ignore_errors=True)
    write_exit_session_files(loaded, drop)
    dagster_home = ensure_dagster_home(Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME))
    log = workdir / "demo.log"
    # The latest whole day at as_of: its partition validates the cohort of as_of − 31 days
    # (none for a scenario dated before the first partition or after today).
    validation_day = loaded.as_of.date() - timedelta(days=1)
    if not validation_partitions().has_partition_key(validation_day.isoformat()):
        say(f"validation_30d: no partition for {validation_day}, skipped")
        validation_day = None

    sandbox = start_sandbox(loaded, frozen=True)
    try:
        say(
            "sandbox (clock frozen at as_of): "
            + ", ".join(f"{s} {u}" for s, u in sandbox.urls.items())
        )
        env = _runs_environment(sandbox, database, drop, dagster_home, workdir) | spark
        say(f"tool output (dlt, dbt, dagster) goes to {log}")
        run_ids, validation_from = _run_jobs(env, database, validation_day, log, say)
    except DemoError as exc:
        raise DemoError(f"{exc}; the run's output is in {log}") from None
    finally:
        sandbox.stop()
    return DemoSummary(
        ui_command=_ui_command(database, drop, dagster_home, spark),
        drop=drop,
        scenario=scenario_path,
        as_of=loaded.as_of,
        database=database,
        dagster_home=dagster_home,
        log=log,
        run_ids=run_ids,
        validation_day=validation_day,
        validation_from=validation_from,
        postgres=str(postgres_credentials()) if warehouse.kind == "postgres" else None,
        **summarise(warehouse, validation_day),
    )
