"""`retention extract` loads the three billing systems and the exit sessions from the
sandbox into one DuckDB file, prints a per-table summary, and records each API's clock
as the sync time."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime

import duckdb
import pytest
from click.testing import CliRunner

from billing_clients.targets import TargetError, resolve_target
from retention_cli import main
from sandbox.exit_files import write_exit_session_files
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.scenario import load_scenario
from tests.ports import free_port

pytestmark = pytest.mark.integration
AS_OF = datetime(2026, 6, 30, tzinfo=UTC)


def test_extract_loads_everything_and_records_the_sync_time(tmp_path, serve_scenario, monkeypatch):
    path = tmp_path / "scenario.json"
    write_scenario(GenerateOptions(300, 4, AS_OF), path)
    scenario = load_scenario(path)
    sandbox = serve_scenario(scenario_doc(path))
    write_exit_session_files(scenario, tmp_path / "drop")
    for system, url in sandbox.urls.items():
        monkeypatch.setenv(f"SOURCES__{system.upper()}__BASE_URL", url)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    database = tmp_path / "warehouse.duckdb"

    result = CliRunner().invoke(
        main, ["extract", "--database", str(database), "--exit-sessions", str(tmp_path / "drop")]
    )

    assert result.exit_code == 0, result.output
    assert f"stripe: sandbox at {sandbox.urls['stripe']}" in result.output
    assert sandbox.api_key not in result.output
    with duckdb.connect(str(database), read_only=True) as con:
        for system in ("stripe", "recurly", "chargebee"):
            subscriptions = con.sql(f"select count(*) from raw_{system}.subscriptions").fetchall()[
                0
            ][0]
            assert subscriptions == len(scenario.for_system("subscriptions", system))
            synced = con.sql(f"select synced_at, clock from raw_{system}.syncs").fetchall()
            assert synced == [(AS_OF, "api")]
            assert f"raw_{system}" in result.output
        sessions = con.sql("select count(*) from raw_exit_sessions.exit_sessions").fetchall()[0][0]
        assert sessions == len(scenario.exit_sessions)


def scenario_doc(path) -> dict:
    import orjson

    return orjson.loads(path.read_bytes())


def test_live_reads_the_real_service_with_its_key_and_the_sandbox_is_said_per_system():
    env = {
        "RETENTION_ENVIRONMENT": "live",
        "SOURCES__STRIPE__API_KEY": "sk_live_abc",
        "SOURCES__RECURLY__ENVIRONMENT": "sandbox",
    }
    target = resolve_target("stripe", env)
    assert (target.base_url, target.is_sandbox) == (None, False)
    assert "sk_live_abc" not in repr(target) and "sk_live_abc" not in target.describe()
    sandbox = resolve_target("recurly", env)
    assert sandbox.is_sandbox and sandbox.base_url == "http://127.0.0.1:12112"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"RETENTION_ENVIRONMENT": "live"},
            "stripe is live but SOURCES__STRIPE__API_KEY is not set",
        ),
        (
            {"SOURCES__STRIPE__API_KEY": "sk_live_abc"},
            "SOURCES__STRIPE__API_KEY is set but stripe points at the local sandbox: set "
            "RETENTION_ENVIRONMENT=live",
        ),
        ({"RETENTION_ENVIRONMENT": "prod"}, "RETENTION_ENVIRONMENT=prod: choose sandbox or live"),
    ],
)
def test_no_silent_fallback_between_the_sandbox_and_the_real_service(env, message):
    with pytest.raises(TargetError, match=message):
        resolve_target("stripe", env)


def test_extract_stops_at_once_naming_the_variable_when_live_has_no_key(tmp_path, monkeypatch):
    monkeypatch.setenv("RETENTION_ENVIRONMENT", "live")
    monkeypatch.delenv("SOURCES__STRIPE__API_KEY", raising=False)
    result = CliRunner().invoke(
        main, ["extract", "--systems", "stripe", "--database", str(tmp_path / "w.duckdb")]
    )
    assert result.exit_code == 1
    assert "SOURCES__STRIPE__API_KEY is not set" in result.output
    assert not (tmp_path / "w.duckdb").exists()


def _counts(database) -> dict[str, int]:
    with duckdb.connect(str(database), read_only=True) as con:
        counts = {
            system: con.sql(f"select count(*) from raw_{system}.subscriptions").fetchall()[0][0]
            for system in ("stripe", "recurly", "chargebee")
        }
        counts["exit_sessions"] = con.sql(
            "select count(*) from raw_exit_sessions.exit_sessions"
        ).fetchall()[0][0]
    return counts


def test_the_warehouse_decides_what_a_run_loads(tmp_path, serve_scenario, monkeypatch):
    """dlt's cursors describe the warehouse they were loaded into: a deleted warehouse is
    loaded again in full (it used to get only what changed since the last run, and exit 0),
    and deleted dlt state is restored from the warehouse (no needless full listing)."""
    path = tmp_path / "scenario.json"
    write_scenario(GenerateOptions(200, 5, AS_OF), path)
    scenario = load_scenario(path)
    sandbox = serve_scenario(scenario_doc(path))
    write_exit_session_files(scenario, tmp_path / "drop")
    for system, url in sandbox.urls.items():
        monkeypatch.setenv(f"SOURCES__{system.upper()}__BASE_URL", url)
    state = tmp_path / "dlt"
    monkeypatch.setenv("DLT_DATA_DIR", str(state))
    database = tmp_path / "warehouse.duckdb"
    args = ["extract", "--database", str(database), "--exit-sessions", str(tmp_path / "drop")]
    expected = {s: len(scenario.for_system("subscriptions", s)) for s in sandbox.urls}
    expected["exit_sessions"] = len(scenario.exit_sessions)

    assert CliRunner().invoke(main, args).exit_code == 0
    assert _counts(database) == expected

    database.unlink()
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert _counts(database) == expected

    shutil.rmtree(state)
    stripe_log = sandbox.emulator("stripe").request_log
    before = len(stripe_log)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert _counts(database) == expected
    paths = {entry["path"] for entry in list(stripe_log)[before:]}
    assert "/v1/subscriptions" not in paths, "restored state should read events, not list all"
    assert "/v1/events" in paths


def test_an_unreachable_sandbox_fails_at_once_naming_the_fix(tmp_path, monkeypatch):
    """Nothing listens at the sandbox's address: the run fails in seconds (it used to retry
    for minutes and end in errors that hid the refused connection), says what to do, and
    does not claim to have loaded anything."""
    port = free_port()  # closed again: nothing answers there
    monkeypatch.setenv("SOURCES__STRIPE__BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("SOURCES__STRIPE__API_KEY", raising=False)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    database = tmp_path / "warehouse.duckdb"
    started = time.monotonic()

    result = CliRunner().invoke(
        main, ["extract", "--systems", "stripe", "--database", str(database)]
    )

    assert time.monotonic() - started < 30
    assert result.exit_code != 0
    assert f"nothing answers at 127.0.0.1:{port}" in result.output
    assert "retention sandbox serve" in result.output
    assert "SOURCES__STRIPE__API_KEY" in result.output
    assert "nothing loaded into" in result.output


def test_a_warehouse_locked_by_another_process_is_named_as_the_cause(
    tmp_path, serve_scenario, monkeypatch
):
    path = tmp_path / "scenario.json"
    write_scenario(GenerateOptions(20, 4, AS_OF), path)
    sandbox = serve_scenario(scenario_doc(path))
    monkeypatch.setenv("SOURCES__RECURLY__BASE_URL", sandbox.urls["recurly"])
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    database = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(database)!r}); "
            "print('held', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = CliRunner().invoke(
            main, ["extract", "--systems", "recurly", "--database", str(database)]
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code != 0
    assert f"the warehouse {database} is locked by another process" in result.output
    assert f"PID {holder.pid}" in result.output
    assert "credentials" not in result.output
