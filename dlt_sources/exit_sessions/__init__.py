"""dlt source for the exit sessions the cancel page records (validation.md §1).

Reads a folder of drop files (JSON Lines, CSV, Parquet), each file once, in landing order
(modification time, then name), or, by configuration, a database table incrementally on
a cursor column (dlt's `sql_table`, rows in cursor order). One parent resource reads the
new rows; two transformers split each batch by the contract: `exit_sessions` (good rows, merged on
session_id so a later row updates a visit) and `exit_sessions_quarantine` (every bad row
with its file, line and reason). Both are handed to dlt as Arrow tables.

Why not dlt's filesystem source: its incremental cursor is the files' modification time,
which misses a file dropped with an older time (copied with its time preserved); here the
state keeps the names of the files already loaded, and the readers need line numbers
for quarantine rows.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dlt
import polars as pl
import pyarrow as pa

from dlt_sources.exit_sessions.contract import MAX_CUSTOM_BYTES, check, latest_per_session
from dlt_sources.exit_sessions.readers import Batch, read_file, read_rows

SESSION_COLUMNS = {
    "session_id": {"data_type": "text", "nullable": False},
    "started_at": {"data_type": "timestamp", "timezone": True},
    "action_at": {"data_type": "timestamp", "timezone": True},
    "custom": {"data_type": "text"},
    # Landing order across files and runs: within one load the latest row of a session wins.
    "_landed_seq": {"data_type": "bigint", "dedup_sort": "desc"},
}
_LINES_PER_FILE = 10**9


# Names of files still being written (or an editor's) that the folder may hold for a
# moment; they are read once renamed to their final name.
_IN_PROGRESS = (".tmp", ".part", ".partial", ".crdownload", "~", ".swp")


def new_files(folder: Path, loaded: dict[str, dict]) -> list[tuple[Path, str]]:
    """(file, content digest) of every file not loaded before, in landing order.

    A file is known by its name and content: one corrected in place under the same name
    is read again (its rows merge by session_id; its landing order is the new one). The
    digest is taken only when size or modification time differ from what was loaded.
    Files of a type we do not read are listed too, so they land in quarantine with the
    reason instead of lying in the folder unnoticed; hidden and in-progress files are not."""
    fresh = []
    for path in drop_files(folder):
        seen = loaded.get(str(path.relative_to(folder)))
        stat = path.stat()
        if seen is not None and "sha256" not in seen:
            continue  # loaded before files were known by content: unchanged by definition
        if seen is not None and (seen["size"], seen["mtime_ns"]) == (
            stat.st_size,
            stat.st_mtime_ns,
        ):
            continue
        digest = file_digest(path)
        if seen is None or seen["sha256"] != digest:
            fresh.append((path, digest))
    return sorted(fresh, key=lambda item: (item[0].stat().st_mtime_ns, str(item[0])))


def drop_files(folder: Path) -> list[Path]:
    """Every file of the drop folder the load reads (or quarantines), by name: not hidden
    files, nor files still being written. The one listing rule the source and the Dagster
    sensor share."""
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and not path.name.startswith(".")
        and not path.name.lower().endswith(_IN_PROGRESS)
    )


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@dlt.resource(name="exit_session_files", selected=False)
def exit_session_files(folder: str = dlt.config.value) -> Iterator[Batch]:
    """Batches read from the files that arrived since the last run. The file names are
    kept in resource state, committed with the load, so a failed load re-reads them."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(
            f"exit-session folder {root} does not exist: create it or set "
            "SOURCES__EXIT_SESSIONS__FOLDER to the folder the cancel page writes to"
        )
    state = dlt.current.resource_state()
    loaded: dict[str, dict] = state.setdefault("loaded_files", {})
    for path, digest in new_files(root, loaded):
        name = str(path.relative_to(root))
        stat = path.stat()
        state["file_seq"] = state.get("file_seq", 0) + 1
        batch = read_file(path, name)
        batch.rows = batch.rows.with_columns(
            _landed_seq=state["file_seq"] * _LINES_PER_FILE + pl.col("_line")
        )
        loaded[name] = {
            "seq": state["file_seq"],
            "sha256": digest,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "rows": batch.rows.height,
            "problems": batch.problems.height,
            "loaded_at": datetime.now(UTC).isoformat(),
        }
        yield batch


