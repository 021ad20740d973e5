"""The drop-folder sensor at 100,000 files: the cursor's size and the tick's time.

Writes N small files into a fresh drop folder (flat, as the cancel page drops them), then
prints, for 10, 1,000 and N files: the cursor's size in bytes at the tick that sees the
burst (every file changed within the horizon, so named in the cursor) and at a tick once
the horizon has passed them (the steady state), beside the size of the former cursor (every
file's name, size and modification time). At N it prints where a tick's time goes: the
listing (`DropFolder.files()`, i.e. `dlt_sources.exit_sessions.drop_files`), one `stat`
per file, the cursor, and a whole tick through Dagster (`evaluate_tick`, at the burst: the
files are minutes old, so the tick's cursor still names them all), best of three; and, for
comparison, a bare `os.scandir` walk with a `stat` of each entry.

Run: .venv/bin/python bench/bench_sensor.py [files]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dagster import DagsterInstance, build_sensor_context, job, op

from dlt_sources.exit_sessions import drop_files
from orchestration.resources import DropFolder
from orchestration.sensors import SETTLE_NS, drop_folder_sensor, new_files, stamps


def write_files(folder: Path, start: int, stop: int) -> None:
    for n in range(start, stop):
        (folder / f"{n:06d}_landings.jsonl").write_bytes(b'{"session_id": "es_%d"}\n' % n)


def best_of_three(work: Callable[[], object]) -> float:
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def cursor_sizes(folder: Path) -> tuple[int, int, int]:
    """(former cursor, burst tick, steady tick) sizes in bytes for the files now present."""
    present = stamps(folder, drop_files(folder))
    former = json.dumps({n: f"{s.size}:{s.mtime_ns}" for n, s in present.items()}, sort_keys=True)
    now = time.time_ns()
    _, burst = new_files(None, present, now)
    _, steady = new_files(burst, present, now + SETTLE_NS)  # a tick once the horizon passed
    return len(former.encode()), len(burst.encode()), len(steady.encode())


def scandir_walk(folder: Path) -> int:
    """Every file under `folder` with a `stat` of each: the least a listing can cost."""
    count, pending = 0, [folder]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                else:
                    entry.stat()
                    count += 1
    return count


@op
def _load() -> None:
    """Stands in for the exit-sessions load: only the sensor is measured."""


@job
def _exit_sessions_load() -> None:
    _load()


def dagster_tick(folder: Path, cursor: str) -> Callable[[], object]:
    sensor = drop_folder_sensor(_exit_sessions_load)
    resources = {"drop_folder": DropFolder(path=str(folder))}

    def evaluate() -> object:
        with DagsterInstance.ephemeral() as instance:
            context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            return sensor.evaluate_tick(context)

    return evaluate


def main(files: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "drop"
        folder.mkdir()
        print(f"{'files':>8} {'former cursor B':>16} {'burst tick B':>13} {'steady tick B':>14}")
        written = 0
        for count in (10, 1_000, files):
            write_files(folder, written, count)
            written = count
            former, burst, steady = cursor_sizes(folder)
            print(f"{count:>8,} {former:>16,} {burst:>13,} {steady:>14,}")

        listing = drop_files(folder)
        present = stamps(folder, listing)
        now = time.time_ns()
        _, burst = new_files(None, present, now)
        _, steady = new_files(burst, present, now + SETTLE_NS)
        later = now + 2 * SETTLE_NS
        figures = {
            "listing: DropFolder.files() (drop_files)": lambda: drop_files(folder),
            "stat of each file (stamps)": lambda: stamps(folder, listing),
            "cursor (new_files), steady": lambda: new_files(steady, present, later),
            "cursor (new_files), burst": lambda: new_files(burst, present, time.time_ns()),
            "whole tick through Dagster, burst": dagster_tick(folder, burst),
            "for comparison: os.scandir walk + stat": lambda: scandir_walk(folder),
        }
        print(f"\ntick at {files:,} files, best of three:")
        for name, work in figures.items():
            print(f"  {name:<45} {best_of_three(work):7.3f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
