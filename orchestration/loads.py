"""Extraction assets: one Dagster asset per dlt resource (dagster-dlt), per billing
system and for the exit sessions, each fed by an origin asset (the billing API, the drop
folder) so the lineage graph starts where the data does.

Asset keys are dagster-dlt's own, `dlt_<source>_<resource>` (`dlt_stripe_subscriptions`),
which the dbt sources' `meta.dagster.asset_key` name: that is what joins the dlt and dbt
assets into one graph.

The dlt source is built when a run starts, not when the definitions load: where a source
points (sandbox or real service, and its key) is the `billing` resource's to say when the
run starts (its `EnvVar` fields, then dlt's providers: `billing_clients.targets`), and the
pipeline writes to the `warehouse` resource's warehouse (a DuckDB file, or Postgres). The sources given to `@dlt_assets` only
describe the resources and hold no key.
"""

import contextlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Failure,
    MaterializeResult,
    MetadataValue,
)
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData
from dlt.extract.source import DltSource
from dlt.pipeline.pipeline import Pipeline

from billing_clients.targets import TargetError
from orchestration.checkpoints import round_source, run_rounds, unfinished_listings
from orchestration.extract import (
    SOURCES,
    PipelinesBusy,
    billing_source,
    exclusive,
    pipeline,
    working_dir,
)
from orchestration.resources import BillingTargets, DropFolder, Warehouse
from orchestration.settings import DUCKDB_POOL, billing_systems_in_use

EXIT_SESSIONS = "exit_sessions"
DROP_FOLDER_KEY = AssetKey("exit_session_drop_folder")
_PLACEHOLDER_KEY = "resolved-when-a-run-starts"


def api_asset_key(system: str) -> AssetKey:
    """The origin asset of a billing system: its API (the real service or the sandbox)."""
    return AssetKey(f"{system}_api")


def origin_specs() -> list[AssetSpec]:
    """External assets Dagster does not materialise: where the loaded data comes from."""
    apis = [
        AssetSpec(
            api_asset_key(system),
            group_name=system,
            kinds={system},
            description=f"The {system.capitalize()} API (or the local sandbox standing in "
            "for it), read through its official SDK.",
        )
        for system in billing_systems_in_use()
    ]
    drop = AssetSpec(
        DROP_FOLDER_KEY,
        group_name=EXIT_SESSIONS,
        kinds={"file"},
        description="The folder the cancel page drops exit-session files into.",
    )
    return [*apis, drop]


@dataclass
class RetentionDltTranslator(DagsterDltTranslator):
    """dagster-dlt's keys, with the system's group, its kind and the origin as upstream
    (instead of dlt's default upstream key, which names no asset)."""

    group: str = "default"
    origin: AssetKey = DROP_FOLDER_KEY
    kind: str | None = None

    def get_asset_spec(self, data: DltResourceTranslatorData) -> AssetSpec:
        spec = (
            super()
            .get_asset_spec(data)
            .replace_attributes(group_name=self.group, deps=[self.origin])
        )
        return spec.merge_attributes(kinds={self.kind}) if self.kind else spec


def _describing_source(system: str):
    """The system's dlt source with a placeholder key and no address: enough to list its
    resources, and nothing secret ends up in the definitions. (No base URL on purpose:
    a Chargebee client with one switches certificate checks off process-wide.)"""
    module, name = SOURCES[system]
    factory = getattr(importlib.import_module(module), name)
    options = {"site": _PLACEHOLDER_KEY} if system == "chargebee" else {}
    return factory(api_key=_PLACEHOLDER_KEY, **options)


def require_whole_sync(context: AssetExecutionContext, system: str, keys: set[AssetKey]) -> None:
    """`syncs` records the API clock at the start of a run: the validation time T, which
    says "the billing data is current as of T". Recording it while only some tables were
    refreshed would claim fresh data that was not read, so it runs only with all of them
    (`keys`: the system's assets; a subset run's own definition holds only the subset)."""
    syncs = AssetKey(f"dlt_{system}_syncs")
    selected = context.selected_asset_keys
    if syncs in selected and selected != keys:
        raise Failure(
            f"{syncs.to_user_string()} records the validation time T and may only be "
            f"materialised together with every other {system} table; select the whole "
            f"{system} group (or leave {syncs.to_user_string()} out)."
        )


@contextlib.contextmanager
def sole_load(name: str, warehouse: Warehouse) -> Iterator[None]:
    """The dlt working folder of `name` for this run only, as `retention extract` holds it:
    a run of the CLI and one of Dagster on the same dlt state would take each other's
    load packages."""
    try:
        with exclusive([name], working_dir(warehouse.database, kind=warehouse.kind)):
            yield
    except PipelinesBusy as busy:
        raise Failure(str(busy)) from None


def warehouse_pipeline(name: str, warehouse: Warehouse):
    """The dlt pipeline of `name` into the run's warehouse."""
    return pipeline(name, warehouse.database, kind=warehouse.kind)


