"""The Dagster code location: asset keys and groups, the dlt → dbt lineage edges, jobs,
schedules, the drop-folder sensor, pools, and no secret in the definitions."""

from __future__ import annotations

import importlib

import orjson
import pytest
from dagster import AssetKey, DagsterInstance, build_sensor_context, materialize

from orchestration.extract import BILLING_SYSTEMS, SOURCES

pytestmark = pytest.mark.integration
LOAD_GROUPS = {*BILLING_SYSTEMS, "exit_sessions"}


@pytest.fixture(scope="module")
def defs(dbt_manifest, tmp_path_factory):
    from orchestration.definitions import build_definitions

    with pytest.MonkeyPatch.context() as env:
        env.setenv("DLT_DATA_DIR", str(tmp_path_factory.mktemp("dlt")))  # pipelines' dirs
        return build_definitions()


@pytest.fixture(scope="module")
def graph(defs):
    return defs.resolve_asset_graph()


def _resources(system: str) -> list[str]:
    module, name = SOURCES[system]
    factory = getattr(importlib.import_module(module), name)
    options = {"site": "x"} if system == "chargebee" else {}
    return list(factory(api_key="x", **options).selected_resources)


@pytest.mark.parametrize("system", BILLING_SYSTEMS)
def test_every_billing_resource_is_an_asset_fed_by_the_api(graph, system):
    for resource in _resources(system):
        node = graph.get(AssetKey(f"dlt_{system}_{resource}"))
        assert node.group_name == system
        assert {"dlt", "duckdb", system} <= set(node.kinds)
        assert node.parent_keys == {AssetKey(f"{system}_api")}
    assert "syncs" in _resources(system)  # the validation time T is an asset too


def test_exit_sessions_are_assets_fed_by_the_drop_folder(graph):
    for table in ("exit_sessions", "exit_sessions_quarantine"):
        node = graph.get(AssetKey(f"dlt_exit_sessions_{table}"))
        assert node.group_name == "exit_sessions"
        assert node.parent_keys == {AssetKey("exit_session_drop_folder")}


def test_every_dbt_source_hangs_off_the_dlt_asset_that_loads_it(graph, dbt_manifest):
    """The sources YAML's meta.dagster.asset_key names keys dagster-dlt really makes (or,
    for the write-back ledger, the write-back asset), and every model reading a source
    has that asset as its parent."""
    manifest = orjson.loads(dbt_manifest.read_bytes())
    source_keys = {
        uid: AssetKey(source["meta"]["dagster"]["asset_key"])
        for uid, source in manifest["sources"].items()
    }
    assert len(source_keys) == 27  # incl. Chargebee 1.0 plans/addons, Recurly redemptions
    for key in source_keys.values():
        assert graph.get(key).group_name in {*LOAD_GROUPS, "writebacks"}, key
    edges = 0
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model":
            continue
        model = graph.get(AssetKey([node["config"]["schema"], node["name"]]))
        for upstream in node["depends_on"]["nodes"]:
            if upstream in source_keys:
                assert source_keys[upstream] in model.parent_keys, (model.key, upstream)
                edges += 1
    assert edges > 20  # every table but stripe events is read by a staging model
    stg = graph.get(AssetKey(["staging", "stg_stripe__subscriptions"]))
    assert AssetKey("dlt_stripe_subscriptions") in stg.parent_keys


def test_models_are_grouped_by_layer_with_tests_as_checks(graph, defs):
    groups = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if "dbt" in node.kinds:
            assert set(node.kinds) == {"dbt", "duckdb"}
            groups.setdefault(node.group_name, set()).add(key.path[0])
    assert groups == {
        "reference": {"reference"},
        "staging": {"staging"},
        "intermediate": {"intermediate"},
        "marts": {"marts"},
    }
    checks = {(c.asset_key, c.name) for c in graph.asset_check_keys}
    assert (AssetKey(["marts", "fct_exit_episodes"]), "unique_fct_exit_episodes_episode_id") in {
        (k, n) for k, n in checks
    }
    assert len(checks) > 50


