"""Write-back throughput: deriving actions from the marts, a dry run, a live run through
the official SDKs (read + write per action), and a re-run that finds nothing to do.

The sandbox runs in its own process (`retention sandbox serve`); the warehouse is built
by `retention extract` and `dbt build` from a generated scenario, as in the demo. Live
runs send one request at a time (reads before writes): the figure is per-action latency
bound, well under the APIs' write limits (Stripe 100/s, Recurly and Chargebee lower).
Run: .venv/bin/python bench/bench_writebacks.py [--customers 20000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")

import duckdb
from sandbox_process import drop_files, extract, generate, served

from billing_clients.retries import RetryPolicy
from writebacks.catalog import load_catalog
from writebacks.derive import derive_actions
from writebacks.runner import run_writebacks
from writebacks.systems import writer_for

PORTS = {"stripe": 12321, "recurly": 12322, "chargebee": 12323}
PROJECT = Path(__file__).resolve().parents[1]


def catalog(path: Path, mode: str) -> Path:
    """The project's offers, every system in `mode` from the start of history."""
    _, offers = (PROJECT / "writebacks.yml").read_text().split("\noffers:\n")
    systems = "".join(f"  {s}:\n    mode: {mode}\n    since: 2000-01-01T00:00:00Z\n" for s in PORTS)
    path.write_text(f"billing_systems:\n{systems}\noffers:\n{offers}")
    return path


def build(work: Path) -> Path:
    database = work / "warehouse.duckdb"
    extract(database, work / "drop", PORTS)
    env = {**os.environ, "RETENTION_DUCKDB_PATH": str(database)}
    dbt = [str(Path(sys.executable).with_name("dbt")), "build", "--quiet"]
    dbt += ["--exclude-resource-type", "test", "--exclude-resource-type", "unit_test"]
    dbt += [
        "--project-dir",
        str(PROJECT / "dbt_project"),
        "--profiles-dir",
        str(PROJECT / "dbt_project"),
    ]
    dbt += ["--target-path", str(work / "dbt_target")]
    subprocess.run(dbt, check=True, env=env, cwd=PROJECT)
    return database


def timed_run(database: Path, catalog_path: Path) -> tuple[float, Counter]:
    started = time.perf_counter()
    with duckdb.connect(str(database)) as db:
        summary = run_writebacks(
            db, load_catalog(catalog_path), writer_for, policy=RetryPolicy(base_delay=0.05)
        )
    return time.perf_counter() - started, summary.outcomes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        scenario = work / "scenario.json"
        generate(scenario, args.customers, 7)
        drop_files(scenario, work / "drop")
        for system, port in PORTS.items():
            os.environ[f"SOURCES__{system.upper()}__BASE_URL"] = f"http://127.0.0.1:{port}"
        with served(scenario, PORTS):
            database = build(work)
            dry_db = shutil.copy(database, work / "dry.duckdb")
            with duckdb.connect(str(database)) as db:
                started = time.perf_counter()
                actions = derive_actions(db, load_catalog(catalog(work / "live.yml", "live")))
                derive_seconds = time.perf_counter() - started
            print(
                f"{args.customers:,} customers: {len(actions):,} actions derived in {derive_seconds:.2f} s"
            )
            seconds, outcomes = timed_run(Path(dry_db), catalog(work / "dry.yml", "dry_run"))
            print(f"dry run   {seconds:6.2f} s  {len(actions) / seconds:8,.0f} actions/s")
            seconds, outcomes = timed_run(database, work / "live.yml")
            done = Counter()
            for (system, status), n in outcomes.items():
                if not status.startswith("new_"):
                    done[system] += n
            print(
                f"live run  {seconds:6.2f} s  {len(actions) / seconds:8,.0f} actions/s  "
                f"({dict(sorted(Counter(s for (_, s) in outcomes.elements()).items()))})"
            )
            for system in PORTS:
                print(f"  {system:<10} {done[system]:6,} actions")
            seconds, outcomes = timed_run(database, work / "live.yml")
            print(f"re-run    {seconds:6.2f} s  (nothing left: {dict(outcomes) or 'no actions'})")


if __name__ == "__main__":
    main()
