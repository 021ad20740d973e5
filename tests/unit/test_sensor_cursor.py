"""The drop-folder sensor's cursor: bounded (a horizon on the files' change time and the
names changed since), with the guarantees of the cursor that listed every file."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

import pytest

from dlt_sources.exit_sessions import drop_files
from orchestration.sensors import SETTLE_NS, Stamp, new_files, stamps

SETTLE = 50_000_000  # 50 ms: files settle past the horizon within a test
OLD = 1_577_836_800_000_000_000  # 2020-01-01: a modification time from long ago


def tick(folder: Path, cursor: str | None) -> tuple[list[str], str]:
    """One evaluation, as the sensor does it: the clock, then the listing."""
    now = time.time_ns()
    return new_files(cursor, stamps(folder, drop_files(folder)), now, SETTLE)


def settled(folder: Path, cursor: str | None) -> str:
    """The cursor of a tick after every file present passed the horizon: from there on,
    the files are known by the horizon alone, not by name."""
    time.sleep(2 * SETTLE / 1e9)
    fresh, cursor = tick(folder, cursor)
    assert not fresh
    assert json.loads(cursor)["recent"] == {}
    return cursor


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    for n in range(3):
        (folder / f"0{n}_landings.jsonl").write_text(f'{{"n": {n}}}\n')
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file written long ago elsewhere (its modification time in 2020)."""
    old = tmp_path / "elsewhere" / "old_landings.jsonl"
    old.parent.mkdir()
    old.write_text('{"old": true}\n')
    os.utime(old, ns=(OLD, OLD))
    return old


def test_the_first_tick_runs_what_is_there_and_the_next_nothing(drop):
    fresh, cursor = tick(drop, None)
    assert fresh == ["00_landings.jsonl", "01_landings.jsonl", "02_landings.jsonl"]
    assert tick(drop, cursor)[0] == []  # known by name, within the horizon
    cursor = settled(drop, cursor)
    for path in drop.iterdir():  # a load reads them: the access time is not a change
        path.read_bytes()
    assert tick(drop, cursor)[0] == []


@pytest.mark.parametrize("how", ["cp -p", "mv"])
def test_a_file_brought_in_with_an_old_modification_time_is_seen(drop, outside, how):
    cursor = settled(drop, tick(drop, None)[1])
    if how == "cp -p":
        shutil.copy2(outside, drop / outside.name)  # times preserved, as `cp -p` does
    else:
        outside.rename(drop / outside.name)
    assert (drop / outside.name).stat().st_mtime_ns == OLD < json.loads(cursor)["horizon_ns"]
    fresh, cursor = tick(drop, cursor)
    assert fresh == [outside.name]
    assert tick(drop, cursor)[0] == []
    assert tick(drop, settled(drop, cursor))[0] == []


def test_a_file_corrected_in_place_is_seen_even_with_its_size_and_times_put_back(drop):
    cursor = settled(drop, tick(drop, None)[1])
    target = drop / "01_landings.jsonl"
    before = target.stat()
    target.write_text('{"n": 7}\n')  # the same size
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (
        before.st_size,
        before.st_mtime_ns,
    )  # what the cursor of sizes and modification times compared: it missed this
    fresh, cursor = tick(drop, cursor)
    assert fresh == ["01_landings.jsonl"]
    assert tick(drop, cursor)[0] == []


def test_a_file_written_while_the_folder_is_listed_is_seen_at_the_next_tick(drop):
    """The clock is read, then the listing misses a file created meanwhile, though it
    shows one created after it: a horizon at the newest change time seen would pass the
    missed file."""
    cursor = settled(drop, tick(drop, None)[1])
    now = time.time_ns()
    (drop / "10_missed.jsonl").write_text("{}\n")
    (drop / "11_listed.jsonl").write_text("{}\n")
    listed = [path for path in drop_files(drop) if path.name != "10_missed.jsonl"]
    fresh, cursor = new_files(cursor, stamps(drop, listed), now, SETTLE)
    assert fresh == ["11_listed.jsonl"]
    fresh, cursor = tick(drop, cursor)
    assert fresh == ["10_missed.jsonl"]
    assert tick(drop, settled(drop, cursor))[0] == []


def test_a_folder_moved_in_starts_a_load_and_a_new_file_names_only_itself(drop, outside):
    batch = outside.parent
    (batch / "old_actions.csv").write_text("session_id\n")
    os.utime(batch / "old_actions.csv", ns=(OLD, OLD))
    cursor = settled(drop, tick(drop, None)[1])
    batch.rename(drop / "batch")  # its files keep their change times; the folder does not
    fresh, cursor = tick(drop, cursor)
    assert fresh == ["batch/"]
    cursor = settled(drop, cursor)
    (drop / "batch" / "new_actions.csv").write_text("session_id\n")
    fresh, cursor = tick(drop, cursor)
    assert fresh == ["batch/", "batch/new_actions.csv"]  # not the folder's older files
    assert tick(drop, cursor)[0] == []


