"""The Spark warehouse's operational side: the raw tables dlt lands in the lake, the marts
as the Python steps read them, and the write-back ledger published for dbt.

The raw tables: Delta tables dlt writes under the lake (RETENTION_SPARK_LAKE), kept
readable as plain parquet folders.

Spark reads them through the metastore tables dbt's register_raw_tables() creates
(macros/spark_raw.sql), `USING parquet` unless the cluster has the Delta jars: a reader
that ignores the Delta log sees every parquet file in the folder, so a merged update's
replaced file would be read beside its replacement (a duplicate row). Vacuuming each table
right after its load removes the files no version-to-come needs.

dlt's Delta merge is an upsert that trusts the load to hold each primary key once: on
DuckDB and Postgres dlt's delete-insert keeps one row per key (by `dedup_sort`), but into
Delta two rows of one key (an exit session in two drop files of one run) are both
inserted, or, when the key is already in the table, delta-rs refuses the whole merge.
`deduplicate` keeps one row per key in the load's files first, as delete-insert would.

The operational state (the write-back ledger) stays in a DuckDB file beside the lake.
Its `marts` schema shows the Spark marts as views over their parquet folders
(`attach_marts`), so validation_30d, the write-backs, the figures and the serving copy run
there unchanged; the ledger is published to the lake before each dbt run
(`publish_ledger`), where dbt registers it for fct_billing_writebacks.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestration.settings import DBT_PROJECT_DIR, SPARK_LAKE_ENV, SPARK_WAREHOUSE_DIR_ENV

# dlt's table format for the lake: Delta keeps `merge` a merge (upsert by primary key) and
# takes a column that first appears in a later load; plain parquet would append.
LAKE_TABLE_FORMAT = "delta"


def lands_in_lake(pipeline: Any) -> bool:
    """Whether `pipeline` loads into a lake (dlt's filesystem destination)."""
    return pipeline.destination.destination_name == "filesystem"


def vacuum(pipeline: Any) -> list[str]:
    """Delete, in every Delta table of `pipeline`'s dataset, the files its latest version
    no longer references (retention 0: no time travel is kept; the raw tables are
    re-extractable, and the parquet readers need the folder to hold the live files only).
    The paths removed. A run killed between a load and its vacuum is repaired by the next
    run's vacuum, which covers every table of the dataset, loaded or not."""
    from dlt.common.libs.deltalake import get_delta_tables

    removed: list[str] = []
    for table in get_delta_tables(pipeline).values():
        removed += table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    return removed


def load_as_the_lake_needs(pipeline: Any) -> None:
    """Make `pipeline`'s loads (those `pipeline.run` makes too, as dagster-dlt runs them)
    load into the lake as `retention extract` does: one row per key in the load's files
    first (`deduplicate`), and the replaced files vacuumed after. `pipeline.run` calls
    `self.load` between its normalize and the end of its trace, so wrapping the instance's
    `load` keeps one run, one trace, and dagster-dlt's metadata as they are; the run itself
    needs `table_format=LAKE_TABLE_FORMAT`."""
    load = type(pipeline).load.__get__(pipeline)

    def lake_load(*args: Any, **kwargs: Any) -> Any:
        deduplicate(pipeline)
        info = load(*args, **kwargs)
        vacuum(pipeline)
        return info

    pipeline.load = lake_load


def deduplicate(pipeline: Any) -> int:
    """Keep one row per primary key in each merge table of `pipeline`'s normalized, not yet
    loaded packages: the first by the table's `dedup_sort` columns, as delete-insert keeps
    (without them, any one of the key's rows, as there). The rows dropped."""
    dropped = 0
    for load_id in pipeline.list_normalized_load_packages():
        files: dict[str, list[str]] = defaultdict(list)
        for job in pipeline.get_load_package_info(load_id).jobs["new_jobs"]:
            if job.job_file_info.file_format == "parquet":
                files[job.job_file_info.table_name].append(job.file_path)
        for name, paths in files.items():
            table = pipeline.default_schema.tables.get(name, {})
            if table.get("write_disposition") == "merge":
                dropped += _keep_one_per_key(table, sorted(paths))
    return dropped


def _keep_one_per_key(table: dict, paths: list[str]) -> int:
    """Rewrite the load's files of one table (`paths`) as one file with one row per
    primary key; untouched when no key repeats. The rows dropped."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = table["columns"]
    keys = [f'"{name}"' for name, column in columns.items() if column.get("primary_key")]
    if not keys:
        return 0
    sorts = {
        name: column["dedup_sort"] for name, column in columns.items() if "dedup_sort" in column
    }
    rows = pa.concat_tables([pq.read_table(p) for p in paths], promote_options="default")
    ranked = rows.select([k.strip('"') for k in keys] + list(sorts))
    ranked = ranked.append_column("position", pa.array(range(rows.num_rows), pa.int64()))
    order = [f'"{name}" {direction}' for name, direction in sorts.items()] + ["position desc"]
    with duckdb.connect() as con:
        con.register("ranked", ranked)
        keep = con.sql(
            f"select position from ranked qualify row_number() over (partition by "
            f"{', '.join(keys)} order by {', '.join(order)}) = 1 order by position"
        ).fetchnumpy()["position"]
    if len(keep) == rows.num_rows:
        return 0
    pq.write_table(rows.take(keep), paths[0])
    for path in paths[1:]:
        os.remove(path)
    return rows.num_rows - len(keep)


# SPARK_WAREHOUSE_DIR_ENV: where dbt-spark's session keeps the models' files and its
# metastore (profiles.yml reads it, relative to dbt_project/); its `tables/marts.db/<mart>/`
# folders hold each mart table as parquet files.
MARTS_SCHEMA = "marts"
# Where the write-back ledger is published in the lake: dbt's register_raw_tables()
# registers `<lake>/writebacks/actions/` as the source writebacks.actions, as it does
# every raw table (macros/spark_raw.sql).
LEDGER_TABLE = "writebacks.actions"
LEDGER_FOLDER = "writebacks/actions"
# Each publication's file has a new name (`actions-<UTC time>.parquet`): registration
# notes a table's newest file's name to tell whether anything changed.
LEDGER_FILE = "actions-{at:%Y%m%dT%H%M%S%fZ}.parquet"


class SparkWarehouseError(RuntimeError):
    """The Spark warehouse cannot be read or written as configured: what to set or run."""


def spark_tables_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The folder of the Spark session's tables, `<RETENTION_SPARK_WAREHOUSE_DIR>/tables`
    (default the project's spark-warehouse/): a relative value is relative to
    dbt_project/, where dbt runs. An object-store URL is refused: the Python steps read
    the marts' files with DuckDB, whose httpfs extension is not installed offline."""
    value = (env.get(SPARK_WAREHOUSE_DIR_ENV) or "").strip() or "../spark-warehouse"
    if "://" in value:
        raise SparkWarehouseError(
            f"{SPARK_WAREHOUSE_DIR_ENV}={value!r}: the Python steps (validation_30d, the "
            "write-backs, the figures, the serving copy) read the Spark marts' parquet files "
            "with DuckDB from a local folder; give a local or mounted folder"
        )
    return (DBT_PROJECT_DIR / value / "tables").resolve()


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def attach_marts(con: Any, tables: Path) -> list[str]:
    """Make `marts.<mart>` in the DuckDB state file `con` the Spark marts: one view per
    mart folder under `<tables>/marts.db/` that holds parquet files (Spark writes a
    schema-only file for an empty table), read at query time, so a view stays right
    across dbt rebuilds. Views left by marts no longer there are dropped; tables of the
    schema (validation_30d's) are kept. The marts viewed."""
    folder = tables / f"{MARTS_SCHEMA}.db"
    marts = (
        sorted(d.name for d in folder.glob("*") if d.is_dir() and any(d.glob("*.parquet")))
        if folder.is_dir()
        else []
    )
    con.execute(f"create schema if not exists {MARTS_SCHEMA}").fetchall()
    stale = con.execute(
        "select table_name from information_schema.tables where table_catalog = "
        "current_database() and table_schema = ? and table_type = 'VIEW'",
        [MARTS_SCHEMA],
    ).fetchall()
    for (name,) in stale:
        if name not in marts:
            con.execute(f'drop view {MARTS_SCHEMA}."{name}"').fetchall()
    for name in marts:
        source = (
            f"read_parquet({_sql_string(str(folder / name / '*.parquet'))}, union_by_name = true)"
        )
        con.execute(
            f'create or replace view {MARTS_SCHEMA}."{name}" as '
            f"select {_as_instants(con, source)} from {source}"
        ).fetchall()
    return marts


def _as_instants(con: Any, source: str) -> str:
    """`*`, with each timestamp without time zone read as the UTC instant it is: Spark
    writes its timestamps (instants) as parquet INT96, which DuckDB reads as local
    timestamps, so comparisons with instants and UTC day boundaries would shift."""
    described = con.execute(f"describe select * from {source}").fetchall()
    naive = [name for name, kind, *_ in described if kind == "TIMESTAMP"]
    if not naive:
        return "*"
    replaced = ", ".join(f'timezone(\'UTC\', "{n}") as "{n}"' for n in naive)
    return f"* replace ({replaced})"


def _lake_fs(lake: str) -> tuple[Any, str]:
    """fsspec's filesystem for the lake (a folder, or an object-store URL with dlt's
    credentials' libraries installed) and the lake's path on it."""
    from fsspec.core import url_to_fs

    return url_to_fs(lake)


def require_raw_tables(lake: str) -> None:
    """Fail, naming RETENTION_SPARK_LAKE and what to run, when the lake holds no raw
    table yet: dbt's registration would otherwise stop on Spark's PATH_NOT_FOUND."""
    fs, root = _lake_fs(lake)
    if not fs.glob(f"{root}/*/*/*.parquet"):
        raise SparkWarehouseError(
            f"{SPARK_LAKE_ENV}={lake} holds no raw tables: run `retention extract` first "
            f"(with RETENTION_WAREHOUSE=spark and the same {SPARK_LAKE_ENV}), or point "
            f"{SPARK_LAKE_ENV} at the lake the loads write"
        )


def publish_ledger(con: Any, lake: str) -> int | None:
    """Write the write-back ledger of the DuckDB state file `con` (writebacks.actions) to
    `<lake>/writebacks/actions/` as one parquet file of a new name that replaces the
    folder's others (written under a dot name, which Spark's readers skip, then renamed;
    the others deleted after: a reader in between may see a row twice, never none), so
    dbt on Spark builds fct_billing_writebacks from the same rows as on DuckDB. The rows
    published; None when no write-back has run yet (no ledger: the mart is empty)."""
    import pyarrow.parquet as pq

    schema, table = LEDGER_TABLE.split(".")
    exists = con.execute(
        "select count(*) from information_schema.tables where table_catalog = "
        "current_database() and table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchall()[0][0]
    if not exists:
        return None
    rows = con.sql(f"select * from {LEDGER_TABLE}").to_arrow_table()
    fs, root = _lake_fs(lake)
    folder = f"{root}/{LEDGER_FOLDER}"
    fs.makedirs(folder, exist_ok=True)
    name = LEDGER_FILE.format(at=datetime.now(UTC))
    staged = f"{folder}/.{name}.{os.getpid()}"
    with fs.open(staged, "wb") as out:
        pq.write_table(rows, out)
    older = fs.glob(f"{folder}/*.parquet")
    fs.mv(staged, f"{folder}/{name}")
    for path in older:
        fs.rm(path)
    return rows.num_rows
