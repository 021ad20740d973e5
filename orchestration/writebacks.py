"""The write-backs in Dagster: the `billing_writebacks` asset (its job is in
orchestration/jobs.py).

The asset runs `run_writebacks` over the marts (after the exit sessions and billing are
modelled) and keeps the ledger `writebacks.actions`, which dbt publishes as
`marts.fct_billing_writebacks`. Its materialisation shows what the run did (applied,
skipped, failed, dry run, still pending) and the ledger's totals; its check fails while
any action is failed, listing them, so failures are visible in the UI. A failed action
is retried by launching the job with `retry_failed: true` (or `action_ids`) once the
catalog or the billing data is fixed.

Before deriving, the run imports the fast path's journal (the collector's state database,
`RETENTION_COLLECTOR_DB`): what the fast path applied within seconds of the click is in
the ledger as applied, never sent again; the materialisation shows how many rows came in.

The catalog is read when the run starts (`RETENTION_WRITEBACKS`, default
writebacks.yml): a bad catalog fails the run with every problem named, before anything
is derived or sent. Billing keys come from the `billing` resource, as the loads' do (its
`EnvVar` fields, then dlt's providers), resolved in the run's process: no key is written
into the definitions or the run storage.
"""

from functools import partial
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from orchestration.marts_metadata import markdown_table
from orchestration.resources import BillingTargets, Warehouse
from orchestration.settings import DUCKDB_POOL
from orchestration.writebacks_cli import fast_path_journal
from writebacks.catalog import CatalogError, load_catalog
from writebacks.runner import RunSummary, run_writebacks
from writebacks.systems import writer_for

WRITEBACKS_GROUP = "writebacks"
# What the actions are derived from, and the mart over the ledger (dbt models' keys).
UPSTREAM = [
    AssetKey(["marts", m]) for m in ("fct_exit_sessions", "fct_exit_episodes", "dim_subscriptions")
]
LEDGER_MART = AssetKey(["marts", "fct_billing_writebacks"])
NO_FAILURES = "no_failed_writebacks"


class WritebackConfig(Config):
    """`retry_failed`: try every failed action again; `action_ids`: only these."""

    retry_failed: bool = False
    action_ids: list[str] = Field(default_factory=list)


@asset(
    name="billing_writebacks",
    group_name=WRITEBACKS_GROUP,
    deps=UPSTREAM,
    kinds={"python", "duckdb"},
    pool=DUCKDB_POOL,
    check_specs=[AssetCheckSpec(NO_FAILURES, asset="billing_writebacks")],
    description="Cancels and accepted offers applied in Stripe, Recurly and Chargebee "
    "exactly once (or dry-run), per writebacks.yml; the ledger is writebacks.actions.",
)
def billing_writebacks(
    context: AssetExecutionContext,
    config: WritebackConfig,
    warehouse: Warehouse,
    billing: BillingTargets,
):
    try:
        catalog = load_catalog()
    except CatalogError as exc:
        raise Failure(description=str(exc)) from None
    retry: bool | list[str] = config.action_ids or config.retry_failed
    with warehouse.get_connection() as db, fast_path_journal() as journal:
        writers = partial(writer_for, settings=billing.settings())
        summary = run_writebacks(db, catalog, writers, retry_failed=retry, journal=journal)
    context.log.info("write-backs: %s", dict(summary.outcomes))
    yield MaterializeResult(metadata=run_metadata(summary))
    yield no_failures_check(summary)


def run_metadata(summary: RunSummary) -> dict[str, Any]:
    """Counts of this run's outcomes, and the ledger's totals per system and status."""
    return {
        "applied": summary.count("applied"),
        "skipped": summary.count("skipped"),
        "failed": summary.count("failed") + summary.count("new_failed"),
        "dry_run": summary.count("dry_run"),
        "still_pending": summary.count("retry_later"),
        "imported_from_fast_path": summary.imported,
        "ledger": MetadataValue.md(
            markdown_table(
                ["billing system", "status", "actions"],
                [(s, st, n) for (s, st), n in sorted(summary.ledger.items())],
            )
        ),
    }


def no_failures_check(summary: RunSummary) -> AssetCheckResult:
    failures = summary.failures
    return AssetCheckResult(
        check_name=NO_FAILURES,
        passed=not failures,
        severity=AssetCheckSeverity.WARN,
        description=(
            f"{len(failures)} failed write-back(s): each error says what to fix (the "
            "catalog, a billing sync not yet run, or a billing id the cancel page sent that "
            "billing does not know); then run billing_writebacks with retry_failed: true"
            if failures
            else "no failed write-backs"
        ),
        metadata={
            "failed": len(failures),
            "failures": MetadataValue.md(
                markdown_table(
                    ["action", "system", "error"],
                    [(f["action_id"], f["billing_system"], f["error"]) for f in failures[:50]],
                )
            ),
        },
    )


WRITEBACKS = AssetSelection.assets(billing_writebacks)
