"""dbt models as Dagster assets (dagster-dbt): one asset per model and seed, one asset
check per dbt test, grouped by layer (staging, intermediate, marts; the fx_rates seed in
reference). dbt sources carry `meta.dagster.asset_key` naming the dlt assets, so every
staging model hangs off the table dlt loads: one lineage graph from billing API to mart.

`dbt build` runs models and data tests in graph order and skips whatever sits downstream
of a failed test, so a broken staging table never feeds a mart; the run then fails.
"""

import json
import shutil
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
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
from dagster_duckdb import DuckDBResource
from duckdb import Error as DuckDBError

from orchestration.dbt_project import ensure_manifest, retention_dbt
from orchestration.marts_metadata import MARTS_METADATA
from orchestration.settings import DUCKDB_POOL

LAYERS = ("staging", "intermediate", "marts")
# Unit tests check the SQL against fixed inputs: they belong to CI (the dbt tests of the
# test suite), not to every hourly build, whose data they never look at (dbt's own advice).
BUILD = ["build", "--exclude-resource-type", "unit_test"]
# The dbt var that names the DuckDB file (dbt_project/profiles.yml).
DUCKDB_PATH_VAR = "duckdb_path"


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
    context: AssetExecutionContext, events: Iterator[Any], duckdb: DuckDBResource
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
    with duckdb.get_connection() as con:
        for event in held:
            if isinstance(event, Output):
                key = _event_key(context, event)
                try:
                    figures = MARTS_METADATA[key](con)
                except DuckDBError as exc:
                    context.log.warning("no figures for %s: %s", key.to_user_string(), exc)
                else:
                    event = event.with_metadata({**event.metadata, **figures})
            yield event


def _dbt_vars(duckdb: DuckDBResource) -> list[str]:
    """dbt's profile reads the warehouse file from the var `duckdb_path`
    (dbt_project/profiles.yml): the warehouse resource's file, as an absolute path (dbt
    runs in dbt_project/), so dlt, dbt and the figures share one file whatever the run's
    working directory. Given on dbt's command line, not through os.environ, which belongs
    to the whole process (other steps, other runs in a test session)."""
    return ["--vars", json.dumps({DUCKDB_PATH_VAR: str(Path(duckdb.database).resolve())})]


def _build_models(
    context: AssetExecutionContext, dbt: DbtCliResource, duckdb: DuckDBResource
) -> Iterator[Any]:
    invocation = dbt.cli([*BUILD, *_dbt_vars(duckdb)], context=context, raise_on_error=False)
    yield from with_marts_metadata(context, invocation.stream(), duckdb)
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
