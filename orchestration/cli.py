"""The production commands of `retention`: `extract`, and the `.env` loading every command
starts with (`retention_cli` assembles the command; `retention writebacks` is in
`writebacks_cli`)."""

from __future__ import annotations

import os
from pathlib import Path

import click
from dotenv import dotenv_values

from orchestration.logs import log_to_stderr
from orchestration.settings import (
    BILLING_SYSTEMS,
    BILLING_SYSTEMS_ENV,
    DEFAULT_DATABASE,
    DROP_FOLDER_ENV,
    DUCKDB_PATH_ENV,
    parse_billing_systems,
    warehouse_kind,
)


def load_env_file(path: Path) -> None:
    """Read `.env` from the working directory, as `dagster dev` does, so a key put there
    reaches `retention extract` too. A variable already set in the shell wins (a one-off
    override on the command line works); the names loaded are said, never the values."""
    if not path.is_file():
        return
    loaded = {
        name: value
        for name, value in dotenv_values(path).items()
        if value is not None and name not in os.environ
    }
    os.environ.update(loaded)
    if loaded:
        click.echo(f"read {path}: {', '.join(sorted(loaded))}", err=True)


def _systems(_ctx, _param, value: str) -> tuple[str, ...]:
    try:
        return parse_billing_systems(value, "--systems")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command(short_help="Load billing systems and exit sessions into the warehouse.")
@click.option(
    "--systems",
    default=",".join(BILLING_SYSTEMS),
    envvar=BILLING_SYSTEMS_ENV,
    show_default=True,
    callback=_systems,
    help="Comma-separated billing systems to load (empty for none); "
    f"default: those in {BILLING_SYSTEMS_ENV}, else all.",
)
@click.option(
    "--database",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_DATABASE,
    envvar=DUCKDB_PATH_ENV,
    show_default="warehouse.duckdb at the project root, the file dbt and Dagster use",
    show_envvar=True,
    help="DuckDB file to load into.",
)
@click.option(
    "--exit-sessions",
    "exit_sessions",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar=DROP_FOLDER_ENV,
    show_envvar=True,
    help="Folder of exit-session drop files (JSON Lines, CSV, Parquet) to load too "
    "(the folder Dagster's sensor watches).",
)
def extract(systems: tuple[str, ...], database: Path, exit_sessions: Path | None) -> None:
    """Load billing systems (and exit sessions) into the warehouse, with progress.

    Where each source points: RETENTION_ENVIRONMENT=live (or SOURCES__<SYSTEM>__ENVIRONMENT)
    reads the real service with SOURCES__<SYSTEM>__API_KEY (the environment or .env;
    Chargebee also SOURCES__CHARGEBEE__SITE); sandbox, the default, reads the local
    sandbox (start it with `retention sandbox serve`). Exit-session rows that
    break the contract go to raw_exit_sessions.exit_sessions_quarantine with their file,
    line and reason; the good rows load."""
    from billing_clients.targets import TargetError, resolve_target
    from orchestration.extract import run_extract
    from orchestration.resources import Warehouse

    log_to_stderr()
    for system in systems:
        try:
            click.echo(f"source {resolve_target(system).describe()}")
        except TargetError as exc:
            raise click.ClickException(str(exc)) from None
    summaries = run_extract(systems, database, exit_sessions)
    loaded = any(not s.error for s in summaries)
    where = Warehouse(kind=warehouse_kind(), database=str(database.resolve())).describe()
    click.echo(f"\n{'loaded into' if loaded else 'nothing loaded into'} {where}")
    click.echo(f"{'dataset':<20} {'table':<28} {'rows':>10}")
    for summary in summaries:
        for table, rows in sorted(summary.rows.items()):
            click.echo(f"{'raw_' + summary.name:<20} {table:<28} {rows:>10,}")
        status = f"FAILED: {summary.error}" if summary.error else "ok"
        if summary.rounds > 1 and not summary.error:
            status = f"ok, {summary.rounds} rounds"  # a checkpointed first sync says so
        click.echo(f"{'raw_' + summary.name:<20} {'(' + status + ')':<28} {summary.seconds:>9.1f}s")
    if any(s.error for s in summaries):
        raise click.ClickException(
            "some loads failed; see above (re-run to resume from the last committed state)"
        )
