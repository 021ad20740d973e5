"""The Spark warehouse's operational side (#15), without Java: the state DuckDB file shows
the Spark marts (parquet folders, as Spark writes them) as views, the ledger is published
to the lake where dbt registers it, and an empty lake is refused with what to run."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration.resources import Warehouse
from orchestration.spark import (
    LEDGER_FOLDER,
    SparkWarehouseError,
    attach_marts,
    publish_ledger,
    require_raw_tables,
    spark_tables_dir,
)

pytestmark = pytest.mark.spark

INSTANT = datetime(2026, 6, 29, 23, 30, tzinfo=UTC)


def write_mart(tables, name: str, table: pa.Table, part: str = "part-00000") -> None:
    """A mart as Spark writes it: parquet part files beside _SUCCESS and .crc files."""
    folder = tables / "marts.db" / name
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"{part}.snappy.parquet")
    (folder / "_SUCCESS").touch()
    (folder / f".{part}.snappy.parquet.crc").write_bytes(b"crc")


def episodes(rows: int) -> pa.Table:
    """Spark's timestamps arrive as local timestamps (INT96): here, a naive UTC value."""
    return pa.table(
        {
            "episode_id": pa.array([f"e{i}" for i in range(rows)], pa.string()),
            "first_landed_at": pa.array([INSTANT.replace(tzinfo=None)] * rows, pa.timestamp("us")),
        }
    )


def test_each_mart_folder_is_a_view_read_as_instants_beside_validations_table(tmp_path):
    tables = tmp_path / "tables"
    write_mart(tables, "fct_exit_episodes", episodes(2), "part-00000")
    write_mart(tables, "fct_exit_episodes", episodes(1), "part-00001")
    write_mart(tables, "fct_billing_writebacks", episodes(0))  # a schema-only file
    (tables / "marts.db" / "never_built").mkdir()
    with duckdb.connect(str(tmp_path / "state.duckdb")) as con:
        con.execute("create schema marts")
        con.execute("create table marts.validation_30d_daily as select 1 as episodes")
        assert attach_marts(con, tables) == ["fct_billing_writebacks", "fct_exit_episodes"]
        got = con.execute(
            "select count(*), min(cast(timezone('UTC', first_landed_at) as date)) "
            "from marts.fct_exit_episodes where first_landed_at >= ?",
            [INSTANT],
        ).fetchall()
        assert got == [(3, INSTANT.date())]
        assert con.sql("select count(*) from marts.fct_billing_writebacks").fetchall() == [(0,)]
        assert con.sql("select * from marts.validation_30d_daily").fetchall() == [(1,)]


def test_a_view_whose_mart_is_gone_is_dropped(tmp_path):
    with duckdb.connect(str(tmp_path / "state.duckdb")) as con:
        write_mart(tmp_path / "old", "fct_exit_episodes", episodes(1))
        attach_marts(con, tmp_path / "old")
        assert attach_marts(con, tmp_path / "new") == []
        views = con.sql("select count(*) from duckdb_views() where not internal").fetchall()
        assert views == [(0,)]


def test_the_warehouse_connection_shows_the_marts_on_spark_only(tmp_path, monkeypatch):
    monkeypatch.setenv("RETENTION_SPARK_WAREHOUSE_DIR", str(tmp_path / "spark"))
    write_mart(tmp_path / "spark" / "tables", "fct_exit_episodes", episodes(2))
    with Warehouse(kind="spark", database=str(tmp_path / "s.duckdb")).get_connection() as con:
        assert con.sql("select count(*) from marts.fct_exit_episodes").fetchall() == [(2,)]
    with Warehouse(kind="duckdb", database=str(tmp_path / "d.duckdb")).get_connection() as con:
        assert con.sql(
            "select count(*) from information_schema.schemata where schema_name = 'marts'"
        ).fetchall() == [(0,)]


def test_the_ledger_is_published_whole_into_the_lake(tmp_path):
    lake = tmp_path / "lake"
    with duckdb.connect() as con:
        assert publish_ledger(con, str(lake)) is None  # no write-back has run
        con.execute("create schema writebacks")
        con.execute("create table writebacks.actions as select 'a1' as action_id, 0 as attempts")
        assert publish_ledger(con, str(lake)) == 1
        con.execute("insert into writebacks.actions values ('a2', 1)")
        assert publish_ledger(con, str(lake)) == 2
    [published] = (lake / LEDGER_FOLDER).iterdir()
    assert published.name.startswith("actions-") and published.suffix == ".parquet"
    assert pq.read_table(published).to_pydict() == {
        "action_id": ["a1", "a2"],
        "attempts": [0, 1],
    }


def test_an_empty_lake_is_refused_naming_the_setting_and_what_to_run(tmp_path):
    for lake in (tmp_path / "missing", tmp_path):
        with pytest.raises(SparkWarehouseError, match=r"RETENTION_SPARK_LAKE=.*retention extract"):
            require_raw_tables(str(lake))
    (tmp_path / "raw_stripe" / "customers").mkdir(parents=True)
    pq.write_table(pa.table({"id": [1]}), tmp_path / "raw_stripe" / "customers" / "p.parquet")
    require_raw_tables(str(tmp_path))


def test_marts_on_an_object_store_are_refused_naming_the_setting(tmp_path):
    assert spark_tables_dir({"RETENTION_SPARK_WAREHOUSE_DIR": str(tmp_path)}) == tmp_path / "tables"
    with pytest.raises(SparkWarehouseError, match="RETENTION_SPARK_WAREHOUSE_DIR='s3://b/w'"):
        spark_tables_dir({"RETENTION_SPARK_WAREHOUSE_DIR": "s3://b/w"})
