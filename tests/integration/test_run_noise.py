"""Every run printed warnings nobody could act on (#11): Dagster's "superseded" freshness
checks when the definitions load, dlt's "column hints were different" on each exit-session
load, and dagster-dbt's "AssetObservation instead of an AssetCheckResult" for each dbt
source test. Each test runs the path that printed one and fails if it comes back."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import dlt
import pytest

from orchestration.settings import PROJECT_DIR

pytestmark = pytest.mark.integration

SESSION = (
    '{"session_id":"s_1","billing_system":"stripe","billing_id":"sub_1",'
    '"started_at":"2026-04-02T08:00:00Z"}\n'
)


def test_loading_the_definitions_prints_no_warning(dagster_env):
    """In a fresh interpreter, as `dagster dev`, `retention demo` and the CLI load them:
    module-level warnings fire once per process, so the test session's cache would hide
    them."""
    done = subprocess.run(
        [sys.executable, "-c", "import orchestration.definitions"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Warning" not in done.stderr, done.stderr


def test_an_exit_session_load_logs_no_column_hint_warning(tmp_path: Path, caplog):
    from dlt_sources.exit_sessions import exit_sessions_source

    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "sessions.jsonl").write_text(SESSION)
    pipeline = dlt.pipeline(
        "noise_test",
        destination=dlt.destinations.duckdb(str(tmp_path / "warehouse.duckdb")),
        dataset_name="raw_exit_sessions",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    dlt_logger = logging.getLogger("dlt")  # dlt's own logger, which does not propagate
    dlt_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="dlt"):
            info = pipeline.run(exit_sessions_source(folder=str(drop)))
    finally:
        dlt_logger.removeHandler(caplog.handler)
    assert not info.has_failed_jobs
    assert any("exit_sessions" in r.getMessage() for r in caplog.records)  # dlt's log is seen
    assert pipeline.last_trace.last_normalize_info.row_counts.get("exit_sessions") == 1
    hints = [r.getMessage() for r in caplog.records if "hint" in r.getMessage()]
    assert hints == []


def test_every_dbt_source_test_is_an_asset_check(dbt_manifest, dagster_env):
    """A source test that is no check is logged as an observation, with a warning per
    test and per build: every one must be a check of the load asset its source names."""
    import orjson

    from orchestration.definitions import build_definitions

    manifest = orjson.loads(dbt_manifest.read_bytes())
    source_tests = {
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test"
        and any(dep.startswith("source.") for dep in node["depends_on"]["nodes"])
    }
    checks = build_definitions().resolve_asset_graph().asset_check_keys
    on_loads = {c.name for c in checks if c.asset_key.path[0].startswith("dlt_")}
    assert source_tests and source_tests <= on_loads