def test_older_cursors_are_converted_without_running_known_files_again(drop, outside):
    (drop / "batch").mkdir()
    (drop / "batch" / "a.csv").write_text("session_id\n")
    listing = stamps(drop, drop_files(drop))
    names = [name for name in listing if not name.endswith("/")]
    by_name = json.dumps(names)
    by_signature = json.dumps({n: f"{listing[n].size}:{listing[n].mtime_ns}" for n in names})
    (drop / "02_landings.jsonl").write_text('{"n": "fixed"}\n')
    shutil.copy2(outside, drop / outside.name)
    for old, expected in (
        (by_name, [outside.name]),
        (by_signature, ["02_landings.jsonl", outside.name]),
    ):
        fresh, cursor = tick(drop, old)
        assert fresh == expected
        assert json.loads(cursor)["v"] == 2
        assert tick(drop, cursor)[0] == []
        assert tick(drop, settled(drop, cursor))[0] == []


def test_a_second_write_within_one_clock_tick_is_seen():
    """The change time is a clock tick: two writes a few ms apart may share it."""
    fresh, cursor = new_files(None, {"a.csv": Stamp(10, OLD, 5 * SETTLE)}, 6 * SETTLE, SETTLE)
    assert fresh == ["a.csv"]
    fresh, _ = new_files(cursor, {"a.csv": Stamp(25, OLD, 5 * SETTLE)}, 7 * SETTLE, SETTLE)
    assert fresh == ["a.csv"]


def _listing(files: int, now: int) -> dict[str, Stamp]:
    """`files` files changed over the last year, none within the horizon."""
    year = 365 * 86_400 * 10**9
    return {
        f"{n:06d}_landings.jsonl": Stamp(1_000 + n, now - year + n, now - year + n * 1000)
        for n in range(files)
    }


def test_the_cursor_keeps_its_size_from_10_to_100000_files():
    now = time.time_ns()
    sizes = {}
    for files in (10, 1_000, 100_000):
        listing = _listing(files, now)
        first, cursor = new_files(None, listing, now)
        assert len(first) == files
        fresh, cursor = new_files(cursor, listing, now + 30 * 10**9)
        assert not fresh
        sizes[files] = len(cursor.encode())
    assert sizes[10] == sizes[1_000] == sizes[100_000] < 100
    listing["100000_landings.jsonl"] = Stamp(5, now + 40 * 10**9, now + 40 * 10**9)
    fresh, cursor = new_files(cursor, listing, now + 60 * 10**9)
    assert fresh == ["100000_landings.jsonl"]
    assert list(json.loads(cursor)["recent"]) == fresh


def test_every_change_is_reported_once_whatever_the_timing():
    """Against the unbounded cursor (every file's last stamp), over 1,000 ticks 30 s apart:
    files created and rewritten at random moments, some while a listing runs (shown or
    not), the change time up to 4 ms behind the sensor's clock. Same runs, and the cursor
    names only the files changed within the horizon."""
    rng = random.Random(13)
    interval, jiffy = 30 * 10**9, 4 * 10**6
    files: dict[str, Stamp] = {}
    reported: dict[str, str] = {}  # the unbounded cursor
    cursor, clock, pending = None, 0, []
    for _ in range(1_000):
        clock += interval
        listing_ends = clock + 1 + rng.randrange(3 * 10**9)
        events = sorted(clock - rng.randrange(interval) for _ in range(rng.randrange(4)))
        pending += [(at, rng.random()) for at in events]
        pending += [(clock + rng.randrange(listing_ends - clock), rng.random())]
        for at, choice in sorted(pending):
            if at >= clock and rng.random() < 0.5:
                continue  # during the listing, not shown: stays pending
            pending.remove((at, choice))
            name = (
                rng.choice(sorted(files))
                if files and choice < 0.3
                else f"{len(files):05d}_landings.jsonl"
            )
            size = rng.choice([10, files[name].size]) if name in files else 10
            files[name] = Stamp(size, OLD, at - rng.randrange(jiffy))
        expected = sorted(n for n, stamp in files.items() if reported.get(n) != stamp.key)
        fresh, cursor = new_files(cursor, dict(files), clock)
        assert fresh == expected
        reported.update({name: files[name].key for name in fresh})
        recent = json.loads(cursor)["recent"]
        assert all(files[n].ctime_ns >= clock - SETTLE_NS for n in recent)
    assert len(files) > 1_000 and len(recent) < 60
