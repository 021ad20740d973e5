"""Shared fixtures: tool state kept inside the test run, and sandboxes on free ports."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

from sandbox.app import Sandbox, start_sandbox
from sandbox.scenario import validate_scenario


@pytest.fixture
def serve_scenario() -> Iterator[Callable[..., Sandbox]]:
    """Factory: `serve_scenario(doc, frozen=True, faults=..., rate_limits=...)` validates a
    scenario document and serves it on free loopback ports; stopped after the test."""
    started: list[Sandbox] = []

    def serve(doc: dict, **options) -> Sandbox:
        options.setdefault("frozen", True)
        sandbox = start_sandbox(validate_scenario(doc), **options)
        started.append(sandbox)
        return sandbox

    yield serve
    for sandbox in started:
        sandbox.stop()


DBT_PROJECT = Path(__file__).resolve().parent.parent / "dbt_project"


@pytest.fixture
def dbt(tmp_path, monkeypatch):
    """Run dbt commands on the project against a given DuckDB file, with target/ and logs
    kept in the test's temp folder. Returns the runner's result; fails on dbt failure."""
    from dbt.cli.main import dbtRunner

    def run(database: Path, *args: str, expect_success: bool = True, target: str = "duckdb"):
        monkeypatch.setenv("RETENTION_DUCKDB_PATH", str(database))
        monkeypatch.setenv("RETENTION_DBT_TARGET", target)
        result = dbtRunner().invoke(
            [
                *args,
                "--project-dir",
                str(DBT_PROJECT),
                "--profiles-dir",
                str(DBT_PROJECT),
                "--target-path",
                str(tmp_path / "dbt_target"),
                "--log-path",
                str(tmp_path / "dbt_logs"),
            ]
        )
        if expect_success:
            assert result.success, (
                f"dbt {' '.join(args)} failed: {result.exception or result.result}"
            )
        return result

    return run
