"""Read exit-session drop files (JSON Lines, CSV, Parquet) as text columns with lineage.

Every reader returns the rows it could read, each with `_file` and `_line`, plus problem
rows (file, line, reason, raw text) for what it could not, one per bad record: a malformed
JSON line, a CSV record with the wrong number of fields or bytes that are not UTF-8, an
unreadable Parquet row group (`_line` is its first row). Only a file that cannot be opened
at all, or of a type we do not read, is one problem row for the whole file.

CSV and Parquet take the fast columnar path (polars) first and fall back to reading record
by record only when it fails, so a clean file costs no more than before.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

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
    try:
        rows = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, UnicodeDecodeError):
        return read_csv_records(path, name)
    rows = rows.with_columns(_line=pl.int_range(2, rows.height + 2))  # line 1 is the header
    return Batch(_with_file(rows, name), problems(name, []))


def read_csv_records(path: Path, name: str) -> Batch:
    """A CSV file record by record: each record keeps the physical line it starts on, and
    one with the wrong number of fields, or bytes that are not UTF-8, is a problem row
    with its raw text while the others load."""
    # The size of a value is the contract's business (a quarantine reason), not a parse error.
    csv.field_size_limit(2**31 - 1)
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    lines = text.splitlines(keepends=True)
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    header: list[str] | None = None
    records, bad = [], []
    previous_end = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            bad.append((previous_end + 1, f"not a CSV record: {exc}", None))
            previous_end = reader.line_num
            continue
        start, previous_end = previous_end + 1, reader.line_num
        raw = "".join(lines[start - 1 : previous_end]).rstrip("\r\n")
        if not fields:
            continue
        if _has_surrogates(raw):
            bad.append((start, "record is not valid UTF-8", _printable(raw)))
        elif header is None:
            header = fields
        elif len(fields) != len(header):
            bad.append(
                (start, f"record has {len(fields)} fields, the header has {len(header)}", raw)
            )
        else:
            records.append({**dict(zip(header, fields, strict=True)), "_line": start})
    rows = pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame()
    return Batch(_with_file(rows, name), problems(name, bad))


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _printable(text: str) -> str:
    """Text decoded with surrogate escapes, as valid UTF-8 (bad bytes become U+FFFD)."""
    return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def read_parquet(path: Path, name: str) -> Batch:
    try:
        rows = pl.read_parquet(path)
    except pl.exceptions.PolarsError:
        return read_parquet_row_groups(path, name)
    return Batch(_parquet_rows(rows, 1, name), problems(name, []))


def read_parquet_row_groups(path: Path, name: str) -> Batch:
    """A Parquet file row group by row group: an unreadable group is one problem row
    (`_line` = its first row number) and the other groups load."""
    parquet = pq.ParquetFile(path)
    frames, bad = [], []
    first = 1
    for index in range(parquet.num_row_groups):
        size = parquet.metadata.row_group(index).num_rows
        try:
            group = pl.from_arrow(parquet.read_row_group(index))
            frames.append(_parquet_rows(group, first, name))
        except (OSError, ValueError, pa.ArrowException, pl.exceptions.PolarsError) as exc:
            reason = f"row group {index} (rows {first}-{first + size - 1}) unreadable: {exc}"
            bad.append((first, reason.splitlines()[0], None))
        first += size
    rows = pl.concat(frames, how="diagonal_relaxed") if frames else _with_file(pl.DataFrame(), name)
    return Batch(rows, problems(name, bad))


def _parquet_rows(rows: pl.DataFrame, first: int, name: str) -> pl.DataFrame:
    rows = rows.with_columns(as_text(c, rows.schema[c]) for c in rows.columns)
    rows = rows.with_columns(_line=pl.int_range(first, first + rows.height))  # row number
    return _with_file(rows, name)


def as_text(column: str, dtype: pl.DataType) -> pl.Expr:
    """Typed Parquet columns to the text the contract parses: aware times in UTC with an
    offset, naive times as written (read as UTC), nested values as JSON."""
    col = pl.col(column)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone:
            return col.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.f%:z")
        return col.dt.strftime("%Y-%m-%dT%H:%M:%S%.f")
    if isinstance(dtype, pl.Struct):
        return col.struct.json_encode()
    if isinstance(dtype, pl.List | pl.Array):
        return col.map_elements(lambda v: orjson.dumps(v.to_list()).decode(), pl.String)
    if dtype == pl.Binary:
        return col.map_elements(lambda v: v.decode("utf-8", errors="replace"), pl.String)
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
        reason = (
            f"unsupported file type {path.suffix or '(none)'}: drop files must end in "
            + ", ".join(sorted(SUFFIXES))
        )
        return Batch(_with_file(pl.DataFrame(), name), problems(name, [(None, reason, None)]))
    try:
        return READERS[kind](path, name)
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError, ValueError) as exc:
        reason = f"unreadable {kind} file: {str(exc).splitlines()[0]}"
        return Batch(_with_file(pl.DataFrame(), name), problems(name, [(None, reason, None)]))