def checkpointed_run(
    context: AssetExecutionContext,
    dlt: DagsterDltResource,
    make_source: Callable[..., DltSource],
    dlt_pipeline: Pipeline,
    resources: set[str],
) -> list[MaterializeResult]:
    """dagster-dlt's run, in rounds until no full listing of `resources` (the run's
    selection) is unfinished (orchestration.checkpoints): each round commits its rows and
    the listing's progress, so a retried or re-launched run resumes where the last round
    ended. (dagster-dlt's `run` wipes the local dlt state first and restores it from the
    warehouse, where each round's load committed it; the first round's source is chosen
    from that state too, `round_source`.)

    Each `dlt.run` gives one MaterializeResult per asset, and a step that reports an asset
    twice fails: the rounds' results are merged into one per asset (`merge_rounds`)."""
    dlt_pipeline.sync_destination()  # the warehouse's state: a listing to resume included

    def run_round() -> list[MaterializeResult]:
        source = round_source(make_source, dlt_pipeline.state, resources)
        return list(dlt.run(context=context, dlt_source=source, dlt_pipeline=dlt_pipeline))

    rounds = run_rounds(
        run_round, lambda: unfinished_listings(dlt_pipeline.state, resources), context.log
    )
    return merge_rounds(rounds)


def merge_rounds(rounds: list[list[MaterializeResult]]) -> list[MaterializeResult]:
    """One MaterializeResult per asset for a run of several rounds: dagster-dlt's metadata
    of the last round (the table's schema and name as they are now), with `rows_loaded`
    summed over the rounds, `jobs` of every round, `started_at` of the first and
    `dlt_rounds`. One round: its results as they are."""
    if len(rounds) == 1:
        return rounds[0]
    merged = []
    for last in rounds[-1]:
        same = [r for results in rounds for r in results if r.asset_key == last.asset_key]
        metadata = dict(last.metadata or {})
        rows = sum(m.value for r in same if (m := (r.metadata or {}).get("rows_loaded")))
        if rows:
            metadata["rows_loaded"] = MetadataValue.int(rows)
        metadata["jobs"] = [job for r in same for job in (r.metadata or {}).get("jobs", [])]
        metadata["started_at"] = (same[0].metadata or {}).get("started_at")
        metadata["dlt_rounds"] = MetadataValue.int(len(rounds))
        merged.append(last._replace(metadata=metadata))
    return merged


def resource_keys(system: str, source: DltSource) -> dict[AssetKey, str]:
    """Each asset key of `system`'s dlt assets (dagster-dlt's `dlt_<source>_<resource>`)
    and the resource it loads."""
    return {AssetKey(f"dlt_{system}_{name}"): name for name in source.selected_resources}


def billing_assets(system: str) -> AssetsDefinition:
    """The dlt assets of one billing system, loading into raw_<system>."""
    described = _describing_source(system)
    resources = resource_keys(system, described)
    keys = set(resources)

    @dlt_assets(
        dlt_source=described,
        dlt_pipeline=pipeline(system, None),
        name=f"{system}_dlt",
        dagster_dlt_translator=RetentionDltTranslator(
            group=system, origin=api_asset_key(system), kind=system
        ),
        pool=DUCKDB_POOL,
    )
    def _sync(
        context: AssetExecutionContext,
        dlt: DagsterDltResource,
        warehouse: Warehouse,
        billing: BillingTargets,
    ) -> Iterator[MaterializeResult]:
        require_whole_sync(context, system, keys)
        try:
            target = billing.target(system)
        except TargetError as exc:
            raise Failure(str(exc)) from None
        context.log.info("source %s; into %s", target.describe(), warehouse.describe())
        with sole_load(system, warehouse):
            yield from checkpointed_run(
                context,
                dlt,
                partial(billing_source, target),
                warehouse_pipeline(system, warehouse),
                {resources[key] for key in context.selected_asset_keys if key in resources},
            )

    return _sync


def exit_sessions_assets() -> AssetsDefinition:
    """Exit sessions and their quarantine, from the files new in the drop folder."""
    from dlt_sources.exit_sessions import exit_sessions_source

    @dlt_assets(
        dlt_source=exit_sessions_source(folder=_PLACEHOLDER_KEY),
        dlt_pipeline=pipeline(EXIT_SESSIONS, None),
        name="exit_sessions_dlt",
        dagster_dlt_translator=RetentionDltTranslator(group=EXIT_SESSIONS, origin=DROP_FOLDER_KEY),
        pool=DUCKDB_POOL,
    )
    def _load(
        context: AssetExecutionContext,
        dlt: DagsterDltResource,
        warehouse: Warehouse,
        drop_folder: DropFolder,
    ) -> Iterator[MaterializeResult]:
        if context.is_subset:
            # Both tables come from one read of each new file, which then counts as loaded:
            # loading one alone would lose the other's rows of those files for good.
            raise Failure("exit sessions and their quarantine load together: select both")
        context.log.info("from %s; into %s", drop_folder.path, warehouse.describe())
        with sole_load(EXIT_SESSIONS, warehouse):
            yield from dlt.run(
                context=context,
                dlt_source=exit_sessions_source(folder=drop_folder.path),
                dlt_pipeline=warehouse_pipeline(EXIT_SESSIONS, warehouse),
            )

    return _load


def load_assets() -> list[AssetsDefinition]:
    """A load asset per billing system in use (RETENTION_BILLING_SYSTEMS), and the exit
    sessions'."""
    return [
        *(billing_assets(system) for system in billing_systems_in_use()),
        exit_sessions_assets(),
    ]
