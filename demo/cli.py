"""`retention demo`: the command; `demo.run` does the work (imported when it runs, so
`retention --help` stays quick)."""

from __future__ import annotations

from pathlib import Path

import click

from demo import DemoError


@click.command(short_help="Serve a scenario, run every job once, print the figures.")
@click.option(
    "--scenario",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Scenario to serve (default: generate one, as_of today 00:00 UTC).",
)
@click.option(
    "--database",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="New DuckDB file to build (default: .demo/warehouse.duckdb, rebuilt each time).",
)
@click.option(
    "--customers",
    type=click.IntRange(min=1),
    default=3000,
    show_default=True,
    help="Customers in the generated scenario.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the demo keeps its scenario, drop files, dlt state and log (default: .demo).",
)
def demo(
    scenario: Path | None, database: Path | None, customers: int, workdir: Path | None
) -> None:
    """Serve a scenario as local Stripe/Recurly/Chargebee, run every load, model and the
    30-day validation once through Dagster (instance in DAGSTER_HOME, default
    .dagster_home), and print what the marts say."""
    from demo.run import DEFAULT_WORKDIR, run_demo

    try:
        summary = run_demo(
            scenario=scenario,
            database=database,
            customers=customers,
            workdir=workdir or DEFAULT_WORKDIR,
        )
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("")
    click.echo(summary.render())
