"""The Spark warehouse's raw tables: Delta tables dlt writes under the lake
(RETENTION_SPARK_LAKE), kept readable as plain parquet folders.

Spark reads them through the metastore tables dbt's register_raw_tables() creates
(macros/spark_raw.sql), `USING parquet` unless the cluster has the Delta jars: a reader
that ignores the Delta log sees every parquet file in the folder, so a merged update's
replaced file would be read beside its replacement (a duplicate row). Vacuuming each table
right after its load removes the files no version-to-come needs.
"""

from __future__ import annotations

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
