"""The Spark warehouse's landing (#15): dlt writes each raw table as Delta under the lake
and vacuums it, so the folder, read as plain parquet (as Spark reads it once
registered), holds each row once, and a column a later load adds is there; through
Dagster's dlt resource as through `retention extract`."""

import contextlib

import dlt
import duckdb
import pytest
from dagster import AssetExecutionContext, materialize
from dagster_dlt import dlt_assets
from deltalake import DeltaTable

from orchestration.extract import _round, pipeline
from orchestration.resources import LakeAwareDltResource

pytestmark = [pytest.mark.integration, pytest.mark.spark]


@dlt.resource(name="things", primary_key="id", write_disposition="merge")
def things(rows: list[dict]):
    yield rows


@dlt.resource(
    name="sessions",
    primary_key="id",
    write_disposition="merge",
    columns={"seq": {"data_type": "bigint", "dedup_sort": "desc"}},
)
def sessions(files: list[list[dict]]):
    """Rows in batches, as the exit-sessions source yields one batch per drop file."""
    yield from files


def load(p, resource) -> None:
    _round(p, resource, contextlib.nullcontext())


def read_folder(folder) -> list[tuple]:
    """The rows of every parquet file in the folder, as a parquet reader sees them."""
    return duckdb.sql(
        f"select id, value, late from read_parquet('{folder}/*.parquet', union_by_name = true)"
        " order by id"
    ).fetchall()


def test_a_merged_update_is_one_row_and_a_later_column_arrives(tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    monkeypatch.setenv("RETENTION_WAREHOUSE", "spark")
    monkeypatch.setenv("RETENTION_SPARK_LAKE", str(lake))
    p = pipeline("probe", None, tmp_path / "dlt")

    load(p, things([{"id": 1, "value": "first"}, {"id": 2, "value": "kept"}]))
    load(p, things([{"id": 1, "value": "updated", "late": "new column"}]))

    folder = lake / "raw_probe" / "things"
    assert read_folder(folder) == [(1, "updated", "new column"), (2, "kept", None)]
    live = {uri.rsplit("/", 1)[1] for uri in DeltaTable(str(folder)).file_uris()}
    assert {f.name for f in folder.glob("*.parquet")} == live


def test_a_key_twice_in_one_load_is_one_row_the_latest_by_dedup_sort(tmp_path, monkeypatch):
    """dlt's Delta upsert would insert both rows of a new key, and refuse the merge of a
    key the table holds; delete-insert (DuckDB, Postgres) keeps the dedup_sort winner."""
    lake = tmp_path / "lake"
    monkeypatch.setenv("RETENTION_WAREHOUSE", "spark")
    monkeypatch.setenv("RETENTION_SPARK_LAKE", str(lake))
    p = pipeline("probe", None, tmp_path / "dlt")

    load(p, sessions([[{"id": 1, "seq": 1, "state": "landed"}]]))
    load(
        p,
        sessions(
            [
                [{"id": 1, "seq": 3, "state": "saved"}, {"id": 2, "seq": 4, "state": "landed"}],
                [{"id": 1, "seq": 2, "state": "clicked"}, {"id": 2, "seq": 5, "state": "lost"}],
            ]
        ),
    )

    got = duckdb.sql(
        f"select id, seq, state from '{lake}/raw_probe/sessions/*.parquet' order by id"
    ).fetchall()
    assert got == [(1, 3, "saved"), (2, 5, "lost")]


@dlt.source(name="probe")
def probe(files: list[list[dict]]):
    return sessions(files)


def test_dagster_loads_into_the_lake_as_extract_does(tmp_path, monkeypatch):
    """dagster-dlt's own run would write plain parquet (a merge appends) and keep both
    rows of a key twice in one load; the project's dlt resource lands Delta, one row per
    key by dedup_sort, vacuumed, and keeps dagster-dlt's metadata."""
    lake = tmp_path / "lake"
    monkeypatch.setenv("RETENTION_WAREHOUSE", "spark")
    monkeypatch.setenv("RETENTION_SPARK_LAKE", str(lake))
    loads = [
        [[{"id": 1, "seq": 1, "state": "landed"}]],
        [[{"id": 1, "seq": 3, "state": "saved"}], [{"id": 1, "seq": 2, "state": "clicked"}]],
    ]
    for files in loads:

        @dlt_assets(dlt_source=probe(files), dlt_pipeline=pipeline("probe", None, tmp_path / "d"))
        def load_probe(context: AssetExecutionContext, dlt: LakeAwareDltResource):
            yield from dlt.run(context=context)

        result = materialize([load_probe], resources={"dlt": LakeAwareDltResource()})
        assert result.success
    [event] = result.get_asset_materialization_events()
    # dagster-dlt's figure, from dlt's normalize: the rows before one per key is kept.
    assert event.materialization.metadata["rows_loaded"].value == 2

    folder = lake / "raw_probe" / "sessions"
    got = duckdb.sql(f"select id, seq, state from '{folder}/*.parquet'").fetchall()
    assert got == [(1, 3, "saved")]
    live = {uri.rsplit("/", 1)[1] for uri in DeltaTable(str(folder)).file_uris()}
    assert {f.name for f in folder.glob("*.parquet")} == live
