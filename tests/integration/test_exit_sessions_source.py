"""The exit-sessions source loads drop files into DuckDB through dlt: good rows merged by
session_id, bad rows quarantined with file, line and reason, each file once."""

from __future__ import annotations

import os
from pathlib import Path

import dlt
import duckdb
import polars as pl
import pytest

from dlt_sources.exit_sessions import exit_sessions_source
from sandbox.exit_files import write_exit_session_files
from sandbox.scenario import load_scenario

pytestmark = pytest.mark.integration


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


@pytest.fixture
def run(tmp_path: Path):
    """Run the source into a DuckDB file; return a query function over the dataset."""
    database = tmp_path / "warehouse.duckdb"

    def load(folder: Path):
        pipeline = dlt.pipeline(
            "exit_sessions_test",
            destination=dlt.destinations.duckdb(str(database)),
            dataset_name="raw_exit_sessions",
            pipelines_dir=str(tmp_path / "pipelines"),
        )
        info = pipeline.run(exit_sessions_source(folder=str(folder)))
        assert not info.has_failed_jobs
        return info

    def query(sql: str) -> list[tuple]:
        with duckdb.connect(str(database), read_only=True) as con:
            return con.sql(sql).fetchall()

    return load, query


def write_lines(path: Path, lines: list[str], mtime: int) -> None:
    path.write_text("\n".join(lines) + "\n")
    os.utime(path, (mtime, mtime))


GOOD = '{"session_id":"%s","billing_system":"stripe","billing_id":"sub_1","started_at":"2026-04-02T08:00:00Z"%s}'


def test_formats_load_with_types_and_lineage(drop, run):
    load, query = run
    write_lines(drop / "a.jsonl", [GOOD % ("s1", ',"custom":{"seats":3},"action":""')], 1000)
    pl.DataFrame(
        {
            "session_id": ["s2"],
            "billing_system": ["recurly"],
            "billing_id": ["acct-1"],
            "started_at": ["2026-04-02 10:00:00"],
            "action": ["deflected"],
            "action_at": ["2026-04-02T12:01:00+02:00"],
        }
    ).write_csv(drop / "b.csv")
    pl.DataFrame(
        {
            "session_id": ["s3"],
            "billing_system": ["chargebee"],
            "billing_id": ["cb-1"],
            "started_at": pl.Series(["2026-04-03T00:00:00"])
            .str.to_datetime()
            .dt.replace_time_zone("UTC"),
            "page_id": ["holdout"],
        }
    ).write_parquet(drop / "c.parquet")
    load(drop)
    rows = query(
        "select session_id, action, strftime(started_at at time zone 'UTC', '%Y-%m-%d %H:%M'),"
        " strftime(action_at at time zone 'UTC', '%H:%M'), custom, page_id, _file, _line"
        " from raw_exit_sessions.exit_sessions order by 1"
    )
    assert rows == [
        ("s1", None, "2026-04-02 08:00", None, '{"seats":3}', None, "a.jsonl", 1),
        ("s2", "deflected", "2026-04-02 10:00", "10:01", None, None, "b.csv", 2),
        ("s3", None, "2026-04-03 00:00", None, None, "holdout", "c.parquet", 1),
    ]


def test_bad_rows_are_quarantined_and_good_rows_load(drop, run):
    load, query = run
    write_lines(
        drop / "mixed.jsonl",
        [
            GOOD % ("ok1", ""),
            "{not json",
            GOOD.replace("stripe", "paypal") % ("bad1", ""),
            GOOD % ("bad2", ',"action":"canceled"'),
            GOOD % ("bad3", ',"action":"canceled","action_at":"2026-04-01T00:00:00Z"'),
            GOOD % ("bad4", ',"action":"offer_accepted","action_at":"2026-04-02T09:00:00Z"'),
            GOOD.replace("2026-04-02T08:00:00Z", "last tuesday") % ("bad5", ""),
            '{"session_id":"bad6","billing_system":"stripe","started_at":"2026-04-02T08:00:00Z"}',
            GOOD % ("bad7", ',"custom":[1,2]'),
            GOOD % ("ok2", ""),
        ],
        1000,
    )
    (drop / "broken.parquet").write_bytes(b"not parquet")
    load(drop)
    assert query("select session_id from raw_exit_sessions.exit_sessions order by 1") == [
        ("ok1",),
        ("ok2",),
    ]
    quarantine = dict(
        ((f, line), reason)
        for f, line, reason in query(
            "select _file, _line, reason from raw_exit_sessions.exit_sessions_quarantine"
        )
    )
    assert quarantine[("mixed.jsonl", 2)].startswith("line is not valid JSON")
    assert (
        quarantine[("mixed.jsonl", 3)] == "billing_system is not one of stripe, recurly, chargebee"
    )
    assert quarantine[("mixed.jsonl", 4)] == "action_at is required when action is set"
    assert quarantine[("mixed.jsonl", 5)] == "action_at is before started_at"
    assert quarantine[("mixed.jsonl", 6)] == "offer_type is required when action is offer_accepted"
    assert quarantine[("mixed.jsonl", 7)] == "started_at is not a timestamp"
    assert quarantine[("mixed.jsonl", 8)] == "billing_id is required"
    assert quarantine[("mixed.jsonl", 9)] == "custom is not a JSON object"
    assert quarantine[("broken.parquet", None)].startswith("unreadable parquet file")
    assert len(quarantine) == 9


