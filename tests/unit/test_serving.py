"""The serving file's publish: a build holds every mart as a table and its own record; the
serving path swaps to it atomically; a reader's open connection keeps its build (even
once deleted) and never blocks a publish; a new connection, even in a process that holds
an old one, reads the new build; old and half-written builds are pruned."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from orchestration.serving import (
    KEEP_BUILDS,
    builds_folder,
    prune,
    publish,
    serving_path,
)


@pytest.fixture
def warehouse(tmp_path):
    """A warehouse with a mart table, a mart view over staging, and a non-mart table."""
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    for sql in (
        "create schema staging",
        "create schema marts",
        "create table staging.s as select range as i from range(5)",
        "create view marts.v as select * from staging.s",
        "create table marts.t as select 'first' as tag",
    ):
        con.execute(sql).fetchall()
    yield path, con
    con.close()


def _tag(con: duckdb.DuckDBPyConnection) -> str:
    return con.execute("select tag from marts.t").fetchall()[0][0]


def _retag(con: duckdb.DuckDBPyConnection, tag: str) -> None:
    con.execute("update marts.t set tag = ?", [tag]).fetchall()


def test_the_serving_path_sits_beside_the_warehouse_unless_set(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    assert serving_path(warehouse, {}) == tmp_path / "warehouse_serving.duckdb"
    assert serving_path(warehouse, {"RETENTION_SERVING_PATH": "/srv/bi.duckdb"}) == Path(
        "/srv/bi.duckdb"
    )
    assert builds_folder(tmp_path / "bi.duckdb") == tmp_path / "bi.builds"


def test_a_build_holds_the_marts_as_tables_and_its_record(warehouse):
    path, con = warehouse
    link = serving_path(path, {})
    build = publish(con, link, "0123456789abcdef", "billing_sync")
    assert link.is_symlink() and link.resolve() == build.path.resolve()
    assert not link.readlink().is_absolute()  # the folder can be moved or mounted
    assert build.tables == {"t": 1, "v": 5}
    with duckdb.connect(str(link), read_only=True) as bi:
        kinds = bi.execute(
            "select table_name, table_type from information_schema.tables "
            "where table_schema = 'marts' order by 1"
        ).fetchall()
        assert kinds == [("t", "BASE TABLE"), ("v", "BASE TABLE")]  # the view, materialised
        assert bi.execute("select run_id, job_name from serving.build").fetchall() == [
            ("0123456789abcdef", "billing_sync")
        ]
        assert bi.execute("select * from serving.tables order by 1").fetchall() == [
            ("t", 1),
            ("v", 5),
        ]
        schemas = {r[0] for r in bi.execute("select schema_name from duckdb_schemas()").fetchall()}
    assert "staging" not in schemas
    assert sorted(p.name for p in build.path.parent.iterdir()) == [build.path.name]  # no wal


def test_an_open_reader_keeps_its_build_and_new_connections_see_the_next(warehouse):
    path, con = warehouse
    link = serving_path(path, {})
    publish(con, link, "run-first", "billing_sync")
    held = duckdb.connect(str(link), read_only=True)
    for n in range(KEEP_BUILDS + 1):  # enough builds to delete the held one
        _retag(con, f"build {n}")
        publish(con, link, f"run-{n}", "billing_sync")
    assert _tag(held) == "first"  # its build is deleted, its data still readable
    # Same process, the held connection still open: DuckDB would hand back the cached
    # database of a path it has open; the link's new target is a path it has not.
    with duckdb.connect(str(link), read_only=True) as fresh:
        assert _tag(fresh) == f"build {KEEP_BUILDS}"
    held.close()


def test_a_reader_in_another_process_never_blocks_a_publish(warehouse, tmp_path):
    path, con = warehouse
    link = serving_path(path, {})
    publish(con, link, "run-first", "billing_sync")
    script = textwrap.dedent(
        f"""
        import sys, duckdb
        con = duckdb.connect({str(link)!r}, read_only=True)
        print(con.execute("select tag from marts.t").fetchall()[0][0], flush=True)
        sys.stdin.read()  # held until the test closes stdin
        print(con.execute("select tag from marts.t").fetchall()[0][0], flush=True)
        """
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline().strip() == "first"
        _retag(con, "second")
        publish(con, link, "run-second", "billing_sync")
        with duckdb.connect(str(link), read_only=True) as bi:
            assert _tag(bi) == "second"
        out, _ = reader.communicate("", timeout=30)
    finally:
        reader.kill()
    assert out.strip() == "first" and reader.returncode == 0


def test_prune_keeps_the_newest_builds_and_drops_half_written_ones(tmp_path):
    names = [f"2026120{d}T000000000000Z-run.duckdb" for d in range(1, 6)]
    for name in [*names, "20261206T000000000000Z-run.duckdb.partial"]:
        (tmp_path / name).write_text("")
    current = tmp_path / names[0]  # the link's target is never deleted, however old
    deleted = prune(tmp_path, current, keep=2)
    assert sorted(p.name for p in deleted) == [
        names[1],
        names[2],
        "20261206T000000000000Z-run.duckdb.partial",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [names[0], names[3], names[4]]
