"""Read exit-session drop files (JSON Lines, CSV, Parquet) as text columns with lineage.

Every reader returns the rows it could read, each with `_file` and `_line`, plus problem
rows (file, line, reason, raw text) for what it could not, one per bad record: a malformed
JSON line, a CSV record that does not parse or has the wrong number of fields, bytes that
do not decode, an unreadable Parquet row group (`_line` is its first row). Only a file that
cannot be opened at all, or of a type we do not read, is one problem row for the whole file.
Text files are UTF-8, or UTF-16 when a byte-order mark says so (a UTF-8 one is dropped).

Parquet takes the fast columnar path (polars) first and falls back to reading row group by
row group only when it fails, so a clean file costs no more than before.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dlt_sources.exit_sessions.contract import (
    COLUMNS,
    REQUIRED,
    TEXT_COLUMNS,
    TIME_COLUMNS,
    TYPE_ERRORS,
)

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
            {"_file": file, "_line": line, "reason": reason, "raw": _printable(raw)}
            for line, reason, raw in items
        ],
        schema=PROBLEM_SCHEMA,
    )


# A value of one of these JSON types in a text column is a wrong type, quarantined with
# the reason; numbers are read as their text (a page may send numeric ids).
_NOT_TEXT = {dict: "a JSON object", list: "a JSON array", bool: "a JSON boolean"}


def _text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _type_errors(record: dict) -> str | None:
    """Why the record's text columns hold values of the wrong JSON type, or None."""
    errors = [
        f"{column} is {_NOT_TEXT[type(record[column])]}, not text"
        for column in TEXT_COLUMNS + TIME_COLUMNS
        if column != "custom" and type(record.get(column)) in _NOT_TEXT
    ]
    return "; ".join(errors) or None


def _mark_bad_bytes(error: UnicodeDecodeError) -> tuple[str, int]:
    """Like `surrogateescape` for any byte: each byte the codec cannot decode becomes a
    lone surrogate (U+DC00 + byte), so the record holding it is known and quarantined."""
    return "".join(chr(0xDC00 + b) for b in error.object[error.start : error.end]), error.end


codecs.register_error("exit_sessions.mark", _mark_bad_bytes)

