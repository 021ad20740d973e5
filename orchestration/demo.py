"""`retention demo`: the whole pipeline once, through Dagster, on a local sandbox.

Generate a scenario (or take one), serve it in this process as Stripe, Recurly and
Chargebee on free loopback ports with the clock frozen at its `as_of`, write its exit
sessions as the cancel page's drop files, point the sources at the sandbox through the
same environment variables a deployment uses, then run the code location's own jobs
in-process on the instance in DAGSTER_HOME: `billing_sync` (every load, every model and
dbt test), the `validation_30d` partitions from the first day with episodes to the day
before `as_of` (one backfill run), and `billing_writebacks_job` with the
project's catalog (writebacks.yml: a dry run until a system is switched to live, so the
demo records what it would send to billing and sends nothing). The runs are in that
instance's history, so `make ui` shows them afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb

from orchestration.marts_metadata import query
from orchestration.settings import (
    BILLING_SYSTEMS,
    DEFAULT_DAGSTER_HOME,
    DROP_FOLDER_ENV,
    DUCKDB_PATH_ENV,
    INSTANCE_TEMPLATE,
    PROJECT_DIR,
)
from orchestration.validation import SAVE_WINDOW, validation_partitions

DEFAULT_WORKDIR = PROJECT_DIR / ".demo"
DEFAULT_SEED = 7


class DemoError(RuntimeError):
    """The demo could not run or a run failed; the message says where to look."""


@dataclass
class DemoSummary:
    """The figures the demo prints, read back from the marts."""

    scenario: Path
    as_of: datetime
    database: Path
    dagster_home: Path
    log: Path
    ui_command: str
    run_ids: list[str]
    subscriptions: dict[str, int]
    episodes_by_status: dict[str, int]
    saved: int
    canceled: int
    pending: int
    saved_mrr: Decimal
    lost_mrr: Decimal
    validation_day: date | None  # None: as_of lies outside validation_30d's partitions
    validation_from: date | None  # the first day the demo validated (its backfill's start)
    validation_by_status: dict[str, int] = field(default_factory=dict)
    writebacks: dict[str, int] = field(default_factory=dict)  # "<status> (<mode>)" -> actions

    @property
    def save_rate(self) -> Decimal | None:
        """validation.md §5: saved / (saved + canceled) over validated outcomes."""
        decided = self.saved + self.canceled
        return Decimal(self.saved) / decided if decided else None

    def _validation_line(self) -> str:
        if self.validation_day is None:
            return "validation_30d skipped: as_of is outside its daily partitions"
        counts = ", ".join(f"{s} {n:,}" for s, n in self.validation_by_status.items())
        started = self.validation_day - SAVE_WINDOW
        return (
            f"validation_30d {self.validation_day} (episodes started {started}): "
            + (counts or "no episodes")
            + f"\n  (every day from {self.validation_from} validated, in one backfill run; the "
            "days before have no episodes, and the UI lists them as missing: see the asset's "
            "description)"
        )

    def render(self) -> str:
        rate = f"{self.save_rate:.1%}" if self.save_rate is not None else "n/a"
        lines = [
            f"scenario          {self.scenario} (as_of {self.as_of:%Y-%m-%dT%H:%M:%SZ})",
            f"dagster runs      {', '.join(self.run_ids)} (instance {self.dagster_home})",
            "",
            "subscriptions loaded",
            *(f"  {system:<24}{n:>10,}" for system, n in self.subscriptions.items()),
            "episodes by validation status",
            *(f"  {status:<24}{n:>10,}" for status, n in self.episodes_by_status.items()),
            f"  {'total':<24}{sum(self.episodes_by_status.values()):>10,}",
            f"save rate                 {rate:>10}  (saved {self.saved:,} / saved + canceled "
            f"{self.saved + self.canceled:,})",
            f"  pending                 {self.pending:>10,}  (saves whose 30-day window is still "
            "open: not in the rate yet)",
            f"saved MRR (USD)           {self.saved_mrr:>10,.2f}",
            f"lost MRR (USD)            {self.lost_mrr:>10,.2f}",
            self._validation_line(),
            "write-backs (writebacks.yml; marts.fct_billing_writebacks)",
            *(f"  {what:<24}{n:>10,}" for what, n in self.writebacks.items()),
            "  (a dry run sends nothing; to apply, set a system's mode: live and since: in "
            "writebacks.yml)",
            "",
            f"DuckDB file for BI tools: {self.database}",
            "  (marts.fct_exit_episodes, marts.rpt_retention_summary, "
            "marts.fct_repurchase_cohorts, marts.validation_30d_daily, …)",
            f"run log: {self.log}",
            "",
            f"Open the UI on these runs: {self.ui_command}   (then http://127.0.0.1:3000)",
            "To sync again from the UI, serve the scenario on the default ports first:",
            f"  .venv/bin/retention sandbox serve --frozen --scenario {self.scenario}",
        ]
        return "\n".join(lines)


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set variables for the runs and put the old values back after, so the demo leaves
    the calling process (a test, a shell session) as it found it."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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


def _scenario(path: Path | None, workdir: Path, customers: int, say: Callable[[str], None]):
    from sandbox.generate import GenerateOptions, write_scenario

    if path is not None:
        return path.resolve()
    path = workdir / "scenario.json"
    as_of = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    say(f"generating a scenario: {customers:,} customers, as_of {as_of:%Y-%m-%dT%H:%M:%SZ}")
    write_scenario(GenerateOptions(customers, DEFAULT_SEED, as_of), path)
    return path.resolve()


def summarise(database: Path, validation_day: date | None) -> dict:
    """The printed figures, from the marts (read-only: the runs are over)."""
    with duckdb.connect(str(database), read_only=True) as con:
        subs = dict(
            query(con, "select billing_system, count(*) from marts.dim_subscriptions group by 1")[1]
        )
        statuses = dict(
            query(
                con,
                "select validation_status, count(*) from marts.fct_exit_episodes "
                "group by 1 order by 2 desc, 1",
            )[1]
        )
        saved, canceled, pending, saved_mrr, lost_mrr = query(
            con,
            """
            select count(*) filter (where validated_outcome = 'saved'),
                   count(*) filter (where validated_outcome = 'canceled'),
                   count(*) filter (where validated_outcome = 'pending'),
                   coalesce(sum(saved_mrr), 0), coalesce(sum(lost_mrr), 0)
            from marts.fct_exit_episodes
            """,
        )[1][0]
        writebacks = dict(
            query(
                con,
                "select case when status = 'dry_run' then status "
                "else status || ' (' || replace(mode, '_', ' ') || ')' end, count(*)::integer "
                "from marts.fct_billing_writebacks group by 1 order by 1",
            )[1]
        )
        validation = (
            dict(
                query(
                    con,
                    "select validation_status, sum(episodes)::integer "
                    "from marts.validation_30d_daily "
                    "where partition_date = ? group by 1 order by 2 desc, 1",
                    [validation_day],
                )[1]
            )
            if validation_day
            else {}
        )
    return {
        "subscriptions": {s: subs.get(s, 0) for s in BILLING_SYSTEMS},
        "episodes_by_status": statuses,
        "saved": saved,
        "canceled": canceled,
        "pending": pending,
        "saved_mrr": Decimal(saved_mrr),
        "lost_mrr": Decimal(lost_mrr),
        "validation_by_status": validation,
        "writebacks": writebacks,
    }


def _ui_command(database: Path, drop: Path, dagster_home: Path) -> str:
    """`make ui` shows the default demo; another warehouse or instance needs naming."""
    defaults = (
        DEFAULT_WORKDIR.resolve() / "warehouse.duckdb",
        DEFAULT_WORKDIR.resolve() / "drop",
        DEFAULT_DAGSTER_HOME.resolve(),
    )
    if (database, drop, dagster_home) == defaults:
        return "make ui"
    return (
        f"{DUCKDB_PATH_ENV}={database} {DROP_FOLDER_ENV}={drop} DAGSTER_HOME={dagster_home} make ui"
    )


def _validation_days(database: Path, last: date) -> tuple[date, date]:
    """validation_30d's partitions the demo fills, in one backfill run: from the first day
    whose cohort has episodes to `last`. The days before have nothing to validate, and
    each day costs Dagster an event: every day since RETENTION_VALIDATION_START would
    take longer than the rest of the demo."""
    with duckdb.connect(str(database), read_only=True) as con:
        landed = query(con, "select min(first_landed_at) from marts.fct_exit_episodes")[1][0][0]
    first = date.fromisoformat(validation_partitions().get_first_partition_key())
    if landed is not None:
        first = max(first, landed.astimezone(UTC).date() + SAVE_WINDOW)
    return min(first, last), last


def _execute(
    defs, instance, job_name: str, say: Callable[[str], None], tags: Mapping[str, str] | None = None
) -> str:
    """One job of the code location, in this process; its run id. `tags`: a partition
    range, as a backfill launches it."""
    tags = tags or {}
    span = "...".join(tags.values())
    say(f"dagster: running job {job_name}" + (f" for {span}" if span else ""))
    job = defs.resolve_job_def(job_name)
    result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.is_step_failure and e.step_key]
        raise DemoError(f"run {result.run_id} of {job_name} failed in {', '.join(failed) or '?'}")
    return result.run_id[:8]


def _run_jobs(
    database: Path, validation_day: date | None, say: Callable[[str], None]
) -> tuple[list[str], date | None]:
    """The code location's own jobs on the DAGSTER_HOME instance; the run ids and the
    first validation day filled."""
    from dagster import DagsterInstance
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from orchestration.dbt_project import ensure_manifest

    say("loading the code location (dbt manifest parsed if stale)")
    ensure_manifest()
    from orchestration.definitions import build_definitions

    defs = build_definitions()
    first = None
    with DagsterInstance.get() as instance:
        run_ids = [_execute(defs, instance, "billing_sync", say)]
        if validation_day:  # the range reads the marts billing_sync has just built
            first, last = _validation_days(database, validation_day)
            tags = {
                ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
                ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
            }
            run_ids.append(_execute(defs, instance, "validation_30d_daily", say, tags))
        run_ids.append(_execute(defs, instance, "billing_writebacks_job", say))
    return run_ids, first


def run_demo(
    scenario: Path | None = None,
    database: Path | None = None,
    customers: int = 3000,
    workdir: Path = DEFAULT_WORKDIR,
) -> DemoSummary:
    """Everything once; returns the figures. Progress lines go to the console as it is
    on entry, tool output (dlt, dbt, Dagster) to `<workdir>/demo.log`."""
    from sandbox.app import start_sandbox
    from sandbox.exit_files import write_exit_session_files
    from sandbox.scenario import ScenarioError, load_scenario

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
    database = _fresh_database(database, workdir)
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
        say(f"tool output (dlt, dbt, dagster) goes to {log}")

        def progress(line: str) -> None:  # on the console and in the log
            say(line)
            print(line, flush=True)

        with (
            patched_environ(env),
            log.open("w") as out,
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(out),
        ):
            run_ids, validation_from = _run_jobs(database, validation_day, progress)
    except DemoError as exc:
        raise DemoError(f"{exc}; the run's output is in {log}") from None
    finally:
        sandbox.stop()
    return DemoSummary(
        ui_command=_ui_command(database, drop, dagster_home),
        scenario=scenario_path,
        as_of=loaded.as_of,
        database=database,
        dagster_home=dagster_home,
        log=log,
        run_ids=run_ids,
        validation_day=validation_day,
        validation_from=validation_from,
        **summarise(database, validation_day),
    )