def test_later_rows_update_a_visit_and_each_file_loads_once(drop, run):
    load, query = run
    write_lines(drop / "1.jsonl", [GOOD % ("s1", ""), GOOD % ("s2", "")], 1000)
    write_lines(
        drop / "2.jsonl",
        [GOOD % ("s1", ',"action":"canceled","action_at":"2026-04-02T08:05:00Z"')],
        2000,
    )
    load(drop)
    assert query("select session_id, action from raw_exit_sessions.exit_sessions order by 1") == [
        ("s1", "canceled"),
        ("s2", None),
    ]
    load(drop)  # nothing new: nothing doubled
    assert query("select count(*) from raw_exit_sessions.exit_sessions") == [(2,)]
    # A file copied in later with an older modification time is still new.
    write_lines(
        drop / "0_late.jsonl",
        [
            GOOD % ("s2", ',"action":"deflected","action_at":"2026-04-02T08:01:00Z"'),
            GOOD % ("s2", ',"action":"deflected","action_at":"2026-04-02T08:01:00Z"'),
        ],
        500,
    )
    load(drop)
    assert query("select session_id, action from raw_exit_sessions.exit_sessions order by 1") == [
        ("s1", "canceled"),
        ("s2", "deflected"),
    ]


def test_scenario_drop_files_merge_to_the_scenario(tmp_path, drop, run):
    from datetime import UTC, datetime

    from sandbox.generate import GenerateOptions, write_scenario

    path = tmp_path / "scenario.json"
    write_scenario(GenerateOptions(400, 3, datetime(2026, 6, 30, tzinfo=UTC)), path)
    scenario = load_scenario(path)
    write_exit_session_files(scenario, drop, "csv")
    load, query = run
    load(drop)
    loaded = dict(
        query("select session_id, coalesce(action, '') from raw_exit_sessions.exit_sessions")
    )
    assert loaded == {s["session_id"]: s["action"] or "" for s in scenario.exit_sessions}
    assert query("select count(*) from raw_exit_sessions.exit_sessions_quarantine") == [(0,)]


def test_missing_folder_is_a_clear_error(tmp_path, run):
    load, _ = run
    with pytest.raises(Exception, match="SOURCES__EXIT_SESSIONS__FOLDER"):
        load(tmp_path / "nowhere")


def test_a_database_table_loads_incrementally_with_quarantine(tmp_path, run):
    import sqlite3

    db = tmp_path / "page.sqlite"
    con = sqlite3.connect(db)
    con.execute(
        "create table sessions (session_id text, billing_system text, billing_id text, "
        "started_at text, action text, action_at text, updated_at integer)"
    )
    rows = [
        ("s1", "stripe", "sub_1", "2026-04-02T08:00:00Z", None, None, 1),
        ("s2", "paypal", "x", "2026-04-02T08:00:00Z", None, None, 2),
    ]
    con.executemany("insert into sessions values (?, ?, ?, ?, ?, ?, ?)", rows)
    con.commit()
    _, query = run
    url = f"sqlite:///{db}"
    pipeline_run = _table_loader(tmp_path, url)
    pipeline_run()
    assert query("select session_id, action from raw_exit_sessions.exit_sessions") == [("s1", None)]
    assert query("select _file, reason from raw_exit_sessions.exit_sessions_quarantine") == [
        ("table:sessions", "billing_system is not one of stripe, recurly, chargebee")
    ]
    con.execute(
        "update sessions set action = 'canceled', action_at = '2026-04-02T08:05:00Z', "
        "updated_at = 3 where session_id = 's1'"
    )
    con.execute(
        "insert into sessions values ('s3', 'recurly', 'acct-1', '2026-04-03T00:00:00Z', null, null, 4)"
    )
    con.commit()
    pipeline_run()
    assert query("select session_id, action from raw_exit_sessions.exit_sessions order by 1") == [
        ("s1", "canceled"),
        ("s3", None),
    ]
    assert query("select count(*) from raw_exit_sessions.exit_sessions_quarantine") == [(1,)]


def _table_loader(tmp_path, url):
    database = tmp_path / "warehouse.duckdb"

    def load():
        pipeline = dlt.pipeline(
            "exit_sessions_test",
            destination=dlt.destinations.duckdb(str(database)),
            dataset_name="raw_exit_sessions",
            pipelines_dir=str(tmp_path / "pipelines"),
        )
        source = exit_sessions_source(table_credentials=url, table="sessions")
        assert not pipeline.run(source).has_failed_jobs

    return load


