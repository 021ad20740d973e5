"""What the end-to-end tests of one scenario share: extract it from a served sandbox with
the real sources, build the models the test compares with real dbt, and read rows back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from orchestration.extract import run_extract


def extract_and_build(
    sandbox, tmp_path: Path, monkeypatch, dbt, select: Sequence[str], target: str = "duckdb"
) -> Path:
    """Point every source at `sandbox`, extract into a warehouse under `tmp_path` (or the
    Postgres target), and `dbt build` the models `select` names with their data tests.

    dbt unit tests run in test_dbt_unit_tests.py: their fixtures need the raw columns of a
    generated scenario, which a small hand-written one does not have everywhere."""
    for system, url in sandbox.urls.items():
        monkeypatch.setenv(f"SOURCES__{system.upper()}__BASE_URL", url)
    database = tmp_path / "warehouse.duckdb"
    results = run_extract(
        database=None if target == "postgres" else database,
        pipelines_dir=tmp_path / f"dlt_{target}",
    )
    assert [r.error for r in results] == [None] * len(results)
    dbt(
        database,
        "build",
        "--select",
        *select,
        "--exclude-resource-type",
        "unit_test",
        target=target,
    )
    return database


def rows(database: Path, query: str) -> list[dict]:
    """`query`'s rows as dicts, read from the DuckDB file `database`."""
    with duckdb.connect(str(database)) as db:  # dbt ran in this process: same settings
        cursor = db.execute(query)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
