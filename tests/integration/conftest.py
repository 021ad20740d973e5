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
    from orchestration.demo import ensure_dagster_home

    paths = {
        "DAGSTER_HOME": ensure_dagster_home(tmp_path / "dagster_home"),
        "RETENTION_DUCKDB_PATH": tmp_path / "warehouse.duckdb",
        "SOURCES__EXIT_SESSIONS__FOLDER": tmp_path / "drop",
        "DLT_DATA_DIR": tmp_path / "dlt",
    }
    for name, path in paths.items():
        monkeypatch.setenv(name, str(path))
    return paths
