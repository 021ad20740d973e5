"""Publishing the log into the drop folder as JSON Lines segments the exit-sessions source
loads like any drop file.

A segment is a range of log sequence numbers, recorded in the state database BEFORE its
file is written, and named after the range (`collector-<instance>-<first>-<last>.jsonl`).
The file is written under a `.tmp` name (which the source and the sensor skip), fsynced,
renamed atomically and the folder fsynced; only then is the segment marked published.
After a crash anywhere in between, the same range is written again under the same name
with the same bytes, and the source, which knows files by name and content, loads it once.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path

from collector.log import connect, now, transaction
from collector.worker import Worker

log = logging.getLogger(__name__)

MAX_SEGMENT_ROWS = 10_000


def instance_id(con: sqlite3.Connection) -> str:
    """A short id of this state database, made once: two collectors with their own
    databases publishing into one folder never write the same file name."""
    with transaction(con):
        found = con.execute("select value from collector_meta where key = 'instance'").fetchone()
        if found:
            return found[0]
        value = uuid.uuid4().hex[:8]
        con.execute("insert into collector_meta (key, value) values ('instance', ?)", (value,))
        return value


def publish_once(con: sqlite3.Connection, folder: Path, max_rows: int = MAX_SEGMENT_ROWS) -> int:
    """Write every segment not yet published, then one of the rows committed since the
    last segment; the number of rows published."""
    published = 0
    for first, last, name in con.execute(
        "select first_seq, last_seq, name from collector_segments"
        " where published_at is null order by first_seq"
    ).fetchall():
        published += _publish(con, folder, first, last, name)
    start = con.execute("select coalesce(max(last_seq), 0) from collector_segments").fetchone()[0]
    found = con.execute(
        "select min(seq), max(seq) from (select seq from collector_sessions"
        " where seq > ? order by seq limit ?)",
        (start, max_rows),
    ).fetchone()
    if found[0] is None:
        return published
    first, last = found
    name = f"collector-{instance_id(con)}-{first:012d}-{last:012d}.jsonl"
    with transaction(con):
        con.execute(
            "insert into collector_segments (first_seq, last_seq, name) values (?, ?, ?)",
            (first, last, name),
        )
    return published + _publish(con, folder, first, last, name)


def _publish(con: sqlite3.Connection, folder: Path, first: int, last: int, name: str) -> int:
    rows = [
        text
        for (text,) in con.execute(
            "select row from collector_sessions where seq between ? and ? order by seq",
            (first, last),
        )
    ]
    write_atomically(folder / name, "".join(text + "\n" for text in rows).encode())
    with transaction(con):
        con.execute(
            "update collector_segments set published_at = ? where first_seq = ?", (now(), first)
        )
    return len(rows)


def write_atomically(path: Path, data: bytes) -> None:
    """`path` holds `data` or what it held before, whatever crashes: temporary name,
    fsync, rename, fsync of the folder (so the rename itself is durable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class Publisher(Worker):
    """A thread publishing segments every `interval` seconds, and once more on stop."""

    thread_name = "collector-publish"

    def __init__(self, state_db: Path, folder: Path, interval: float = 1.0) -> None:
        super().__init__()
        self.state_db = state_db
        self.folder = folder
        self.interval = interval

    def _run(self) -> None:
        with closing(connect(self.state_db)) as con:
            while True:
                stopping = self._stop.wait(self.interval)
                try:
                    while publish_once(con, self.folder):
                        pass
                except (sqlite3.Error, OSError) as exc:
                    log.error("could not publish sessions to %s: %s", self.folder, exc)
                if stopping:
                    return