CSV_HEADER = "session_id,billing_system,billing_id,started_at,custom"


def test_csv_and_parquet_are_quarantined_row_by_row(drop, run):
    """One bad record costs only itself: the file's good rows load, and the bad one is in
    quarantine with its line (or row group) and raw text."""
    load, query = run
    (drop / "a.csv").write_bytes(
        (
            CSV_HEADER + "\n"
            "c1,stripe,sub_1,2026-04-02T08:00:00Z,\n"
            "c2,stripe,sub_2\n"  # too few fields
            'c3,stripe,sub_3,2026-04-02T08:00:00Z,"{""note"":\n""two lines""}"\n'
        ).encode()
        + b"c4,stripe,sub_\xff4,2026-04-02T08:00:00Z,\n"  # not UTF-8
        + b"c5,recurly,acct-5,2026-04-02T09:00:00Z,\n"
    )
    load(drop)
    assert query("select session_id, _line from raw_exit_sessions.exit_sessions order by 1") == [
        ("c1", 2),
        ("c3", 4),
        ("c5", 7),
    ]
    quarantine = {
        line: (reason, raw)
        for line, reason, raw in query(
            "select _line, reason, raw from raw_exit_sessions.exit_sessions_quarantine"
        )
    }
    assert quarantine[3] == ("record has 3 fields, the header has 5", "c2,stripe,sub_2")
    assert quarantine[6][0] == "record is not valid UTF-8"
    assert quarantine[6][1].startswith("c4,stripe,sub_\ufffd4")
    assert len(quarantine) == 2


def test_an_unreadable_parquet_row_group_costs_only_its_rows(drop, run):
    import pyarrow as pa
    import pyarrow.parquet as pq

    load, query = run
    table = pa.table(
        {
            "session_id": [f"p{i}" for i in range(6)],
            "billing_system": ["stripe"] * 6,
            "billing_id": ["sub_1"] * 6,
            "started_at": ["2026-04-02T08:00:00Z"] * 6,
        }
    )
    path = drop / "groups.parquet"
    pq.write_table(table, path, row_group_size=2, compression="none")
    data = bytearray(path.read_bytes())
    middle = pq.ParquetFile(path).metadata.row_group(1).column(0)
    start = middle.data_page_offset
    data[start : start + middle.total_compressed_size] = b"\xff" * middle.total_compressed_size
    path.write_bytes(bytes(data))
    load(drop)
    loaded = query("select session_id, _line from raw_exit_sessions.exit_sessions order by 1")
    assert loaded == [("p0", 1), ("p1", 2), ("p4", 5), ("p5", 6)]
    [(line, reason)] = query("select _line, reason from raw_exit_sessions.exit_sessions_quarantine")
    assert line == 3 and reason.startswith("row group 1 (rows 3-4) unreadable")


def test_a_file_corrected_in_place_is_read_again_and_unknown_types_are_quarantined(drop, run):
    load, query = run
    write_lines(drop / "a.jsonl", [GOOD % ("s1", ',"action":"canceled"')], 1000)
    (drop / "notes.txt").write_text("the page team's notes")
    (drop / "b.jsonl.part").write_text("still being written")
    load(drop)
    reasons = dict(query("select _file, reason from raw_exit_sessions.exit_sessions_quarantine"))
    assert reasons["a.jsonl"] == "action_at is required when action is set"
    assert reasons["notes.txt"].startswith("unsupported file type .txt: drop files must end in")
    assert "b.jsonl.part" not in reasons  # read once it has its final name

    write_lines(
        drop / "a.jsonl",
        [GOOD % ("s1", ',"action":"canceled","action_at":"2026-04-02T08:05:00Z"')],
        1000,  # the same name and even the same modification time: the content decides
    )
    load(drop)
    assert query("select session_id, action from raw_exit_sessions.exit_sessions") == [
        ("s1", "canceled")
    ]
    load(drop)  # nothing new: nothing read again
    assert query("select count(*) from raw_exit_sessions.exit_sessions_quarantine") == [(2,)]


def test_a_huge_custom_value_is_quarantined(drop, run):
    load, query = run
    huge = '"' + "x" * (64 * 1024) + '"'
    write_lines(
        drop / "a.jsonl",
        [
            GOOD % ("small", ',"custom":{"seats":3}'),
            GOOD % ("huge", f',"custom":{{"blob":{huge}}}'),
        ],
        1000,
    )
    load(drop)
    assert query("select session_id from raw_exit_sessions.exit_sessions") == [("small",)]
    [(line, reason)] = query("select _line, reason from raw_exit_sessions.exit_sessions_quarantine")
    assert line == 2 and reason.startswith("custom is over 65536 bytes")
