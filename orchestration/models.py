"""dbt models as Dagster assets (dagster-dbt): one asset per model and seed, one asset
check per dbt test, grouped by layer (staging, intermediate, marts; the fx_rates seed in
reference). dbt sources carry `meta.dagster.asset_key` naming the dlt assets, so every
staging model hangs off the table dlt loads: one lineage graph from billing API to mart.

`dbt build` runs models and data tests in graph order and skips whatever sits downstream
of a failed test, so a broken staging table never feeds a mart; the run then fails.
"""

import shutil
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Output,
)
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)

from orchestration.dbt_project import ensure_manifest, retention_dbt
from orchestration.marts_metadata import MARTS_METADATA
from orchestration.resources import WAREHOUSE_ERRORS, Warehouse
from orchestration.settings import DUCKDB_POOL

LAYERS = ("staging", "intermediate", "marts")
# Unit tests check the SQL against fixed inputs: they belong to CI (the dbt tests of the
# test suite), not to every hourly build, whose data they never look at (dbt's own advice).
BUILD = ["build", "--exclude-resource-type", "unit_test"]


class RetentionDbtTranslator(DagsterDbtTranslator):
    """dagster-dbt's keys (the model name) and kinds (dbt, duckdb); the group is the
    model's layer, its folder under models/. The tests of a dbt source are checks of the
    load asset it names (`meta.dagster.asset_key`): otherwise dagster-dbt records them as
    observations and warns about each one on every build."""

    def __init__(self) -> None:
        super().__init__(DagsterDbtTranslatorSettings(enable_source_tests_as_checks=True))

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "reference"
        fqn = dbt_resource_props.get("fqn", [])
        if len(fqn) > 2 and fqn[1] in LAYERS:
            return fqn[1]
        return super().get_group_name(dbt_resource_props)


def _event_key(context: AssetExecutionContext, event: object) -> AssetKey | None:
    if isinstance(event, Output):
        return context.asset_key_for_output(event.output_name)
    if isinstance(event, AssetCheckResult | AssetCheckEvaluation):
        return event.asset_key
    return None


def with_marts_metadata(
    context: AssetExecutionContext, events: Iterator[Any], warehouse: Warehouse
) -> Iterator[Any]:
    """Pass dbt's events through, holding back those of the marts that get figures until
    dbt has exited: DuckDB is locked by dbt while it runs, and the figures are read
    after. The held outputs are then released with the figures attached; figures that
    cannot be read are logged, never a reason to lose a materialisation dbt made."""
    held: list[Any] = []
    for event in events:
        if _event_key(context, event) in MARTS_METADATA:
            held.append(event)
        else:
            yield event
    if not held:
        return
    with warehouse.get_connection() as con:
        for event in held:
            if isinstance(event, Output):
                key = _event_key(context, event)
                try:
                    figures = MARTS_METADATA[key](con)
                except WAREHOUSE_ERRORS as exc:
                    context.log.warning("no figures for %s: %s", key.to_user_string(), exc)
                else:
                    event = event.with_metadata({**event.metadata, **figures})
            yield event


def _build_models(
    context: AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse
) -> Iterator[Any]:
    warehouse.prepare_dbt()
    invocation = dbt.cli([*BUILD, *warehouse.dbt_args()], context=context, raise_on_error=False)
    yield from with_marts_metadata(context, invocation.stream(), warehouse)
    if not invocation.is_successful():
        raise invocation.get_error()  # its artifacts stay in target/ for the post-mortem
    # Each invocation writes ~6 MB of artifacts to its own folder in target/: an hourly
    # schedule would pile up gigabytes, and a successful run's are not looked at again.
    shutil.rmtree(invocation.target_path, ignore_errors=True)


@cache
def dbt_models() -> AssetsDefinition:
    """The dbt assets, made when the definitions load rather than on import: they are
    read from the manifest, which may first need a parse (`ensure_manifest`). Made once
    per process, as the jobs and the definitions share them."""
    return dbt_assets(
        manifest=ensure_manifest(),
        project=retention_dbt,
        dagster_dbt_translator=RetentionDbtTranslator(),
        name="dbt_models",
        pool=DUCKDB_POOL,
    )(_build_models)
