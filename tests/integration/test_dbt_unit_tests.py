"""The dbt unit tests (beside each model, in its YAML file) pin validation.md rule by rule with
hand-computed rows. dbt needs the upstream relations in the warehouse to type the fixtures,
so a small generated scenario is served by the sandbox and extracted once; each case then
builds the seeds and models on a copy and runs `dbt test --select test_type:unit`.

The rules say times are UTC and "30 days" is exactly 30 × 24 hours, so the unit tests also
run with the database session in a daylight-saving time zone (DuckDB takes its session time
zone from TZ when the database opens): a calendar-day window would be an hour short across
the March change and the episode and outcome tests would fail."""

from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import yaml

from orchestration.extract import run_extract
from sandbox.app import start_sandbox
from sandbox.exit_files import write_exit_session_files
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.scenario import load_scenario, validate_scenario
from tests.conftest import DBT_PROJECT

pytestmark = pytest.mark.integration
AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
WRITTEN = 16  # unit tests written with this file; more may be added


def unit_tests_defined() -> int:
    count = 0
    for path in (DBT_PROJECT / "models").rglob("*.yml"):
        count += len((yaml.safe_load(path.read_text()) or {}).get("unit_tests") or [])
    return count


@pytest.fixture(scope="module")
def raw_warehouse(tmp_path_factory) -> Path:
    """A warehouse holding the raw tables of a small scenario (no dbt models yet)."""
    folder = tmp_path_factory.mktemp("unit_tests_raw")
    path = folder / "scenario.json"
    write_scenario(GenerateOptions(40, 7, AS_OF), path)
    sandbox = start_sandbox(validate_scenario(orjson.loads(path.read_bytes())), frozen=True)
    try:
        write_exit_session_files(load_scenario(path), folder / "drop")
        with pytest.MonkeyPatch.context() as mp:
            for system, url in sandbox.urls.items():
                mp.setenv(f"SOURCES__{system.upper()}__BASE_URL", url)
            results = run_extract(
                database=folder / "warehouse.duckdb",
                exit_sessions_folder=folder / "drop",
                pipelines_dir=folder / "dlt",
            )
        assert [r.error for r in results] == [None] * 4
    finally:
        sandbox.stop()
    return folder / "warehouse.duckdb"


@contextmanager
def time_zone(name: str):
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
def test_every_dbt_unit_test_passes(raw_warehouse, dbt, tmp_path, zone):
    database = tmp_path / "warehouse.duckdb"
    shutil.copy(raw_warehouse, database)
    with time_zone(zone):
        dbt(database, "build", "--resource-type", "seed", "--resource-type", "model")
        result = dbt(database, "test", "--select", "test_type:unit", expect_success=False)
    assert result.exception is None, result.exception
    unit = [r for r in result.result.results if r.node.resource_type == "unit_test"]
    failed = {r.node.name: r.message for r in unit if r.status != "pass"}
    assert not failed, f"unit tests failed with TZ={zone}: " + "\n".join(
        f"{name}: {message}" for name, message in failed.items()
    )
    assert result.success
    assert len(unit) >= max(WRITTEN, unit_tests_defined()), sorted(r.node.name for r in unit)
