"""A warehouse with marts built from a generated scenario, and a live write-back catalog,
for the write-back tests (runner and Dagster asset)."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from orchestration.extract import run_extract
from sandbox.app import Sandbox, start_sandbox
from sandbox.exit_files import write_exit_session_files
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.scenario import load_scenario, validate_scenario

PROJECT = Path(__file__).resolve().parents[1]
SINCE = "2026-03-01T00:00:00Z"


def live_catalog(path: Path, mode: str = "live") -> Path:
    """The project's offers with every system on, each cancel option exercised
    somewhere: Stripe cancels at once (a DELETE, which Stripe does not replay), Recurly
    every subscription of the customer, Chargebee at term end."""
    _, offers = (PROJECT / "writebacks.yml").read_text().split("\noffers:\n")
    systems = f"""
billing_systems:
  stripe:
    mode: {mode}
    since: {SINCE}
    cancel: {{when: immediately, prorate: true, invoice_now: false}}
  recurly:
    mode: {mode}
    since: {SINCE}
    cancel: {{when: period_end, scope: customer}}
  chargebee:
    mode: {mode}
    since: {SINCE}
"""
    path.write_text(systems + "\noffers:\n" + offers)
    return path


def point_at(env: pytest.MonkeyPatch, sandbox: Sandbox) -> None:
    for system, url in sandbox.urls.items():
        env.setenv(f"SOURCES__{system.upper()}__BASE_URL", url)


def copy_warehouse(source: Path, target: Path) -> Path:
    """The DuckDB file and its write-ahead log, if one is pending (dbt-duckdb may still
    hold the file open in this process, checkpoint not yet done)."""
    shutil.copy(source, target)
    wal = source.with_name(source.name + ".wal")
    if wal.exists():
        shutil.copy(wal, target.with_name(target.name + ".wal"))
    return target


def build_warehouse(root: Path, customers: int, as_of) -> tuple[dict, Path]:
    """Generate, serve, extract and model (dbt build without tests); the scenario
    document and the DuckDB file."""
    from dbt.cli.main import dbtRunner

    path = root / "scenario.json"
    write_scenario(GenerateOptions(customers, 7, as_of), path)
    doc = orjson.loads(path.read_bytes())
    write_exit_session_files(load_scenario(path), root / "drop")
    database = root / "warehouse.duckdb"
    sandbox = start_sandbox(validate_scenario(doc), frozen=True)
    try:
        with pytest.MonkeyPatch.context() as env:
            point_at(env, sandbox)
            env.setenv("RETENTION_DUCKDB_PATH", str(database))
            results = run_extract(
                database=database, exit_sessions_folder=root / "drop", pipelines_dir=root / "dlt"
            )
            assert [r.error for r in results] == [None] * 4
            project = str(PROJECT / "dbt_project")
            models_only = [
                "--exclude-resource-type",
                "test",
                "--exclude-resource-type",
                "unit_test",
            ]
            places = ["--project-dir", project, "--profiles-dir", project]
            places += ["--target-path", str(root / "dbt_target"), "--log-path", str(root / "logs")]
            result = dbtRunner().invoke(["build", *models_only, *places])
            assert result.success, result.exception
    finally:
        sandbox.stop()
    return doc, database
