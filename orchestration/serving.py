"""The serving copy of the marts: the DuckDB file BI tools read, so a dashboard never
blocks a sync and a sync never blocks a dashboard.

DuckDB lets one process write a file, and a reader's lock on the warehouse made the next
sync fail at connect. So after every job that writes the marts, `serving_marts` copies
them (every table and view of the `marts` schema, as tables) out of the warehouse into a
new file of their own, a *build*, and points `RETENTION_SERVING_PATH` at it:

- a build is written under a `.partial` name in `<serving stem>.builds/`, with a
  `serving.build` row (when, from which run and job) and `serving.tables` (each mart's
  row count), then fsynced and renamed; nothing opens it for writing again;
- the serving path is a symlink to the newest build, swapped by `os.replace` (atomic):
  a connection opened before keeps reading its build, one opened after reads the new
  one, and none ever sees a build half-written;
- a symlink, not a file replaced in place, because DuckDB shares one database instance
  between the connections of a process that open the same path: a pool that always
  holds some connection would read the first build forever. The link's target names
  the build, so a new connection opens the new file;
- the newest KEEP_BUILDS builds stay; older ones are deleted, which POSIX allows while a
  reader still has one open (its data stays until it closes).

On Postgres there is no serving file: BI reads the `marts` schema under MVCC. On Spark
the copy is made from the state DuckDB file, whose `marts` schema shows the Spark marts
(views over their parquet files) beside validation_30d's table: one file holding every
mart, as on DuckDB, for BI tools without a Spark connection.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    AssetSelection,
    MaterializeResult,
    MetadataValue,
    asset,
)
from duckdb import DuckDBPyConnection

from orchestration.marts_metadata import markdown_table
from orchestration.models import dbt_models
from orchestration.resources import Warehouse
from orchestration.settings import DUCKDB_POOL
from orchestration.validation import validation_30d

SERVING_PATH_ENV = "RETENTION_SERVING_PATH"
KEEP_BUILDS = 3
BUILD_SUFFIX = ".duckdb"
PARTIAL_SUFFIX = ".partial"
# The schema name the build has while attached to the warehouse connection.
ATTACHED = "serving_build"


def serving_path(warehouse: Path, env: Mapping[str, str] = os.environ) -> Path:
    """RETENTION_SERVING_PATH, else `<warehouse stem>_serving.duckdb` beside it."""
    given = env.get(SERVING_PATH_ENV)
    return Path(given) if given else warehouse.with_name(f"{warehouse.stem}_serving.duckdb")


def builds_folder(link: Path) -> Path:
    return link.with_name(f"{link.stem}.builds")


@dataclass(frozen=True)
class Build:
    """One published build: its file, what it came from, and its marts' row counts."""

    path: Path
    run_id: str
    built_at: datetime
    tables: dict[str, int]


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _mart_names(con: DuckDBPyConnection) -> list[str]:
    """Every table and view of the warehouse's own `marts` schema."""
    rows = con.execute(
        "select table_name from information_schema.tables where table_catalog = "
        "current_database() and table_schema = 'marts' order by table_name"
    ).fetchall()
    return [name for (name,) in rows]