def test_one_graph_from_every_origin_to_the_marts(graph):
    upstream, todo = set(), [AssetKey(["marts", "fct_exit_episodes"])]
    while todo:
        parents = graph.get(todo.pop()).parent_keys - upstream
        upstream |= parents
        todo.extend(parents)
    origins = {AssetKey(f"{s}_api") for s in BILLING_SYSTEMS} | {
        AssetKey("exit_session_drop_folder")
    }
    assert origins <= upstream
    validation = graph.get(AssetKey("validation_30d"))
    assert validation.parent_keys == {AssetKey(["marts", "fct_exit_episodes"])}
    assert validation.partitions_def is not None


def test_every_warehouse_writer_is_in_the_duckdb_pool(defs, graph):
    # webhook_outbox writes the collector's state SQLite file, never the warehouse.
    not_warehouse = {AssetKey("webhook_outbox")}
    writers = {graph.get(key).assets_def for key in graph.materializable_asset_keys - not_warehouse}
    assert (
        len(writers) == 8
    )  # four loads, the dbt models, validation_30d, write-backs, serving_marts
    assert {assets_def.op.pool for assets_def in writers} == {"duckdb"}
    assert graph.get(AssetKey("webhook_outbox")).assets_def.op.pool is None
    for job in defs.resolve_all_job_defs():
        assert job.executor_def.name == "in_process", job.name


def test_the_webhook_outbox_has_its_job_and_a_stopped_sensor(defs):
    from dagster import DefaultSensorStatus

    jobs = {job.name: job for job in defs.resolve_all_job_defs()}
    assert jobs["webhooks_deliver"].asset_layer.selected_asset_keys == {AssetKey("webhook_outbox")}
    sensor = defs.resolve_sensor_def("webhook_outbox_sensor")
    assert sensor.default_status == DefaultSensorStatus.STOPPED


def test_jobs_select_loads_then_models(defs, graph):
    jobs = {job.name: job for job in defs.resolve_all_job_defs()}
    selected = {name: jobs[name].asset_layer.selected_asset_keys for name in jobs}
    models = {k for k in graph.materializable_asset_keys if "dbt" in graph.get(k).kinds}
    loads = {k for k in graph.materializable_asset_keys if graph.get(k).group_name in LOAD_GROUPS}
    serving = {AssetKey("serving_marts")}
    assert selected["billing_sync"] == loads | models | serving
    writebacks = AssetKey("billing_writebacks")
    assert selected["exit_sessions_load"] == models | {writebacks} | serving | {
        k for k in loads if graph.get(k).group_name == "exit_sessions"
    }
    assert selected["validation_30d_daily"] == {AssetKey("validation_30d")} | serving
    ledger = AssetKey(["marts", "fct_billing_writebacks"])
    assert selected["billing_writebacks_job"] == {writebacks, ledger} | serving


def test_writebacks_hang_between_the_marts_and_the_ledger_mart(graph):
    """Derived from the exit-session and subscription marts; published by dbt as
    marts.fct_billing_writebacks; failures surface as a check."""
    node = graph.get(AssetKey("billing_writebacks"))
    assert node.group_name == "writebacks"
    assert node.parent_keys == {
        AssetKey(["marts", m])
        for m in ("fct_exit_sessions", "fct_exit_episodes", "dim_subscriptions")
    }
    assert graph.get(AssetKey(["marts", "fct_billing_writebacks"])).parent_keys == {
        AssetKey("billing_writebacks")
    }
    assert [c.name for c in node.check_keys] == ["no_failed_writebacks"]


def test_schedules_hourly_sync_configurable_and_daily_validation(defs, monkeypatch):
    schedules = {s.name: s for s in defs.get_repository_def().schedule_defs}
    assert schedules["billing_sync_schedule"].cron_schedule == "0 * * * *"
    assert schedules["billing_sync_schedule"].job_name == "billing_sync"
    assert schedules["validation_30d_schedule"].cron_schedule == "30 0 * * *"
    assert schedules["validation_30d_schedule"].job_name == "validation_30d_daily"
    assert schedules["billing_writebacks_schedule"].cron_schedule == "30 * * * *"
    assert schedules["billing_writebacks_schedule"].job_name == "billing_writebacks_job"
    from orchestration.jobs import (
        billing_sync_job,
        build_schedules,
        validation_job,
        writebacks_job,
    )

    every_15 = build_schedules(
        billing_sync_job(),
        validation_job(),
        writebacks_job(),
        env={"RETENTION_SYNC_CRON": "*/15 * * * *", "RETENTION_WRITEBACKS_CRON": "5 * * * *"},
    )
    assert [s.cron_schedule for s in every_15[:2]] == ["*/15 * * * *", "5 * * * *"]


