"""dlt source for the exit sessions the cancel page records (validation.md §1).

Reads a folder of drop files (JSON Lines, CSV, Parquet), each file once, in landing order
(modification time, then name). One parent resource reads the new files; two
transformers split each batch by the contract: `exit_sessions` (good rows, merged on
session_id so a later row updates a visit) and `exit_sessions_quarantine` (every bad row
with its file, line and reason). Both are handed to dlt as Arrow tables.

Why not dlt's filesystem source: its incremental cursor is the files' modification time,
which misses a file dropped with an older time (copied with its time preserved); here the
state keeps the names of the files already loaded, and the readers need line numbers
for quarantine rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dlt
import polars as pl
import pyarrow as pa

from dlt_sources.exit_sessions.contract import check, latest_per_session
from dlt_sources.exit_sessions.readers import SUFFIXES, Batch, read_file

SESSION_COLUMNS = {
    "session_id": {"data_type": "text", "nullable": False},
    "started_at": {"data_type": "timestamp", "timezone": True},
    "action_at": {"data_type": "timestamp", "timezone": True},
    "custom": {"data_type": "text"},
    # Landing order across files and runs: within one load the latest row of a session wins.
    "_landed_seq": {"data_type": "bigint", "dedup_sort": "desc"},
}
_LINES_PER_FILE = 10**9


def new_files(folder: Path, loaded: dict[str, dict]) -> list[Path]:
    """Files of a supported type not loaded before, in landing order."""
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES]
    fresh = [p for p in files if str(p.relative_to(folder)) not in loaded]
    return sorted(fresh, key=lambda p: (p.stat().st_mtime_ns, str(p)))


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
    for path in new_files(root, loaded):
        name = str(path.relative_to(root))
        state["file_seq"] = state.get("file_seq", 0) + 1
        batch = read_file(path, name)
        batch.rows = batch.rows.with_columns(
            _landed_seq=state["file_seq"] * _LINES_PER_FILE + pl.col("_line")
        )
        loaded[name] = {
            "seq": state["file_seq"],
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
def exit_sessions_good(batch: Batch) -> Iterator[pa.Table]:
    """Rows that meet the contract, one per session_id (the latest landed)."""
    good, _ = check(batch.rows) if batch.rows.height else (None, None)
    if good is not None and good.height:
        yield latest_per_session(good).to_arrow()


@dlt.transformer(name="exit_sessions_quarantine", write_disposition="append")
def exit_sessions_quarantine(batch: Batch) -> Iterator[pa.Table]:
    """Rows that broke the contract or could not be read, with the reason."""
    bad = check(batch.rows)[1] if batch.rows.height else batch.problems.head(0)
    rejected = pl.concat([batch.problems, bad], how="diagonal_relaxed")
    # Yielded even when empty, so the table (and a check on its count) exists from day one.
    yield rejected.with_columns(quarantined_at=pl.lit(datetime.now(UTC))).to_arrow()


@dlt.source(name="exit_sessions")
def exit_sessions_source(folder: str = dlt.config.value) -> list:
    """Exit sessions from a folder of drop files: good rows and quarantine."""
    files = exit_session_files(folder)
    return [files | exit_sessions_good, files | exit_sessions_quarantine]
