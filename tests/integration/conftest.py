"""Fixtures for the Dagster tests: a parsed dbt manifest and tool state kept in tmp."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def dbt_manifest() -> Path:
    """`@dbt_assets` reads dbt_project/target/manifest.json when the definitions load:
    parsed (if stale) once per test session, before anything imports them."""
    from orchestration.dbt_project import ensure_manifest

    return ensure_manifest()


@pytest.fixture
def dagster_env(tmp_path, monkeypatch, dbt_manifest) -> dict[str, Path]:
    """DAGSTER_HOME (with the project's instance settings), the warehouse, the drop
    folder and dlt's state, all in the test's temp folder."""
    from demo.run import ensure_dagster_home

    paths = {
        "DAGSTER_HOME": ensure_dagster_home(tmp_path / "dagster_home"),
        "RETENTION_DUCKDB_PATH": tmp_path / "warehouse.duckdb",
        "SOURCES__EXIT_SESSIONS__FOLDER": tmp_path / "drop",
        "DLT_DATA_DIR": tmp_path / "dlt",
    }
    for name, path in paths.items():
        monkeypatch.setenv(name, str(path))
    return paths


@pytest.fixture(scope="session")
def writeback_warehouse(tmp_path_factory, dbt_manifest) -> tuple[dict, Path]:
    """A scenario of 2,500 customers (a few hundred write-back actions) and its marts,
    built once for the write-back tests; tests work on copies."""
    from tests.integration.test_end_to_end_marts import AS_OF
    from tests.writeback_pipeline import build_warehouse

    return build_warehouse(tmp_path_factory.mktemp("writebacks"), 2500, AS_OF)


@pytest.fixture
def writeback_sandbox(writeback_warehouse, tmp_path, monkeypatch):
    """A copy of the warehouse and a fresh sandbox of the same scenario, the billing
    writers pointed at it (through the sources' environment variables)."""
    from sandbox.app import start_sandbox
    from sandbox.scenario import validate_scenario
    from tests.writeback_pipeline import copy_warehouse, point_at

    doc, database = writeback_warehouse
    copy = copy_warehouse(database, tmp_path / "warehouse.duckdb")
    sandbox = start_sandbox(validate_scenario(doc), frozen=True)
    point_at(monkeypatch, sandbox)
    yield sandbox, copy
    sandbox.stop()
