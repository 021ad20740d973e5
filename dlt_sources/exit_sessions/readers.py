"""Read exit-session drop files (JSON Lines, CSV, Parquet) as text columns with lineage.

Every reader returns the rows it could read, each with `_file` and `_line`, plus problem
rows (file, line, reason, raw text) for what it could not: a malformed JSON line is one
problem row, an unreadable file is one problem row for the whole file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson
import polars as pl

SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
PROBLEM_SCHEMA = {"_file": pl.String, "_line": pl.Int64, "reason": pl.String, "raw": pl.String}


@dataclass
class Batch:
    """Rows read from one file (text columns + lineage) and rows that could not be read."""

    rows: pl.DataFrame
    problems: pl.DataFrame


def problems(file: str, items: list[tuple[int | None, str, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"_file": file, "_line": line, "reason": reason, "raw": raw}
            for line, reason, raw in items
        ],
        schema=PROBLEM_SCHEMA,
    )


def _text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def read_jsonl(path: Path, name: str) -> Batch:
    records, bad = [], []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                bad.append(
                    (number, f"line is not valid JSON: {exc}", line.decode(errors="replace"))
                )
                continue
            if not isinstance(record, dict):
                bad.append((number, "line is not a JSON object", line.decode(errors="replace")))
                continue
            records.append({**{k: _text(v) for k, v in record.items()}, "_line": number})
    rows = pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame()
    return Batch(_with_file(rows, name), problems(name, bad))


def read_csv(path: Path, name: str) -> Batch:
    rows = pl.read_csv(path, infer_schema=False)
    rows = rows.with_columns(_line=pl.int_range(2, rows.height + 2))  # line 1 is the header
    return Batch(_with_file(rows, name), problems(name, []))


def read_parquet(path: Path, name: str) -> Batch:
    rows = pl.read_parquet(path)
    rows = rows.with_columns(as_text(c, rows.schema[c]) for c in rows.columns)
    rows = rows.with_columns(_line=pl.int_range(1, rows.height + 1))  # row number
    return Batch(_with_file(rows, name), problems(name, []))


def as_text(column: str, dtype: pl.DataType) -> pl.Expr:
    """Typed Parquet columns to the text the contract parses: aware times in UTC with an
    offset, naive times as written (read as UTC), nested values as JSON."""
    col = pl.col(column)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone:
            return col.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.f%:z")
        return col.dt.strftime("%Y-%m-%dT%H:%M:%S%.f")
    if isinstance(dtype, pl.Struct | pl.List):
        return col.struct.json_encode() if isinstance(dtype, pl.Struct) else col.cast(pl.String)
    return col.cast(pl.String)


def read_rows(rows: pl.DataFrame, name: str, first_line: int) -> Batch:
    """Rows read from a database table (typed columns) as text, numbered from
    `first_line` so each row of a run has its own position."""
    rows = rows.with_columns(as_text(c, rows.schema[c]) for c in rows.columns)
    rows = rows.with_columns(_line=pl.int_range(first_line, first_line + rows.height))
    return Batch(_with_file(rows, name), problems(name, []))


def _with_file(rows: pl.DataFrame, name: str) -> pl.DataFrame:
    if rows.width == 0:
        return pl.DataFrame(schema={"_file": pl.String, "_line": pl.Int64})
    return rows.with_columns(_file=pl.lit(name), _line=pl.col("_line").cast(pl.Int64))


READERS = {"jsonl": read_jsonl, "csv": read_csv, "parquet": read_parquet}


def read_file(path: Path, name: str) -> Batch:
    """Read one drop file; an unreadable file becomes one problem row, never an error."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        return Batch(
            _with_file(pl.DataFrame(), name),
            problems(name, [(None, "unsupported file type", None)]),
        )
    try:
        return READERS[kind](path, name)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        reason = f"unreadable {kind} file: {str(exc).splitlines()[0]}"
        return Batch(_with_file(pl.DataFrame(), name), problems(name, [(None, reason, None)]))
