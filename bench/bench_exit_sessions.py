"""Exit-session drop throughput: 1,000,000-row Parquet and CSV files through the dlt
source (read, contract check, Arrow into dlt, merge into DuckDB), rows per second.

Run: .venv/bin/python bench/bench_exit_sessions.py [rows]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt
import polars as pl

from dlt_sources.exit_sessions import exit_sessions_source


def sessions(rows: int) -> pl.DataFrame:
    """Synthetic visits: 1% break the contract (unknown billing system)."""
    n = pl.int_range(rows, eager=True)
    started = pl.datetime(2026, 1, 1, time_zone="UTC") + pl.duration(minutes=n)
    return pl.select(
        session_id=pl.format("es_{}", n),
        app_id=pl.lit("app_main"),
        billing_system=pl.when(n % 100 == 0)
        .then(pl.lit("paypal"))
        .otherwise(pl.lit(["stripe", "recurly", "chargebee"]).list.get(n % 3)),
        billing_id=pl.format("sub_{}", n % 400_000),
        email=pl.format("customer{}@example.com", n % 400_000),
        started_at=started.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        action=pl.when(n % 4 == 0)
        .then(pl.lit("canceled"))
        .when(n % 4 == 1)
        .then(pl.lit("deflected")),
        action_at=pl.when(n % 4 < 2).then(
            (started + pl.duration(minutes=2)).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        ),
        page_id=pl.lit("page_a"),
    )


def run(kind: str, frame: pl.DataFrame, tmp: Path) -> None:
    drop = tmp / kind / "drop"
    drop.mkdir(parents=True)
    path = drop / f"sessions.{kind}"
    frame.write_parquet(path) if kind == "parquet" else frame.write_csv(path)
    pipeline = dlt.pipeline(
        f"bench_{kind}",
        destination=dlt.destinations.duckdb(str(tmp / kind / "w.duckdb")),
        dataset_name="raw_exit_sessions",
        pipelines_dir=str(tmp / kind / "pipelines"),
    )
    started = time.perf_counter()
    pipeline.run(exit_sessions_source(folder=str(drop)))
    took = time.perf_counter() - started
    with pipeline.sql_client() as client:
        good = client.execute_sql("select count(*) from exit_sessions")[0][0]
        bad = client.execute_sql("select count(*) from exit_sessions_quarantine")[0][0]
    size = path.stat().st_size / 2**20
    print(
        f"{kind:<8} {frame.height:>10,} rows  {size:7.0f} MiB  {took:6.2f} s  "
        f"{frame.height / took:>10,.0f} rows/s  loaded {good:,}  quarantined {bad:,}"
    )


def main(rows: int) -> None:
    frame = sessions(rows)
    print("exit-session drop files -> dlt (Arrow) -> DuckDB, first load (merge on session_id)")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("parquet", "csv"):
            run(kind, frame, Path(tmp))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
