"""`retention writebacks check|run`: the write-back runner by hand (Dagster runs the same
function as the `billing_writebacks` asset)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from collector.settings import STATE_DB_ENV, collector_db
from orchestration.settings import DEFAULT_DATABASE, DUCKDB_PATH_ENV
from writebacks.catalog import CatalogError, catalog_path, json_schema, load_catalog

if TYPE_CHECKING:
    from collector.settings import CollectorSettings
    from writebacks.fastpath import FastPath
    from writebacks.journal import Journal


def _catalog_option(function):
    return click.option(
        "--catalog",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write-back catalog (default: $RETENTION_WRITEBACKS, else writebacks.yml).",
    )(function)


def _load(path: Path | None):
    try:
        return load_catalog(path or catalog_path())
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(short_help="Apply cancels and accepted offers in billing, exactly once.")
def writebacks() -> None:
    """Billing write-backs: cancels and accepted offers applied in billing exactly once."""


@writebacks.command()
@_catalog_option
@click.option(
    "--schema",
    is_flag=True,
    help="Print the catalog's JSON Schema (for editors and CI) instead of checking a file.",
)
def check(catalog: Path | None, schema: bool) -> None:
    """Validate the catalog and show what each billing system would do."""
    if schema:
        click.echo(json.dumps(json_schema(), indent=2))
        return
    loaded = _load(catalog)
    for system, settings in loaded.systems.items():
        since = settings.since.isoformat() if settings.since else "the beginning"
        click.echo(f"{system:<10} {settings.mode:<8} since {since}; cancel {settings.cancel}")
    for offer in loaded.offers.values():
        click.echo(f"offer {offer.offer_id:<20} {offer.type}")
    click.echo(f"{loaded.path}: ok")


@writebacks.command(short_help="Derive pending write-backs and apply (or dry-run) them.")
@_catalog_option
@click.option(
    "--database",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_DATABASE,
    envvar=DUCKDB_PATH_ENV,
    show_default="warehouse.duckdb at the project root, the file dbt and Dagster use",
    show_envvar=True,
    help="The DuckDB warehouse with the marts and the ledger (RETENTION_WAREHOUSE=postgres: "
    "the Postgres database instead).",
)
@click.option(
    "--state-db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The collector's state database, whose fast-path journal is imported first "
    f"(default: ${STATE_DB_ENV}, else .collector/collector.sqlite; none there: nothing to "
    "import).",
)
@click.option("--retry-failed", is_flag=True, help="Try failed actions again (after a fix).")
@click.option(
    "--retry-delay",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="First backoff (seconds) after a 5xx or dropped connection; doubles each retry.",
)
def run(
    catalog: Path | None,
    database: Path,
    state_db: Path | None,
    retry_failed: bool,
    retry_delay: float,
) -> None:
    """Derive pending write-backs from the marts and apply them (or dry-run them), after
    importing what the fast path did."""
    from billing_clients.retries import RetryPolicy
    from orchestration.logs import log_to_stderr
    from orchestration.resources import Warehouse
    from orchestration.settings import warehouse_kind
    from writebacks.runner import run_writebacks
    from writebacks.systems import writer_for

    loaded = _load(catalog)
    warehouse = Warehouse(kind=warehouse_kind(), database=str(database))
    if warehouse.kind == "duckdb" and not database.is_file():
        raise click.ClickException(
            f"no warehouse at {database}: run `retention extract` and the models first, or "
            f"name the file with --database or {DUCKDB_PATH_ENV}"
        )
    log_to_stderr()
    with warehouse.get_connection() as db, fast_path_journal(state_db) as journal:
        summary = run_writebacks(
            db,
            loaded,
            writer_for,
            retry_failed=retry_failed,
            policy=RetryPolicy(base_delay=retry_delay),
            journal=journal,
        )
    if summary.imported:
        click.echo(f"imported {summary.imported:,} fast-path journal row(s)")
    click.echo(f"{'system':<10} {'status':<8} {'actions':>8}")
    for (system, status), count in sorted(summary.ledger.items()):
        click.echo(f"{system:<10} {status:<8} {count:>8,}")
    for failure in summary.failures[:20]:
        click.echo(
            f"failed {failure['action_id']} ({failure['billing_system']}): {failure['error']}"
        )
    if summary.count("retry_later"):
        raise click.ClickException(
            f"{summary.count('retry_later')} action(s) still pending after retries: run again"
        )


@contextlib.contextmanager
def fast_path_journal(state_db: Path | None = None) -> Iterator[Journal | None]:
    """The fast path's journal in the collector's state database (`collector_db()`
    unless given), or None when no collector ever ran here: a run never creates the file."""
    from writebacks.journal import Journal

    path = state_db or collector_db()
    if not path.is_file():
        yield None
        return
    journal = Journal(path)
    try:
        yield journal
    finally:
        journal.close()


@contextlib.contextmanager
def open_fast_path(settings: CollectorSettings) -> Iterator[FastPath | None]:
    """The fast path for `retention collector serve` (collector.cli's factory): the
    catalog, the marts of the configured warehouse (the serving copy on DuckDB and Spark,
    the marts schema on Postgres), the billing writers and the save window as the
    scheduled run has them. None when the catalog turns every system off."""
    from orchestration.resources import Warehouse
    from orchestration.serving import serving_path
    from orchestration.settings import save_window, setting, warehouse_kind
    from writebacks.fastpath import FastPath, serving_marts
    from writebacks.systems import writer_for

    loaded = _load(None)
    if all(system.mode == "off" for system in loaded.systems.values()):
        yield None
        return
    kind = warehouse_kind()
    if kind == "postgres":
        marts = Warehouse(kind=kind).get_connection
    else:
        database = Path(setting(DUCKDB_PATH_ENV, str(DEFAULT_DATABASE)))
        marts = serving_marts(serving_path(database))
    fast = FastPath(settings.state_db, loaded, marts, writer_for, window=save_window())
    fast.wait_ready(60)  # the collector answers once the first click is as fast as the next
    try:
        yield fast
    finally:
        fast.close()
