"""Property-based fuzzing of the exit-session readers and contract (issue #11): drops of
JSON Lines, CSV and Parquet mixing valid rows with every kind of damage. Nothing raises,
every valid row lands exactly once (the latest of its session_id), and every bad one is
quarantined with a reason, its file and its line.

Reproducible: examples are derived from each test's name (`derandomize=True`), with no
example database. The number of generated cases is printed (`pytest -s`).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings

from dlt_sources.exit_sessions.contract import check, latest_per_session
from dlt_sources.exit_sessions.readers import read_file
from tests.exit_session_drops import (
    SMALL_CUSTOM_LIMIT,
    Drop,
    Record,
    assert_outcome,
    csv_drops,
    jsonl_drops,
    parquet_drops,
)

MAX_EXAMPLES = 300
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CASES: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def report_cases():
    """Print how many cases each test ran: generated ones, and the explicit regression
    examples (`@example`) on top."""
    yield
    print()
    for test, count in CASES.items():
        explicit = len(globals()[test].hypothesis.inner_test.hypothesis_explicit_examples)
        print(f"exit-session fuzz: {test}: {count - explicit} generated + {explicit} examples")
    print(f"exit-session fuzz: {sum(CASES.values())} cases in all (reader level)")


def load(drop: Drop, folder: Path) -> tuple[list[dict], list[dict]]:
    """What the source does with one file: read it, check it, keep the latest row per
    session_id; (loaded rows, quarantine rows)."""
    path = folder / drop.name
    path.write_bytes(drop.data)
    batch = read_file(path, drop.name)
    batch.rows = batch.rows.with_columns(_landed_seq=pl.col("_line"))
    good, bad = check(batch.rows, SMALL_CUSTOM_LIMIT) if batch.rows.height else (None, None)
    loaded = latest_per_session(good).to_dicts() if good is not None else []
    quarantine = pl.concat(
        [batch.problems, *([bad] if bad is not None else [])], how="diagonal_relaxed"
    )
    return loaded, quarantine.to_dicts()


def fuzz(drop: Drop, folder: Path, test: str) -> None:
    """Load one drop and check its outcome, counting the case under `test`."""
    CASES[test] = CASES.get(test, 0) + 1
    loaded, quarantine = load(drop, folder)
    assert_outcome([drop], loaded, quarantine)


# ---- regression examples: each a bug the fuzzing found (DECISIONLOG / decisions-fuzz.md)

T0 = datetime(2026, 4, 2, 8, tzinfo=UTC)
GOOD = '"billing_system":"stripe","billing_id":"sub_1","started_at":"2026-04-02T08:00:00Z"'


def ok(line: int, sid: str = "s1", at: datetime = T0) -> Record:
    return Record(line, sid, None, at)


def bad(line: int, damage: str) -> Record:
    return Record(line, None, damage, T0)


def obj(*members: str) -> str:
    """A JSON object's text from its members' texts."""
    return "{" + ",".join(members) + "}"


def jsonl(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


CSV_HEAD = "session_id,billing_system,billing_id,started_at,custom\r\n"
CSV_ROW = "{},stripe,sub_1,2026-04-02T08:00:00Z,\r\n"


def parquet(columns: dict) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


@FUZZ
@given(drop=jsonl_drops())
# A UTF-8 byte-order mark made line 1 "not valid JSON"; a UTF-16 file lost every line.
@example(drop=Drop("bom.jsonl", b"\xef\xbb\xbf" + jsonl(obj('"session_id":"s1"', GOOD)), [ok(1)]))
@example(
    drop=Drop("u16.jsonl", jsonl(obj('"session_id":"s1"', GOOD)).decode().encode("utf-16"), [ok(1)])
)
# An object, array or boolean in a text field loaded as its JSON text.
@example(
    drop=Drop(
        "types.jsonl",
        jsonl(
            obj('"session_id":{"id":1}', GOOD),
            obj('"session_id":"s2"', GOOD, '"billing_id":true'),
            obj('"session_id":"s3"', GOOD, '"action":["canceled"]'),
            obj('"session_id":7', GOOD),  # a number is its text
        ),
        [bad(1, "wrong_type"), bad(2, "wrong_type"), bad(3, "wrong_type"), ok(4, "7")],
    )
)
# `custom` was checked by its first character only, and NUL loaded (PostgreSQL refuses it).
@example(
    drop=Drop(
        "custom.jsonl",
        jsonl(
            obj('"session_id":"s1"', GOOD, '"custom":"{broken"'),
            obj('"session_id":"s2\\u0000"', GOOD),
            obj('"session_id":"s3"', GOOD, '"custom":"{\\"a\\": 1}"'),  # JSON text of an object
        ),
        [bad(1, "custom_not_object"), bad(2, "nul"), ok(3, "s3")],
    )
)
# RFC 3339's space between date and time was refused with an offset, accepted without.
@example(
    drop=Drop(
        "space.jsonl",
        jsonl(
            obj('"session_id":"s1"', GOOD.replace("T08:00:00Z", " 10:00:00+02:00")),
            obj('"session_id":"s2"', GOOD.replace("T08:00:00Z", " 08:00:00Z")),
        ),
        [ok(1), ok(2, "s2")],
    )
)
def test_jsonl_drops(drop, tmp_path_factory):
    fuzz(drop, tmp_path_factory.mktemp("jsonl"), "test_jsonl_drops")


@FUZZ
@given(drop=csv_drops())
# polars' path read a blank line as a row of nulls (quarantined as four missing fields)
# and numbered every line after a quoted line break one too low.
@example(
    drop=Drop(
        "blank.csv",
        (
            CSV_HEAD
            + CSV_ROW.format("s1")
            + "\r\n"
            + 's2,stripe,"sub\n2",2026-04-02T08:00:00Z,\r\n'
            + CSV_ROW.format("s3")
        ).encode(),
        [ok(2), ok(4, "s2"), ok(6, "s3")],
    )
)
# ... loaded a record with too few fields, padded with nulls ...
@example(
    drop=Drop(
        "short.csv",
        (CSV_HEAD + "s1,stripe,sub_1,2026-04-02T08:00:00Z\r\n" + CSV_ROW.format("s2")).encode(),
        [bad(2, "truncated"), ok(3, "s2")],
    )
)
# ... and read a file with CR line ends (no LF) as no rows at all.
@example(
    drop=Drop("cr.csv", (CSV_HEAD + CSV_ROW.format("s1")).replace("\r\n", "\r").encode(), [ok(2)])
)
# The record-by-record path kept a UTF-8 BOM in the first column's name: with one bad
# record in the file, every row was "session_id is required".
@example(
    drop=Drop(
        "bom.csv",
        b"\xef\xbb\xbf" + (CSV_HEAD + CSV_ROW.format("s1")).encode() + b"s\xff2,x\r\n",
        [ok(2), bad(3, "bad_bytes")],
    )
)
# A file cut off inside a quoted value (unclosed quote at the end) loaded the cut value.
@example(
    drop=Drop(
        "cut.csv",
        (
            CSV_HEAD + CSV_ROW.format("s1") + 's2,stripe,sub_2,2026-04-02T08:00:00Z,"{""a"": 1}'
        ).encode(),
        [ok(2), bad(3, "truncated")],
    )
)
# A file without a header lost its first record without a trace (read as the header).
@example(
    drop=Drop(
        "noheader.csv",
        (CSV_ROW.format("s1") + CSV_ROW.format("s2")).encode(),
        [bad(1, "missing_column"), bad(2, "missing_column")],
    )
)
def test_csv_drops(drop, tmp_path_factory):
    fuzz(drop, tmp_path_factory.mktemp("csv"), "test_csv_drops")


@FUZZ
@given(drop=parquet_drops())
# A struct, list or boolean in a text column loaded as its JSON text, and a null struct
# as the text "null".
@example(
    drop=Drop(
        "types.parquet",
        parquet(
            {
                "session_id": ["s1", "s2"],
                "billing_system": ["stripe", "stripe"],
                "billing_id": [{"id": "sub_1"}, None],
                "started_at": ["2026-04-02T08:00:00Z", "2026-04-02T10:00:00+02:00"],
            }
        ),
        [bad(1, "wrong_type"), bad(2, "missing_required")],
    )
)
# A column polars cannot cast to text (a duration, a map, a list of decimals), even one
# the contract does not read, made the whole file one "unreadable" quarantine row.
@example(
    drop=Drop(
        "extra.parquet",
        parquet(
            {
                "session_id": ["s1", "s2"],
                "billing_system": ["stripe", "stripe"],
                "billing_id": ["sub_1", "sub_2"],
                "started_at": ["2026-04-02T08:00:00Z"] * 2,
                "cancel_reason": pa.array([timedelta(0), None], pa.duration("us")),
                "labels": pa.array([[("k", "v")]] * 2, pa.map_(pa.string(), pa.string())),
                "prices": pa.array([[Decimal(1)]] * 2, pa.list_(pa.decimal128(5, 2))),
            }
        ),
        [bad(1, "wrong_type"), ok(2, "s2")],
    )
)
# (Rows of a file with no contract column at all are each quarantined, not dropped.)
@example(
    drop=Drop(
        "none.parquet",
        parquet({"x": [1, 2]}),
        [bad(1, "missing_required"), bad(2, "missing_required")],
    )
)
def test_parquet_drops(drop, tmp_path_factory):
    fuzz(drop, tmp_path_factory.mktemp("parquet"), "test_parquet_drops")


def test_a_quarantined_csv_record_keeps_its_own_raw_text(tmp_path):
    """Raw text was cut by `str.splitlines`, which also breaks at U+2028, form feed and
    other separators that CSV and the reader's line count do not: after such a value, a
    record's raw text was another line's, so its bad bytes went unseen and the whole file
    became one "unreadable" quarantine row (every good row lost with it)."""
    path = tmp_path / "raw.csv"
    path.write_bytes(
        (
            CSV_HEAD
            + 's1,stripe,sub_1,2026-04-02T08:00:00Z,"{""note"": ""a\u2028b\x0cc""}"\r\n'
            + "s2,stripe,sub_2\r\n"
        ).encode()
        + b"s3,stripe,sub_\xff3,2026-04-02T08:00:00Z,\r\n"
    )
    problems = read_file(path, "raw.csv").problems.select("_line", "raw").rows()
    assert problems == [(3, "s2,stripe,sub_2"), (4, "s3,stripe,sub_\ufffd3,2026-04-02T08:00:00Z,")]
