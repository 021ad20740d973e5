"""The Spark warehouse's raw tables: Delta tables dlt writes under the lake
(RETENTION_SPARK_LAKE), kept readable as plain parquet folders.

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
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

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
