"""The `billing_writebacks` asset through Dagster: its metadata counts what the run did,
its check fails while actions are failed, a failed action is retried from run config
once the catalog is fixed, and a bad catalog fails the run naming the file and key."""

from __future__ import annotations

import shutil

import duckdb
import pytest
from dagster import DagsterInstance, materialize

from orchestration.resources import BillingTargets, Warehouse
from orchestration.writebacks import NO_FAILURES, billing_writebacks
from tests.writeback_pipeline import live_catalog

pytestmark = pytest.mark.integration


def _materialize(database, run_config=None):
    with DagsterInstance.ephemeral() as instance:
        return materialize(
            [billing_writebacks],
            instance=instance,
            resources={
                "warehouse": Warehouse(database=str(database)),
                "billing": BillingTargets(),
            },
            run_config=run_config,
            raise_on_error=False,
        )


def _metadata(result) -> dict:
    [materialization] = result.asset_materializations_for_node("billing_writebacks")
    return {k: v.value for k, v in materialization.metadata.items()}


def _catalog(path, monkeypatch, *edit: str):
    """A live catalog with one text replacement, made the run's catalog."""
    catalog = live_catalog(path)
    if edit:
        catalog.write_text(catalog.read_text().replace(*edit))
    monkeypatch.setenv("RETENTION_WRITEBACKS", str(catalog))
    return catalog


def _check(result):
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == NO_FAILURES
    return evaluation


def test_failures_show_in_the_ui_and_retry_after_the_fix(writeback_sandbox, tmp_path, monkeypatch):
    _, database = writeback_sandbox
    _catalog(tmp_path / "broken.yml", monkeypatch, "coupon: SAVE50", "coupon: NO_SUCH_COUPON")
    first = _materialize(database)
    assert first.success
    figures = _metadata(first)
    assert figures["applied"] > 50 and figures["failed"] > 0 and figures["dry_run"] == 0
    assert "| stripe |" in figures["ledger"]
    check = _check(first)
    assert not check.passed
    assert "NO_SUCH_COUPON" in check.metadata["failures"].value

    _catalog(tmp_path / "fixed.yml", monkeypatch)
    untouched = _metadata(_materialize(database))
    assert untouched["applied"] == 0  # failed actions wait to be asked
    retried = _materialize(
        database, {"ops": {"billing_writebacks": {"config": {"retry_failed": True}}}}
    )
    figures = _metadata(retried)
    assert figures["applied"] > 0
    assert "NO_SUCH_COUPON" not in _check(retried).metadata["failures"].value


def test_a_bad_catalog_fails_the_run_naming_file_and_key(writeback_sandbox, tmp_path, monkeypatch):
    sandbox, database = writeback_sandbox
    bad = _catalog(tmp_path / "bad.yml", monkeypatch, "type: discount", "type: refund")
    result = _materialize(database)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert str(bad) in message and "offers.save50.type" in message and "refund" in message
    assert all(sandbox.emulator(s).request_log == [] for s in ("stripe", "recurly", "chargebee"))


def test_the_sensors_job_loads_models_and_writes_back(
    writeback_sandbox, writeback_warehouse, dagster_env, tmp_path, monkeypatch
):
    """`exit_sessions_load`, the job the drop-folder sensor starts: exit sessions, the
    models, the write-backs, then the ledger mart (dbt runs on both sides of them)."""
    from orchestration.definitions import build_definitions

    _, database = writeback_sandbox
    assert database == dagster_env["RETENTION_DUCKDB_PATH"]
    shutil.copytree(
        writeback_warehouse[1].parent / "drop", dagster_env["SOURCES__EXIT_SESSIONS__FOLDER"]
    )
    _catalog(tmp_path / "live.yml", monkeypatch)
    job = build_definitions().resolve_job_def("exit_sessions_load")
    with DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    figures = _metadata(result)
    assert figures["applied"] > 50
    with duckdb.connect(str(database)) as db:
        ledger, mart = db.execute(
            "select (select count(*) from writebacks.actions), "
            "(select count(*) from marts.fct_billing_writebacks where status = 'applied')"
        ).fetchone()
    assert mart == figures["applied"] and ledger >= mart
