"""A full sync killed after a checkpoint resumes where its last committed round ended:
`retention extract` (a subprocess, `kill -9` once a round has loaded) run again lists only
the windows the warehouse's dlt state still holds, and the warehouse ends equal to a clean
run's (one round, no checkpoint). Stripe against the sandbox, with a small page size, some
latency and a checkpoint every 0.5 s, so the full sync takes several rounds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pytest

from dlt_sources.slices import Window
from orchestration.checkpoints import unfinished_listings
from orchestration.extract import pipeline, run_extract
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.network import Latency

pytestmark = pytest.mark.integration
AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
RETENTION = Path(sys.executable).with_name("retention")
CONTINUES = "full listing of stripe "


@pytest.fixture
def stripe(tmp_path, serve_scenario):
    """A served Stripe sandbox of 120 customers (about 500 invoices), 20 ms a request."""
    path = tmp_path / "scenario.json"
    write_scenario(GenerateOptions(120, 4, AS_OF), path)
    return serve_scenario(
        orjson.loads(path.read_bytes()),
        systems=("stripe",),
        latency={"stripe": Latency(mean_ms=20)},
    )


def extract(database: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [str(RETENTION), "extract", "--systems", "stripe", "--database", str(database)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err


def pending_windows(database: Path, dlt_dir: Path) -> dict[str, list[Window]]:
    """The windows a run on `database` resumes from: the warehouse's dlt state, as the
    run's first step (`sync_destination`) reads it."""
    p = pipeline("stripe", database, dlt_dir / "pipelines")
    p.sync_destination()
    pending = unfinished_listings(p.state)
    return {
        name.removeprefix("stripe "): [Window.from_state(w) for w in windows]
        for name, windows in pending.items()
    }


def windowed_requests(request_log: list[dict]) -> list[tuple[str, int, int]]:
    """(resource, created[gte], created[lt]) of every request of a sliced listing."""
    return [
        (
            r["path"].removeprefix("/v1/"),
            int(r["params"]["created[gte]"]),
            int(r["params"]["created[lt]"]),
        )
        for r in request_log
        if "created[gte]" in r["params"] and "created[lt]" in r["params"]
    ]


def tables(database: Path) -> dict[str, list[tuple]]:
    """Every raw_stripe table's rows without dlt's load columns, sorted; `syncs` (a row
    per round) left out."""
    with duckdb.connect(str(database), read_only=True) as db:
        names = [
            row[0]
            for row in db.sql(
                "select table_name from information_schema.tables where table_schema = "
                "'raw_stripe' and table_name not like '_dlt%' and table_name != 'syncs'"
            ).fetchall()
        ]
        found = {}
        for name in sorted(names):
            columns = [
                row[0]
                for row in db.sql(
                    "select column_name from information_schema.columns where table_schema = "
                    f"'raw_stripe' and table_name = '{name}' and column_name not like '_dlt%' "
                    "order by column_name"
                ).fetchall()
            ]
            listed = ", ".join(f'"{c}"' for c in columns)
            rows = db.sql(f'select {listed} from raw_stripe."{name}"').fetchall()
            found[name] = [tuple(columns), *sorted(rows, key=repr)]
        return found


def test_a_killed_full_sync_resumes_without_listing_a_finished_window_again(
    stripe, tmp_path, monkeypatch
):
    where = {"SOURCES__STRIPE__BASE_URL": stripe.urls["stripe"], "SOURCES__STRIPE__PAGE_SIZE": "10"}
    for name, value in where.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SOURCES__CHECKPOINT_SECONDS", raising=False)
    clean = tmp_path / "clean.duckdb"
    [summary] = run_extract(("stripe",), clean, pipelines_dir=tmp_path / "dlt_clean")
    assert (summary.error, summary.rounds) == (None, 1)
    assert summary.rows["invoices"] > 100
    dlt_dir = tmp_path / "dlt"
    env = {
        **os.environ,
        "DLT_DATA_DIR": str(dlt_dir),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "SOURCES__CHECKPOINT_SECONDS": "0.5",
    }
    database = tmp_path / "resumed.duckdb"

    killed = extract(database, env)
    for line in killed.stderr:  # printed after a round's load committed
        if CONTINUES in line:
            killed.send_signal(signal.SIGKILL)
            break
    else:
        pytest.fail(f"the full sync ended without a checkpoint (exit {killed.wait()})")
    killed.wait()
    assert killed.returncode == -signal.SIGKILL

    pending = pending_windows(database, dlt_dir)
    assert pending, "the killed run left no listing unfinished"
    log = stripe.emulator("stripe").request_log
    log.clear()
    finish(extract(database, env))

    again = windowed_requests(log)
    assert again, "the resumed run listed nothing"
    outside = [
        (resource, lo, hi)
        for resource, lo, hi in again
        if not any(w.lo <= lo and hi <= w.hi for w in pending.get(resource, []))
    ]
    assert outside == [], f"listed again outside the pending windows {pending}"
    assert pending_windows(database, dlt_dir) == {}
    assert tables(database) == tables(clean)

    monkeypatch.setenv("SOURCES__CHECKPOINT_SECONDS", "0.5")
    log.clear()
    [incremental] = run_extract(("stripe",), database, pipelines_dir=dlt_dir / "pipelines")
    assert (incremental.error, incremental.rounds) == (None, 1)
    assert log and windowed_requests(log) == []  # the events since the cursor only
