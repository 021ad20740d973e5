"""Nothing lost, nothing loaded twice: `retention extract` (the CLI, as a subprocess) through
each fault a user can cause, against a sandbox of a small scenario.

Every fault ends either with a warehouse whose raw tables hold the same rows as a clean
run's (`assert_same_as_clean`: every row of every raw table, as a multiset, without dlt's
load ids and the other per-run bookkeeping), or with rc != 0 and a message that says what
to do. The clean run is loaded once per module; most tests start from a copy of it (the
warehouse and dlt's state), as a user's second day would.

No dbt build here: no model reads a column the comparison leaves out, and of `syncs` the
models read only the latest sync, which is compared; equal raw tables build equal marts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import orjson
import pytest

from sandbox.app import Sandbox, start_sandbox
from sandbox.exit_files import write_exit_session_files
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.scenario import load_scenario, validate_scenario
from sandbox.server import FaultConfig

pytestmark = pytest.mark.integration
AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
CUSTOMERS = 150
RETENTION = Path(sys.executable).parent / "retention"
# Columns that say when or in which load a row arrived, not what it says: dlt's ids, the
# Chargebee page a row was read from (its dedup order) and the quarantine time.
BOOKKEEPING_PREFIXES = ("_dlt_", "_page_seq", "quarantined_at")
# Tables where every run appends one row by design (the API clock at the run's start),
# with the column that orders them: only the latest row is compared (what the warehouse
# says it is current as of), so a re-run is not "loaded twice".
RUN_LOGS = {"syncs": "synced_at"}
# A damaged line, so the quarantine table has a row that must not be lost or doubled.
DAMAGED_DROP = b'{"session_id": "s-broken", "started_at": "not a time"}\n{"session_id": \n'

RawRows = dict[str, tuple[tuple[str, ...], Counter]]


def raw_rows(database: Path) -> RawRows:
    """Every raw table's columns and rows (a multiset), without the bookkeeping columns;
    of a run log, its latest row."""
    tables: RawRows = {}
    with duckdb.connect(str(database), read_only=True) as con:
        listed = con.sql(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema like 'raw^_%' escape '^' "
            "and table_schema not like '%^_staging' escape '^' "
            "and table_name not like '^_dlt^_%' escape '^' order by all"
        ).fetchall()
        for schema, table in listed:
            columns = tuple(
                name
                for (name,) in con.sql(
                    "select column_name from information_schema.columns where "
                    f"table_schema = '{schema}' and table_name = '{table}' order by column_name"
                ).fetchall()
                if not name.startswith(BOOKKEEPING_PREFIXES)
            )
            quoted = ", ".join(f'"{c}"' for c in columns)
            latest = f" order by {RUN_LOGS[table]} desc limit 1" if table in RUN_LOGS else ""
            rows = con.sql(f"select {quoted} from {schema}.{table}{latest}").fetchall()
            tables[f"{schema}.{table}"] = (columns, Counter(map(repr, rows)))
    return tables


def assert_same_as_clean(database: Path, clean: RawRows) -> None:
    """The warehouse holds what a clean run loaded: the same tables, columns and rows, each
    as often as there (a row missing is data lost, a row more is data loaded twice)."""
    got = raw_rows(database)
    assert sorted(got) == sorted(clean), "the raw tables differ from a clean run's"
    for table, (columns, rows) in clean.items():
        got_columns, got_rows = got[table]
        assert got_columns == columns, f"{table}: columns differ from a clean run's"
        lost, doubled = rows - got_rows, got_rows - rows
        assert not lost and not doubled, (
            f"{table}: {sum(lost.values())} rows lost, {sum(doubled.values())} rows more "
            f"than a clean run (e.g. lost {list(lost)[:1]}, more {list(doubled)[:1]})"
        )


@dataclass
class Workspace:
    """One user's setup: a warehouse, dlt's state and a drop folder, and the sandbox the
    sources point at (through the environment, as a user's `.env` would)."""

    root: Path
    sandbox: Sandbox
    drop: Path | None
    disk: Path | None = None  # where the warehouse and dlt's state are, if not in root

    @property
    def database(self) -> Path:
        return (self.disk or self.root) / "warehouse.duckdb"

    @property
    def state(self) -> Path:
        return (self.disk or self.root) / "dlt"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
        env |= {f"SOURCES__{s.upper()}__BASE_URL": url for s, url in self.sandbox.urls.items()}
        env |= {"DLT_DATA_DIR": str(self.state), "RUNTIME__DLTHUB_TELEMETRY": "false"}
        if self.drop is not None:
            env["SOURCES__EXIT_SESSIONS__FOLDER"] = str(self.drop)
        return env

    def start(self, log: str = "extract", *options: str) -> subprocess.Popen:
        """`retention extract` into this warehouse (unless `options` name another),
        started in its own working directory (so no `.env` of the project's is read), its
        output going to `<log>.log`."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / f"{log}.log").open("w") as output:
            return subprocess.Popen(
                [str(RETENTION), "extract", "--database", str(self.database), *options],
                cwd=self.root,
                env=self.env(),
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def finish(self, process: subprocess.Popen, log: str = "extract") -> tuple[int, str]:
        """The return code and output of a started run, once it has ended."""
        return process.wait(timeout=300), (self.root / f"{log}.log").read_text()

    def extract(self, *options: str) -> tuple[int, str]:
        return self.finish(self.start("extract", *options))


@dataclass
class Clean:
    """A clean run: the workspace it loaded and what its raw tables hold."""

    workspace: Workspace
    rows: RawRows
    scenario_doc: dict

    def copy_to(self, root: Path) -> Workspace:
        """A user who ran the clean run once: a copy of its warehouse, state and drop."""
        source = self.workspace
        root.mkdir(parents=True)
        shutil.copy2(source.database, root / "warehouse.duckdb")
        shutil.copytree(source.state, root / "dlt")
        shutil.copytree(source.drop, root / "drop")
        return Workspace(root, source.sandbox, root / "drop")


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Iterator[Clean]:
    root = tmp_path_factory.mktemp("data_loss")
    path = root / "scenario.json"
    write_scenario(GenerateOptions(CUSTOMERS, 7, AS_OF), path)
    doc = orjson.loads(path.read_bytes())
    sandbox = start_sandbox(validate_scenario(doc), frozen=True)
    try:
        workspace = Workspace(root / "clean", sandbox, root / "clean" / "drop")
        write_exit_session_files(load_scenario(path), workspace.drop)
        (workspace.drop / "03_damaged.jsonl").write_bytes(DAMAGED_DROP)
        rc, output = workspace.extract()
        assert rc == 0, output
        rows = raw_rows(workspace.database)
        assert rows["raw_exit_sessions.exit_sessions_quarantine"][1], "no quarantine row"
        yield Clean(workspace, rows, doc)
    finally:
        sandbox.stop()


def test_a_deleted_warehouse_is_loaded_again_in_full(clean, tmp_path):
    workspace = clean.copy_to(tmp_path / "user")
    workspace.database.unlink()

    rc, output = workspace.extract()

    assert rc == 0, output
    assert_same_as_clean(workspace.database, clean.rows)


def test_deleted_dlt_state_is_restored_from_the_warehouse(clean, tmp_path):
    workspace = clean.copy_to(tmp_path / "user")
    shutil.rmtree(workspace.state)

    rc, output = workspace.extract()

    assert rc == 0, output
    assert_same_as_clean(workspace.database, clean.rows)


def test_a_moved_drop_folder_loads_nothing_twice_and_the_old_path_fails_loudly(clean, tmp_path):
    """The folder moved (new modification times: copied, not renamed) and the setting
    follows it: its files are known by name and content, so nothing is read twice. A
    setting still naming the old, gone folder fails, saying which variable to set."""
    workspace = clean.copy_to(tmp_path / "user")
    moved = Workspace(workspace.root, workspace.sandbox, tmp_path / "moved")
    shutil.copytree(workspace.drop, moved.drop, copy_function=shutil.copy)
    shutil.rmtree(workspace.drop)

    rc, output = moved.extract()

    assert rc == 0, output
    assert_same_as_clean(moved.database, clean.rows)

    rc, output = workspace.extract()

    assert rc != 0
    assert f"exit-session folder {workspace.drop} does not exist" in output
    assert "SOURCES__EXIT_SESSIONS__FOLDER" in output
    assert_same_as_clean(workspace.database, clean.rows)


def test_switching_warehouses_on_one_dlt_state_loses_nothing(clean, tmp_path):
    """`--database` pointed at another file and back, on one dlt state, while the billing
    data changes: back on the first file, the run reads every change made since that
    file's own last run, and ends equal to the other file (loaded in full, then brought
    up to date). (The state used to follow the file loaded last: the run read only what
    changed since the other file's cursor, and exited 0.)"""
    sandbox = start_sandbox(
        validate_scenario(clean.scenario_doc), frozen=True, systems=("chargebee",)
    )
    try:
        user = Workspace(tmp_path / "user", sandbox, drop=None)
        other = tmp_path / "other.duckdb"
        assert user.extract("--systems", "chargebee")[0] == 0
        for days in (10, 20):  # renewals and cancels, each seen by the other file only
            sandbox.clock.set(AS_OF + timedelta(days=days))
            assert user.extract("--systems", "chargebee", "--database", str(other))[0] == 0

        rc, output = user.extract("--systems", "chargebee")

        assert rc == 0, output
        assert_same_as_clean(user.database, raw_rows(other))
    finally:
        sandbox.stop()


def _load_in_progress(state: Path) -> bool:
    """A dlt load package of any pipeline has jobs started and not finished."""
    return any(state.glob("pipelines/*/*/load/normalized/*/started_jobs/*"))


def test_an_extract_killed_while_loading_is_completed_by_the_next_run(clean, tmp_path):
    """SIGKILL while a load package is being loaded, with Stripe's subscriptions still
    being read (its sandbox stalls that request), then a plain re-run."""
    stalled = start_sandbox(
        validate_scenario(clean.scenario_doc),
        frozen=True,
        faults={
            "stripe": FaultConfig(
                script=["slow"], slow_seconds=120, only_paths=["/v1/subscriptions"]
            )
        },
    )
    try:
        workspace = Workspace(tmp_path / "user", stalled, tmp_path / "user" / "drop")
        shutil.copytree(clean.workspace.drop, workspace.drop)
        process = workspace.start("killed")
        deadline = time.monotonic() + 120
        while not _load_in_progress(workspace.state):
            assert process.poll() is None, workspace.finish(process, "killed")
            assert time.monotonic() < deadline, "no load started"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not any(workspace.state.glob("pipelines/*/retention_stripe/load/loaded/*"))

        rc, output = workspace.extract()

        assert rc == 0, output
        assert_same_as_clean(workspace.database, clean.rows)
    finally:
        stalled.stop()


def test_two_extracts_at_once_one_loads_and_the_other_says_so(clean, tmp_path):
    """Two runs on one warehouse and one dlt state, started together: the warehouse ends
    as a clean run's, and a run that did not load says why and what to do."""
    workspace = Workspace(tmp_path / "user", clean.workspace.sandbox, tmp_path / "user" / "drop")
    shutil.copytree(clean.workspace.drop, workspace.drop)

    first, second = workspace.start("first"), workspace.start("second")
    results = [workspace.finish(first, "first"), workspace.finish(second, "second")]

    assert any(rc == 0 for rc, _ in results), results
    for rc, output in results:
        if rc != 0:
            assert "another load (PID" in output, output
            assert "wait for it to finish, or stop it, and run again" in output, output
    assert_same_as_clean(workspace.database, clean.rows)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 5 MB tmpfs (a disk about to be full), unmounted after the test. Skips, saying why,
    where this machine does not let the test mount one."""
    mountpoint = tmp_path / "small_disk"
    mountpoint.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mountpoint)],
            capture_output=True,
            text=True,
        )
        refused = mounted.returncode != 0 and (mounted.stderr.strip() or str(mounted))
    except OSError as exc:  # no `mount` program
        refused = str(exc)
    if refused:
        pytest.skip(f"cannot mount a small tmpfs here: {refused}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=True)


def test_a_full_disk_fails_naming_the_disk_and_a_rerun_with_space_loads_everything(
    clean, tmp_path, small_disk
):
    workspace = Workspace(tmp_path / "user", clean.workspace.sandbox, tmp_path / "drop", small_disk)
    shutil.copytree(clean.workspace.drop, workspace.drop)

    rc, output = workspace.extract()

    assert rc != 0
    assert "no space left on the disk" in output, output
    assert "free space there" in output
    assert "Traceback" not in output

    subprocess.run(["mount", "-o", "remount,size=200m", str(small_disk)], check=True)
    rc, output = workspace.extract()

    assert rc == 0, output
    assert_same_as_clean(workspace.database, clean.rows)


def test_a_dagster_load_while_an_extract_runs_fails_naming_it(dagster_env, monkeypatch):
    """Dagster's loads and `retention extract` share dlt's working folders: a Dagster load
    while an extract holds them fails at once, naming the holder, instead of taking its
    load packages."""
    from dagster import AssetKey, DagsterInstance

    from orchestration.definitions import build_definitions
    from orchestration.extract import exclusive, working_dir

    dagster_env["SOURCES__EXIT_SESSIONS__FOLDER"].mkdir()
    job = build_definitions().resolve_implicit_global_asset_job_def()
    loads = [
        AssetKey(f"dlt_exit_sessions_{t}") for t in ("exit_sessions", "exit_sessions_quarantine")
    ]
    with (
        exclusive(["exit_sessions"], working_dir(dagster_env["RETENTION_DUCKDB_PATH"])),
        DagsterInstance.get() as instance,
    ):
        result = job.execute_in_process(
            instance=instance, asset_selection=loads, raise_on_error=False
        )

    failures = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failures] == ["exit_sessions_dlt"]
    message = failures[0].step_failure_data.error.message
    assert f"another load (PID {os.getpid()}" in message
    assert "wait for it to finish, or stop it, and run again" in message