def test_the_sensor_asks_for_a_load_when_new_files_land(defs, tmp_path):
    from orchestration.resources import DropFolder

    sensor = next(s for s in defs.sensors if s.name == "exit_session_files_sensor")
    assert sensor.job_name == "exit_sessions_load"
    drop = tmp_path / "drop"
    resources = {"drop_folder": DropFolder(path=str(drop))}

    def tick(cursor):
        with DagsterInstance.ephemeral() as instance:
            context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            return sensor.evaluate_tick(context)

    first = tick(None)
    assert not first.run_requests and "no new files" in first.skip_message  # no folder yet
    drop.mkdir()
    (drop / "01_landings.jsonl").write_text("{}\n")
    (drop / "notes.txt").write_text("not a drop file: the load quarantines it, with why")
    (drop / "03_landings.jsonl.part").write_text("still being written")
    second = tick(first.cursor)
    assert len(second.run_requests) == 1
    assert second.run_requests[0].tags["retention/new_files"] == "2"
    assert not tick(second.cursor).run_requests  # the same files: nothing to do
    (drop / "02_actions.csv").write_text("session_id\n")
    third = tick(second.cursor)
    assert len(third.run_requests) == 1
    assert third.run_requests[0].run_key != second.run_requests[0].run_key
    (drop / "02_actions.csv").write_text("session_id,billing_system\n")  # fixed in place
    fourth = tick(third.cursor)
    assert fourth.run_requests[0].tags["retention/new_files"] == "1"
    assert fourth.run_requests[0].run_key != third.run_requests[0].run_key


def test_a_sync_table_alone_is_refused_before_any_request(defs):
    """`syncs` claims "billing data current as of T": never without the other tables."""
    stripe = defs.resolve_assets_def("dlt_stripe_syncs")  # resources bound
    result = materialize([stripe], selection=[AssetKey("dlt_stripe_syncs")], raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "may only be materialised together" in str(failure.event_specific_data.error)


def test_no_key_reaches_the_definitions(dbt_manifest, monkeypatch, tmp_path):
    """Keys are read by each run from its environment: the definitions the UI and the
    run storage see carry none, even with real keys set when they load."""
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value

    from orchestration.definitions import build_definitions

    for system in BILLING_SYSTEMS:
        monkeypatch.setenv(f"SOURCES__{system.upper()}__API_KEY", f"sk_live_secret_{system}")
    monkeypatch.setenv("SOURCES__CHARGEBEE__SITE", "acme")
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path))
    repo = build_definitions().get_repository_def()
    snapshot = serialize_value(RepositorySnap.from_def(repo))
    assert "sk_live_secret" not in snapshot


def test_every_load_has_a_freshness_policy_and_nothing_else_does(graph, monkeypatch, tmp_path):
    """Freshness policies (evaluated by Dagster's daemon), not the superseded checks and
    their sensor; the window follows RETENTION_FRESHNESS_HOURS."""
    from datetime import timedelta

    from dagster import FreshnessPolicy

    from orchestration.freshness import with_freshness
    from orchestration.loads import load_assets

    loads = {key for key in graph.materializable_asset_keys if key.path[0].startswith("dlt_")}
    two_hours = FreshnessPolicy.time_window(fail_window=timedelta(hours=2))
    fresh = {node.key for node in graph.asset_nodes if node.freshness_policy == two_hours}
    assert loads and loads == fresh
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path))  # the pipelines the loads describe
    six_hours = with_freshness(load_assets(), {"RETENTION_FRESHNESS_HOURS": "6"})
    windows = {s.freshness_policy.fail_window.to_timedelta() for a in six_hours for s in a.specs}
    assert windows == {timedelta(hours=6)}
