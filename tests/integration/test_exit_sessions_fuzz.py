"""Property-based fuzzing of the exit-session path end to end (issue #11): generated drops
of every format and kind of damage go through the real dlt source into a real DuckDB file,
in two runs. Nothing fails, every valid row is in `exit_sessions` exactly once (the latest
of its session_id, across files and runs) and every bad one in `exit_sessions_quarantine`
with a reason, its file and its line.

Reproducible (`derandomize=True`, no example database); fewer cases than the reader-level
module (tests/unit/test_exit_sessions_fuzz.py), as each runs dlt twice.
"""

from __future__ import annotations

import os
from pathlib import Path

import dlt
import duckdb
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dlt_sources.exit_sessions import exit_sessions_source
from tests.exit_session_drops import (
    SMALL_CUSTOM_LIMIT,
    Drop,
    any_drop,
    assert_outcome,
    id_pools,
)

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 20
CASES: list[int] = []


@pytest.fixture(scope="module", autouse=True)
def report_cases():
    yield
    print(f"\nexit-session fuzz: {len(CASES)} generated cases end to end (dlt into DuckDB)")


@st.composite
def drop_runs(draw) -> tuple[list[Drop], list[Drop]]:
    """Up to four drops of any format sharing session ids, split over two runs."""
    count = draw(st.integers(1, 4))
    ids = draw(id_pools())
    drops = [draw(any_drop(f"d{i}", ids)) for i in range(count)]
    split = draw(st.integers(0, count))
    return drops[:split], drops[split:]


def run(folder: Path, root: Path, drops: list[Drop], first_mtime: int) -> None:
    """Drop the files (landing order = the order given) and run the source once."""
    for offset, drop in enumerate(drops):
        path = folder / drop.name
        path.write_bytes(drop.data)
        os.utime(path, (first_mtime + offset, first_mtime + offset))
    pipeline = dlt.pipeline(
        "exit_sessions_fuzz",
        destination=dlt.destinations.duckdb(str(root / "warehouse.duckdb")),
        dataset_name="raw_exit_sessions",
        pipelines_dir=str(root / "pipelines"),
    )
    source = exit_sessions_source(folder=str(folder), max_custom_bytes=SMALL_CUSTOM_LIMIT)
    assert not pipeline.run(source).has_failed_jobs


def rows(database: Path, table: str, columns: str) -> list[dict]:
    with duckdb.connect(str(database), read_only=True) as con:
        exists = con.sql(
            "select count(*) from information_schema.tables "
            f"where table_schema = 'raw_exit_sessions' and table_name = '{table}'"
        ).fetchall()
        if exists == [(0,)]:
            return []
        frame = con.sql(f"select {columns} from raw_exit_sessions.{table}")
        return frame.pl().to_dicts()


@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    # No shrinking: each case runs dlt twice, and a failure is readable as drawn.
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(runs=drop_runs())
def test_drops_land_once_through_dlt_into_duckdb(runs, tmp_path_factory):
    CASES.append(1)
    root = tmp_path_factory.mktemp("fuzz")
    folder = root / "drop"
    folder.mkdir()
    first, second = runs
    run(folder, root, first, 1_000)
    run(folder, root, second, 2_000)
    database = root / "warehouse.duckdb"
    loaded = rows(database, "exit_sessions", "session_id, _file, _line, started_at, cancel_reason")
    quarantine = rows(database, "exit_sessions_quarantine", "_file, _line, reason")
    assert_outcome(first + second, loaded, quarantine)
