"""The dbt manifest is prepared when the definitions load, never on import; and the dbt
step names its warehouse file on dbt's command line, leaving os.environ alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pytest

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]
# Everything a code location imports, without tool state, the venv or the test suite.
TOOL_STATE = shutil.ignore_patterns(
    ".*", "target", "logs", "dbt_packages", "__pycache__", "*.duckdb*"
)
NOT_COPIED_AT_ROOT = {"tests", "bench", "docs"}  # not dbt_project/tests: dbt parses it


def not_copied(folder: str, names: list[str]) -> set[str]:
    """What the clone leaves out: tool state anywhere, the suite and benches at the root."""
    ignored = set(TOOL_STATE(folder, names))
    if Path(folder) == PROJECT:
        ignored |= NOT_COPIED_AT_ROOT & set(names)
    return ignored


# Imports the modules in a fresh interpreter and prints every command it started.
IMPORT_SPYING = """
import json, subprocess
started = []
popen = subprocess.Popen.__init__
def spy(self, args, *rest, **options):
    started.append(args if isinstance(args, str) else [str(a) for a in args])
    popen(self, args, *rest, **options)
subprocess.Popen.__init__ = spy
import orchestration.dbt_project, orchestration.models, orchestration.jobs
import orchestration.definitions
print(json.dumps(started))
"""


@pytest.fixture
def clone(tmp_path) -> Path:
    """A copy of the project as a fresh clone has it (no dbt_project/target/), so the
    shared manifest of the working tree is never made stale or parsed by this test."""
    root = tmp_path / "clone"
    shutil.copytree(PROJECT, root, ignore=not_copied)
    return root


def _run(clone: Path, *args: str) -> str:
    """A command in the clone, importing the clone's packages (not the working tree's)."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}  # a temporary one
    env |= {"PYTHONPATH": str(clone), "DLT_DATA_DIR": str(clone / ".dlt_data")}
    done = subprocess.run(args, cwd=clone, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _dbt_commands_on_import(clone: Path) -> list:
    started = json.loads(_run(clone, sys.executable, "-c", IMPORT_SPYING).splitlines()[-1])
    return [args for args in started if "dbt" in str(args)]


def test_importing_starts_no_dbt_and_loading_the_definitions_parses(clone):
    manifest = clone / "dbt_project" / "target" / "manifest.json"
    assert _dbt_commands_on_import(clone) == []
    assert not manifest.exists()  # a fresh clone: imported, still not parsed

    dagster = str(Path(sys.executable).with_name("dagster"))
    _run(clone, dagster, "definitions", "validate", "-w", "workspace.yaml")
    assert manifest.exists()  # Dagster's loader called the lazy definitions: parsed

    model = clone / "dbt_project" / "models" / "marts" / "fct_exit_episodes.sql"
    parsed = manifest.stat().st_mtime_ns
    edited = parsed + 1_000  # a model edited a microsecond after the parse: stale
    os.utime(model, ns=(edited, edited))
    assert _dbt_commands_on_import(clone) == []
    assert manifest.stat().st_mtime_ns == parsed  # stale, and left so by the imports

    load = "from orchestration.definitions import defs; defs()"
    _run(clone, sys.executable, "-c", load)
    # Loading the definitions parsed it again (written after the edit, not merely again:
    # the former check, the edit 10 s ahead, held only while a load took over 10 s).
    assert manifest.stat().st_mtime_ns > edited


def test_the_dbt_step_builds_in_the_resources_file_and_leaves_os_environ(
    tmp_path, serve_scenario, monkeypatch, dbt_manifest
):
    """RETENTION_DUCKDB_PATH names a decoy: the models land in the warehouse resource's
    file all the same, the decoy is never made, and the environment is as it was."""
    from dagster import AssetKey, materialize

    from orchestration.extract import run_extract
    from orchestration.models import dbt_models
    from orchestration.resources import Warehouse, build_resources
    from sandbox.exit_files import write_exit_session_files
    from sandbox.generate import GenerateOptions, write_scenario
    from sandbox.scenario import load_scenario
    from tests.writeback_pipeline import point_at

    path = tmp_path / "scenario.json"
    write_scenario(GenerateOptions(60, 3, datetime(2026, 6, 30, tzinfo=UTC)), path)
    sandbox = serve_scenario(orjson.loads(path.read_bytes()))
    write_exit_session_files(load_scenario(path), tmp_path / "drop")
    point_at(monkeypatch, sandbox)
    database, decoy = tmp_path / "warehouse.duckdb", tmp_path / "decoy.duckdb"
    loaded = run_extract(
        database=database, exit_sessions_folder=tmp_path / "drop", pipelines_dir=tmp_path / "dlt"
    )
    assert [r.error for r in loaded] == [None] * 4
    monkeypatch.setenv("RETENTION_DUCKDB_PATH", str(decoy))
    monkeypatch.delenv("RETENTION_WAREHOUSE", raising=False)
    resources = {**build_resources(), "warehouse": Warehouse(database=str(database))}

    before = dict(os.environ)
    result = materialize([dbt_models()], resources=resources, raise_on_error=False)
    assert dict(os.environ) == before
    assert result.success
    episodes = AssetKey(["marts", "fct_exit_episodes"])
    assert episodes in {e.asset_key for e in result.all_events if e.is_step_materialization}
    with duckdb.connect(str(database)) as con:
        assert con.execute("select count(*) from marts.fct_exit_episodes").fetchone()[0] > 0
    assert not decoy.exists()
