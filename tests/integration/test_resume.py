"""A full sync killed after a checkpoint resumes where its last committed round ended:
`retention extract` (a subprocess, `kill -9` once a round has loaded) run again lists only
the windows the warehouse's dlt state still holds, and the warehouse ends equal to a clean
run's (one round, no checkpoint); the Dagster load assets run the rounds as one step.
Stripe against the sandbox, with a small page size, some latency and a checkpoint every
0.5 s, so the full sync takes several rounds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import orjson
import pytest
from dagster import materialize

from dlt_sources.slices import Window
from orchestration.checkpoints import unfinished_listings
from orchestration.extract import pipeline, run_extract
from orchestration.loads import billing_assets
from orchestration.resources import build_resources
from orchestration.settings import DUCKDB_PATH_ENV
from sandbox.app import Sandbox, start_sandbox
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.network import Latency
from sandbox.scenario import validate_scenario

pytestmark = pytest.mark.integration
AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
RETENTION = Path(sys.executable).with_name("retention")
CONTINUES = "full listing of stripe "
CHECKPOINT = "SOURCES__CHECKPOINT_SECONDS"


@pytest.fixture(scope="module")
def stripe(tmp_path_factory) -> Iterator[Sandbox]:
    """A served Stripe sandbox of 120 customers (about 500 invoices), 20 ms a request;
    its clock frozen, nothing written: every test reads the same account."""
    path = tmp_path_factory.mktemp("scenario") / "scenario.json"
    write_scenario(GenerateOptions(120, 4, AS_OF), path)
    sandbox = start_sandbox(
        validate_scenario(orjson.loads(path.read_bytes())),
        frozen=True,
        systems=("stripe",),
        latency={"stripe": Latency(mean_ms=20)},
    )
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="module")
def clean(stripe, tmp_path_factory) -> dict[str, list[tuple]]:
    """The tables of a clean full sync of `stripe`: one round, no checkpoint."""
    where = tmp_path_factory.mktemp("clean")
    with pytest.MonkeyPatch.context() as env:
        point_at(env, stripe)
        env.delenv(CHECKPOINT, raising=False)
        [summary] = run_extract(("stripe",), where / "clean.duckdb", pipelines_dir=where / "dlt")
    assert (summary.error, summary.rounds) == (None, 1)
    assert summary.rows["invoices"] > 100
    return tables(where / "clean.duckdb")


def point_at(env: pytest.MonkeyPatch, stripe: Sandbox) -> None:
    env.setenv("SOURCES__STRIPE__BASE_URL", stripe.urls["stripe"])
    env.setenv("SOURCES__STRIPE__PAGE_SIZE", "10")


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


def synced_at(database: Path) -> list[datetime]:
    """The `syncs` rows' validation times, oldest first."""
    with duckdb.connect(str(database), read_only=True) as db:
        rows = db.execute("select synced_at from raw_stripe.syncs order by synced_at").fetchall()
    return [row[0].astimezone(UTC) for row in rows]


@pytest.fixture
def clock_moves(stripe) -> Iterator[Callable[[timedelta], None]]:
    """Move the module's frozen sandbox clock; put back after the test."""
    start = stripe.clock.now()
    yield stripe.clock.advance
    stripe.clock.set(start)


def test_a_killed_full_sync_resumes_without_listing_a_finished_window_again(
    stripe, clean, tmp_path, monkeypatch, clock_moves
):
    point_at(monkeypatch, stripe)
    monkeypatch.setenv(CHECKPOINT, "0")  # each round ends after its first requests: never one round
    dlt_dir = tmp_path / "dlt"
    env = {**os.environ, "DLT_DATA_DIR": str(dlt_dir), "RUNTIME__DLTHUB_TELEMETRY": "false"}
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
    started = synced_at(database)
    assert started == [AS_OF]  # the first round's row: the Stripe clock at the listing's start
    clock_moves(timedelta(hours=1))
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
    assert tables(database) == clean
    # T of the sync in rounds stays its first round's clock, an hour before the resumed
    # run's: what changed after it reaches the warehouse with the next incremental run.
    assert synced_at(database) == started

    log.clear()
    [incremental] = run_extract(("stripe",), database, pipelines_dir=dlt_dir / "pipelines")
    assert (incremental.error, incremental.rounds) == (None, 1)
    assert log and windowed_requests(log) == []  # the events since the cursor only
    assert synced_at(database) == [AS_OF, AS_OF + timedelta(hours=1)]


def test_dagster_loads_a_checkpointed_full_sync_as_one_materialization_per_table(
    stripe, clean, tmp_path, monkeypatch
):
    point_at(monkeypatch, stripe)
    monkeypatch.setenv(CHECKPOINT, "0")  # each round ends after its first requests: never one round
    database = tmp_path / "dagster.duckdb"
    monkeypatch.setenv(DUCKDB_PATH_ENV, str(database))
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))

    result = materialize([billing_assets("stripe")], resources=build_resources())

    assert result.success
    events = result.get_asset_materialization_events()
    keys = [e.asset_key.to_user_string() for e in events]
    assert sorted(keys) == sorted(set(keys)) and "dlt_stripe_invoices" in keys
    metadata = {e.asset_key.to_user_string(): e.materialization.metadata for e in events}
    assert metadata["dlt_stripe_invoices"]["dlt_rounds"].value > 1
    assert metadata["dlt_stripe_invoices"]["rows_loaded"].value == len(clean["invoices"]) - 1
    assert tables(database) == clean
    assert synced_at(database) == [AS_OF]  # one row for the sync, not one per round
