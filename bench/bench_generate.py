"""Scenario generation speed and peak memory (issue: 100k in seconds, 1M within memory).

Run: .venv/bin/python bench/bench_generate.py [customers ...]   (default 100000 1000000)
Each size runs in a fresh process so that peak memory is that size's own.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import resource, sys, time
from datetime import UTC, datetime
from pathlib import Path
from sandbox.generate import GenerateOptions, write_scenario
n, out = int(sys.argv[1]), Path(sys.argv[2])
t = time.perf_counter()
counts = write_scenario(GenerateOptions(n, 42, datetime(2026, 6, 30, tzinfo=UTC)), out)
took = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{n:>10,} customers  {took:7.2f} s  peak RSS {peak:8,.0f} MiB  "
      f"file {out.stat().st_size / 2**20:8,.0f} MiB  subscriptions {counts['subscriptions']:,}  "
      f"invoices {counts['invoices']:,}  exit sessions {counts['exit_sessions']:,}")
"""


def main(sizes: list[int]) -> None:
    print("scenario generation (polars + numpy, one JSON file)")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            out = Path(tmp) / f"scenario_{n}.json"
            subprocess.run([sys.executable, "-c", CHILD, str(n), str(out)], check=True)
            out.unlink()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100_000, 1_000_000])