# A byte-order mark names the encoding; without one a drop file is UTF-8. Latin-1 and other
# legacy encodings are not guessed: their non-ASCII bytes are not UTF-8, so those records
# are quarantined with their text rather than loaded with wrong characters.
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def decode(data: bytes) -> str:
    """A drop file's text: by its byte-order mark (UTF-8 or UTF-16), else UTF-8; bytes
    that do not decode are kept as lone surrogates (see `_mark_bad_bytes`)."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(codec, errors="exit_sessions.mark")
    return data.decode("utf-8", errors="exit_sessions.mark")


def read_jsonl(path: Path, name: str) -> Batch:
    """One JSON object per line (lines split on LF only, as JSON never holds a raw one);
    each bad line is a problem row with its raw text while the others load."""
    text = decode(path.read_bytes())
    undecodable = _SURROGATES.search(text) is not None
    records, bad = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if undecodable and _SURROGATES.search(line):
            bad.append((number, "line is not valid UTF-8", line))
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            bad.append((number, f"line is not valid JSON: {exc}", line))
            continue
        if not isinstance(record, dict):
            bad.append((number, "line is not a JSON object", line))
            continue
        texts = {k: _text(v) for k, v in record.items()}
        records.append({**texts, TYPE_ERRORS: _type_errors(record), "_line": number})
    rows = pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame()
    return Batch(_with_file(rows, name), problems(name, bad))


def read_csv(path: Path, name: str) -> Batch:
    """A CSV file record by record with Python's `csv` reader (strict quoting): each record
    keeps the physical line it starts on; one that does not parse, has the wrong number of
    fields, or holds bytes that do not decode is a problem row with its raw text while the
    others load. Blank lines are skipped. (polars' columnar reader was faster but padded
    short records with nulls, numbered lines wrong after a quoted line break, read a blank
    line as a row and a CR-only file as no rows.)"""
    # The size of a value is the contract's business (a quarantine reason), not a parse error.
    csv.field_size_limit(2**31 - 1)
    text = decode(path.read_bytes())
    undecodable = _SURROGATES.search(text) is not None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    records, numbers, bad = [], [], []
    end = 0
    while True:
        start = end + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            end = reader.line_num
            bad.append((start, end, f"not a CSV record: {exc}"))
            continue
        end = reader.line_num
        if not fields:
            continue
        if undecodable and any(_SURROGATES.search(field) for field in fields):
            bad.append((start, end, "record is not valid UTF-8"))
        elif header is None:
            header = fields
            if missing := [c for c in REQUIRED if c not in header]:
                # Every record will be quarantined; the header itself (perhaps a first
                # record in a file without one) must not vanish either.
                bad.append((start, end, f"header has no column {', '.join(missing)}"))
        elif len(fields) != len(header):
            bad.append(
                (start, end, f"record has {len(fields)} fields, the header has {len(header)}")
            )
        else:
            records.append(fields)
            numbers.append(start)
    rows = pl.DataFrame()
    if header is not None and records:
        names = _unique(header)
        rows = pl.DataFrame(records, schema=names, orient="row").with_columns(
            _line=pl.Series(numbers, dtype=pl.Int64)
        )
    lines = io.StringIO(text, newline="").readlines() if bad else []
    problem_rows = [(start, reason, _raw(lines, start, end)) for start, end, reason in bad]
    return Batch(_with_file(rows, name), problems(name, problem_rows))


def _unique(header: list[str]) -> list[str]:
    """Column names for a header that may repeat one: a repeat gets a suffix, so the first
    column of a name is the one read (as polars did)."""
    seen: dict[str, int] = {}
    names = []
    for column in header:
        seen[column] = seen.get(column, -1) + 1
        names.append(column if not seen[column] else f"{column}_duplicated_{seen[column] - 1}")
    return names


def _raw(lines: list[str], start: int, end: int) -> str:
    return "".join(lines[start - 1 : end]).rstrip("\r\n")


def _printable(text: str | None) -> str | None:
    """Raw text safe to store anywhere: bytes that did not decode become U+FFFD and NUL
    becomes U+2400 (PostgreSQL text cannot hold NUL)."""
    if text is None:
        return None
    return _SURROGATES.sub("\ufffd", text).replace("\x00", "\u2400")


_SURROGATES = re.compile("[\ud800-\udfff]")


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
    rows = _as_text_rows(rows).with_columns(_line=pl.int_range(first, first + rows.height))
    return _with_file(rows, name)


def _as_text_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """The contract's typed columns as text, with the wrong-type reasons (`TYPE_ERRORS`) of
    each row: a nested, boolean or duration value in a text or time column is quarantined,
    as in JSON Lines. Other columns are dropped unconverted: a column the contract does not
    read never makes a file unreadable, whatever its type."""
    wrong = [
        pl.when(pl.col(c).is_not_null()).then(pl.lit(f"{c} is {kind}, not text"))
        for c in TEXT_COLUMNS + TIME_COLUMNS
        if c != "custom" and c in rows.columns and (kind := _not_text(rows.schema[c]))
    ]
    errors = pl.concat_str(wrong, separator="; ", ignore_nulls=True) if wrong else pl.lit(None)
    # with_columns first: a literal there spans every row, even with no contract column.
    return rows.with_columns(errors.cast(pl.String).alias(TYPE_ERRORS)).select(
        *(as_text(c, rows.schema[c]) for c in rows.columns if c in COLUMNS), TYPE_ERRORS
    )


def _not_text(dtype: pl.DataType) -> str | None:
    if isinstance(dtype, pl.Struct):
        return "a struct"
    if isinstance(dtype, pl.List | pl.Array):
        return "a list"
    if isinstance(dtype, pl.Duration):
        return "a duration"
    return "a boolean" if dtype == pl.Boolean else None


def as_text(column: str, dtype: pl.DataType) -> pl.Expr:
    """Typed Parquet columns to the text the contract parses: aware times in UTC with an
    offset, naive times as written (read as UTC), nested values as JSON."""
    col = pl.col(column)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone:
            return col.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.f%:z")
        return col.dt.strftime("%Y-%m-%dT%H:%M:%S%.f")
    if isinstance(dtype, pl.Struct):  # a null struct is null, not the text "null"
        return pl.when(col.is_not_null()).then(col.struct.json_encode())
    if isinstance(dtype, pl.List | pl.Array):  # decimals and the like as their text
        return col.map_elements(
            lambda v: orjson.dumps(v.to_list(), default=str).decode(), pl.String
        )
    if isinstance(dtype, pl.Duration):  # polars casts no duration to text
        return col.map_elements(str, pl.String)
    if dtype == pl.Binary:
        return col.map_elements(lambda v: v.decode("utf-8", errors="replace"), pl.String)
    return col.cast(pl.String)


def read_rows(rows: pl.DataFrame, name: str, first_line: int) -> Batch:
    """Rows read from a database table (typed columns) as text, numbered from
    `first_line` so each row of a run has its own position."""
    rows = _as_text_rows(rows).with_columns(
        _line=pl.int_range(first_line, first_line + rows.height)
    )
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