def _copy_marts(
    con: DuckDBPyConnection, target: Path, run_id: str, job: str, built_at: datetime
) -> dict[str, int]:
    """The marts and the build's record into `target`, in one transaction: one snapshot
    of the warehouse. Each statement drained (fetchall): DuckDB 2 holds a connection
    until it is."""
    con.execute(f"attach {_sql_string(str(target))} as {ATTACHED}").fetchall()
    try:
        con.execute("begin transaction").fetchall()
        for schema in ("marts", "serving"):
            con.execute(f"create schema {ATTACHED}.{schema}").fetchall()
        tables = {}
        for name in _mart_names(con):
            table = f'{ATTACHED}.marts."{name}"'
            con.execute(f'create table {table} as select * from marts."{name}"').fetchall()
            tables[name] = con.execute(f"select count(*) from {table}").fetchall()[0][0]
        con.execute(
            f"create table {ATTACHED}.serving.build as select $built_at::timestamptz "
            "as built_at, $run_id as run_id, $job as job_name",
            {"built_at": built_at, "run_id": run_id, "job": job},
        ).fetchall()
        con.execute(
            f"create table {ATTACHED}.serving.tables (table_name varchar, row_count bigint)"
        ).fetchall()
        con.executemany(f"insert into {ATTACHED}.serving.tables values (?, ?)", tables.items())
        con.execute("commit").fetchall()
        con.execute(f"checkpoint {ATTACHED}").fetchall()
    finally:
        con.execute(f"detach {ATTACHED}").fetchall()
    return tables


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _point(link: Path, build: Path) -> None:
    """Swap the symlink at `link` to `build` (relative, so the folder can move) in one
    rename, then make the rename durable."""
    staged = link.with_name(f".{link.name}.{os.getpid()}.link")
    staged.unlink(missing_ok=True)
    staged.symlink_to(build.relative_to(link.parent))
    os.replace(staged, link)
    _fsync(link.parent)


def prune(folder: Path, current: Path, keep: int = KEEP_BUILDS) -> list[Path]:
    """Delete all but the newest `keep` builds (names sort by build time) and any build a
    failed publish left half-written; never `current`. Publishes take turns (the
    warehouse's writer lock), so a `.partial` file here is not being written."""
    builds = sorted(folder.glob(f"*{BUILD_SUFFIX}"))
    doomed = [b for b in builds[:-keep] if b != current]
    doomed += list(folder.glob(f"*{PARTIAL_SUFFIX}*"))
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def publish(con: DuckDBPyConnection, link: Path, run_id: str, job: str) -> Build:
    """A new build of the marts read through `con` (a warehouse connection), published
    at `link`."""
    folder = builds_folder(link)
    folder.mkdir(parents=True, exist_ok=True)
    built_at = datetime.now(UTC)
    build = folder / f"{built_at:%Y%m%dT%H%M%S%fZ}-{run_id[:8]}{BUILD_SUFFIX}"
    partial = build.with_name(build.name + PARTIAL_SUFFIX)
    tables = _copy_marts(con, partial, run_id, job, built_at)
    _fsync(partial)
    os.replace(partial, build)
    _fsync(folder)
    _point(link, build)
    prune(folder, build)
    return Build(build, run_id, built_at, tables)


def _published(build: Build, link: Path) -> MaterializeResult:
    return MaterializeResult(
        metadata={
            "published": True,
            "path": MetadataValue.path(str(link)),
            "build": MetadataValue.path(str(build.path)),
            "built_at": MetadataValue.text(build.built_at.isoformat()),
            "published_at": MetadataValue.float(datetime.now(UTC).timestamp()),
            "tables": MetadataValue.md(
                markdown_table(["mart", "rows"], sorted(build.tables.items()))
            ),
        }
    )


def _serve(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    if warehouse.kind == "postgres":
        context.log.info("the warehouse is Postgres: BI reads its marts schema")
        return MaterializeResult(metadata={"published": False})
    link = serving_path(Path(warehouse.database))
    with warehouse.get_connection() as con:
        build = publish(con, link, context.run.run_id, context.run.job_name)
    context.log.info("serving build %s at %s: %d marts", build.path.name, link, len(build.tables))
    return _published(build, link)


@cache
def serving_marts() -> AssetsDefinition:
    """Downstream of every mart and of validation_30d, so it runs last in each job that
    selects it and not at all when a step before it failed. Made when the definitions
    load, as the marts' keys come from the dbt manifest."""
    marts = [key for key in dbt_models().keys if key.path[0] == "marts"]
    return asset(
        name="serving_marts",
        group_name="serving",
        deps=[*marts, validation_30d.key],
        kinds={"python", "duckdb"},
        pool=DUCKDB_POOL,
        description="The marts copied to the serving DuckDB file BI reads "
        f"({SERVING_PATH_ENV}, default <warehouse>_serving.duckdb), published atomically.",
    )(_serve)


def serving_selection() -> AssetSelection:
    return AssetSelection.assets(serving_marts())