@dlt.transformer(
    name="exit_sessions",
    primary_key="session_id",
    write_disposition="merge",
    columns=SESSION_COLUMNS,
)
def exit_sessions_good(batch: Batch, max_custom_bytes: int) -> Iterator[pa.Table]:
    """Rows that meet the contract, one per session_id (the latest landed)."""
    good, _ = check(batch.rows, max_custom_bytes) if batch.rows.height else (None, None)
    if good is not None and good.height:
        yield with_session_nullability(latest_per_session(good).to_arrow())


def with_session_nullability(table: pa.Table) -> pa.Table:
    """The Arrow schema says what SESSION_COLUMNS say: a column declared not null is a
    non-nullable field (the contract quarantined every row without it). Otherwise dlt
    finds the hints differ and warns on every load."""
    fields = [
        field.with_nullable(SESSION_COLUMNS.get(field.name, {}).get("nullable", True))
        for field in table.schema
    ]
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


@dlt.transformer(name="exit_sessions_quarantine", write_disposition="append")
def exit_sessions_quarantine(batch: Batch, max_custom_bytes: int) -> Iterator[pa.Table]:
    """Rows that broke the contract or could not be read, with the reason."""
    bad = check(batch.rows, max_custom_bytes)[1] if batch.rows.height else batch.problems.head(0)
    rejected = pl.concat([batch.problems, bad], how="diagonal_relaxed")
    # Yielded even when empty, so the table (and a check on its count) exists from day one.
    yield rejected.with_columns(quarantined_at=pl.lit(datetime.now(UTC))).to_arrow()


def exit_session_table(credentials: str, table: str, cursor_column: str, schema: str | None):
    """Batches of the table's rows changed since the last run (dlt's `sql_table`, Arrow
    backend, incremental on `cursor_column` in ascending order, so within one load the
    row landed last wins)."""
    from dlt.sources.sql_database import sql_table

    rows = sql_table(
        credentials=credentials,
        table=table,
        schema=schema,
        backend="pyarrow",
        reflection_level="minimal",
        incremental=dlt.sources.incremental(cursor_column, row_order="asc"),
    )
    counter = itertools.count(1)
    name = f"table:{schema + '.' if schema else ''}{table}"

    # A transformer, not a map: dlt applies the cursor after a resource's own steps, so
    # the rows must still be rows when it does.
    @dlt.transformer(name="exit_session_table_rows", selected=False)
    def batches(chunk: pa.Table) -> Iterator[Batch]:
        batch = read_rows(pl.from_arrow(chunk), name, next(counter) * _LINES_PER_FILE)
        batch.rows = batch.rows.with_columns(_landed_seq=pl.col("_line"))
        yield batch

    return rows | batches


@dlt.source(name="exit_sessions")
def exit_sessions_source(
    folder: str | None = None,
    table_credentials: str | None = None,
    table: str | None = None,
    table_schema: str | None = None,
    cursor_column: str = "updated_at",
    max_custom_bytes: int = MAX_CUSTOM_BYTES,
) -> list:
    """Exit sessions, good rows and quarantine, from a folder of drop files
    (`SOURCES__EXIT_SESSIONS__FOLDER`) or from a database table
    (`SOURCES__EXIT_SESSIONS__TABLE`, `..._TABLE_CREDENTIALS` as an SQLAlchemy URL,
    `..._CURSOR_COLUMN`, default updated_at: a column the writer sets on every change).
    A `custom` value over `max_custom_bytes` (`..._MAX_CUSTOM_BYTES`) is quarantined."""
    if table:
        if not table_credentials:
            raise ValueError(
                "exit sessions from a table need SOURCES__EXIT_SESSIONS__TABLE_CREDENTIALS "
                "(an SQLAlchemy URL such as postgresql://user:pass@host/db)"
            )
        parent = exit_session_table(table_credentials, table, cursor_column, table_schema)
    elif folder:
        parent = exit_session_files(folder)
    else:
        raise ValueError(
            "exit sessions need a folder (SOURCES__EXIT_SESSIONS__FOLDER) or a table "
            "(SOURCES__EXIT_SESSIONS__TABLE)"
        )
    return [
        parent | exit_sessions_good(max_custom_bytes=max_custom_bytes),
        parent | exit_sessions_quarantine(max_custom_bytes=max_custom_bytes),
    ]
