"""The production deployment (deploy/): the instance on Postgres, `dagster-webserver` and
`dagster-daemon` as two long-running processes started by the commands deploy/README.md
gives, the drop-folder sensor turned on with `dagster sensor start`, and nothing else
done by hand.

One scenario, in order, on a sandbox and a warehouse whose billing tables are loaded:
1. an exit-session file dropped is loaded, modelled and written back (live, to the
   sandbox) by a run the sensor starts; the daemon is killed (-9) while that run is in
   progress: the run, whose worker belongs to the code server the daemon started, ends
   as it would have;
2. the daemon restarted, a second file starts a second run (the next tick proceeds),
   whose worker is killed (-9) while it holds the `duckdb` pool slot: the run is marked
   failed and run monitoring frees the slot;
3. a third file's run gets the slot (the pool is not stuck), and each file started one
   run, none twice; GraphQL shows the runs and Postgres holds them.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx
import orjson
import pytest
from dotenv import dotenv_values

from orchestration.extract import run_extract
from sandbox.exit_files import session_rows
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.scenario import load_scenario
from tests.conftest import PG, scratch_database
from tests.ports import free_port
from tests.writeback_pipeline import live_catalog

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
JOB = "exit_sessions_load"
SENSOR = "exit_session_files_sensor"
DONE = ("SUCCESS", "FAILURE", "CANCELED")
# The commands of deploy/README.md, the systemd units and `make webserver` / `make daemon`
# (the webserver's port added by the test).
WEBSERVER = ["dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1"]
DAEMON = ["dagster-daemon", "run", "-w", "workspace.yaml"]
SENSOR_START = ["dagster", "sensor", "start", SENSOR, "-w", "workspace.yaml"]
# What deploy/dagster.yaml reads (deploy/dagster.env.example).
DAGSTER_PG = tuple(f"DAGSTER_PG_{name}" for name in ("HOST", "PORT", "USER", "PASSWORD", "DB"))

RUNS = """
query ($job: String!) {
  runsOrError(filter: {pipelineName: $job}) { ... on Runs { results {
    runId status tags { key value }
  } } }
}
"""
RUN = """
query ($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }
"""
LOGS = """
query ($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection {
  events { ... on MessageEvent { message } }
} } }
"""
SLOTS = """
query { instance { concurrencyLimit(concurrencyKey: "duckdb") {
  slotCount claimedSlots { runId stepKey }
} } }
"""
DAEMONS = """
query { instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }
"""


def wait_for(what: str, probe: Callable[[], object], timeout: float, *logs: Path) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := probe():
            return value
        time.sleep(1)
    tails = "\n".join(f"--- {log.name}:\n{log.read_text(errors='replace')[-3000:]}" for log in logs)
    raise AssertionError(f"{what} not within {timeout:.0f}s\n{tails}")


@dataclass
class Service:
    """A long-running process in a session of its own, so that its code servers and run
    workers are found and stopped with it."""

    process: subprocess.Popen

    @classmethod
    def start(cls, command: list[str], env: dict[str, str], log: Path) -> Service:
        with log.open("ab") as out:
            process = subprocess.Popen(
                command,
                cwd=PROJECT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(process)

    def kill(self) -> None:
        """`kill -9` of this process alone: its children live on, as after a crash."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        """The whole session: children orphaned by `kill` included."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            time.sleep(3)


@pytest.fixture
def dagster_pg() -> Iterator[dict[str, str]]:
    """A database of this test's own for Dagster's instance, as the DAGSTER_PG_*
    variables deploy/dagster.yaml reads; dropped after."""
    with scratch_database("retention_deploy") as url:
        database = url.rsplit("/", 1)[1]
        yield dict(zip(DAGSTER_PG, ("127.0.0.1", "5432", "postgres", "", database), strict=True))


@pytest.fixture
def drops(tmp_path) -> list[list[Path]]:
    """A scenario's exit sessions as three drops: the landings and a third of the actions,
    then each further third; written aside, moved into the drop folder one by one."""
    path = tmp_path / "scenario.json"
    write_scenario(GenerateOptions(200, 5, datetime(2026, 6, 30, tzinfo=UTC)), path)
    landing, actions = session_rows(load_scenario(path))
    aside = tmp_path / "aside"
    aside.mkdir()
    third = -(-actions.height // 3)
    files = [aside / "01_landings.jsonl"]
    landing.write_ndjson(files[0])
    for part in range(3):
        files.append(aside / f"{part + 2:02d}_actions.jsonl")
        actions.slice(part * third, third).write_ndjson(files[-1])
    return [files[:2], files[2:3], files[3:]]


@pytest.fixture
def deployment(dagster_pg, serve_scenario, drops, tmp_path, dbt_manifest) -> dict[str, str]:
    """The environment an operator sets (deploy/README.md) for this test:
    DAGSTER_HOME with deploy/dagster.yaml, the warehouse with the billing tables loaded,
    the sandbox's addresses and a live write-back catalog."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(PROJECT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    scenario = orjson.loads((tmp_path / "scenario.json").read_bytes())
    sandbox = serve_scenario(scenario)
    urls = {f"SOURCES__{s.upper()}__BASE_URL": url for s, url in sandbox.urls.items()}
    database = tmp_path / "warehouse.duckdb"
    loaded = run_extract(database=database, pipelines_dir=tmp_path / "dlt_first", settings=urls)
    assert [summary.error for summary in loaded] == [None] * 3
    (tmp_path / "drop").mkdir()
    return {
        **os.environ,
        **dagster_pg,
        **urls,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DAGSTER_HOME": str(home),
        "RETENTION_DUCKDB_PATH": str(database),
        "SOURCES__EXIT_SESSIONS__FOLDER": str(tmp_path / "drop"),
        "DLT_DATA_DIR": str(tmp_path / "dlt"),
        "RETENTION_WRITEBACKS": str(live_catalog(tmp_path / "writebacks.yml")),
    }


class GraphQL:
    """The webserver's GraphQL API, as the UI reads it."""

    def __init__(self, port: int) -> None:
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)

    def __call__(self, query: str, **variables) -> dict:
        response = self.client.post("/graphql", json={"query": query, "variables": variables})
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def answers(self) -> bool:
        try:
            return self.client.get("/server_info").status_code == 200
        except httpx.TransportError:
            return False

    def runs(self) -> list[dict]:
        return self(RUNS, job=JOB)["runsOrError"]["results"]

    def status(self, run_id: str) -> str:
        return self(RUN, runId=run_id)["runOrError"]["status"]

    def messages(self, run_id: str) -> list[str]:
        events = self(LOGS, runId=run_id)["logsForRun"]["events"]
        return [event["message"] for event in events if "message" in event]

    def sensor_daemon_healthy(self) -> bool:
        statuses = self(DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return any(s["daemonType"] == "SENSOR" and s["healthy"] for s in statuses)

    def slot_holders(self) -> set[str]:
        limit = self(SLOTS)["instance"]["concurrencyLimit"]
        return {slot["runId"] for slot in limit["claimedSlots"]}


class Operator:
    """The deployment's two services and what the test does to them: start them with the
    documented commands, drop files, kill processes; and what it watches, over GraphQL."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env = env
        self.logs = folder / "webserver.log", folder / "daemon.log"
        self.graphql = GraphQL(free_port())
        self.services: list[Service] = []

    def start(self) -> None:
        port = str(self.graphql.client.base_url.port)
        self.services.append(Service.start([*WEBSERVER, "-p", port], self.env, self.logs[0]))
        self.start_daemon()
        self.wait("the webserver", self.graphql.answers, 300)
        self.wait("the daemon", self.graphql.sensor_daemon_healthy, 300)

    def start_daemon(self) -> None:
        self.daemon = Service.start(DAEMON, self.env, self.logs[1])
        self.services.append(self.daemon)

    def stop(self) -> None:
        for service in self.services:
            service.stop()

    def wait(self, what: str, probe: Callable[[], object], timeout: float) -> object:
        return wait_for(what, probe, timeout, *self.logs)

    def drop(self, files: list[Path]) -> dict:
        """Files moved into the drop folder; the run the sensor starts for them."""
        seen = {run["runId"] for run in self.graphql.runs()}
        for path in files:
            shutil.move(path, Path(self.env["SOURCES__EXIT_SESSIONS__FOLDER"]) / path.name)
        runs = self.graphql.runs
        return self.wait(
            "the sensor's run",
            lambda: next((r for r in runs() if r["runId"] not in seen), None),
            400,
        )

    def finished(self, run: dict, timeout: float = 600) -> str:
        def done() -> str | None:
            status = self.graphql.status(run["runId"])
            return status if status in DONE else None

        return self.wait(f"run {run['runId']} to finish", done, timeout)

    def holds_slot(self, run: dict) -> None:
        self.wait(
            "the run's `duckdb` slot", lambda: run["runId"] in self.graphql.slot_holders(), 300
        )

    def kill_worker(self, run: dict) -> None:
        """`kill -9` of the run's worker, by the pid of its "Started process" event."""

        def pid() -> int | None:
            found = re.findall(
                r"Started process for run \(pid: (\d+)\)",
                "\n".join(self.graphql.messages(run["runId"])),
            )
            return int(found[0]) if found else None

        os.kill(self.wait("the run worker's pid", pid, 60), signal.SIGKILL)


def _ledger(database: str) -> dict[str, int]:
    with duckdb.connect(database, read_only=True) as con:
        return dict(
            con.execute("select status, count(*) from writebacks.actions group by all").fetchall()
        )


def _stored_runs(database: str) -> dict[str, str]:
    """The job's runs as Dagster's run storage in Postgres holds them."""
    import psycopg2

    with psycopg2.connect(f"{PG.rsplit('/', 1)[0]}/{database}") as con, con.cursor() as rows:
        rows.execute("select run_id, status from runs where pipeline_name = %s", (JOB,))
        return dict(rows.fetchall())


@pytest.fixture
def operator(deployment, tmp_path) -> Iterator[Operator]:
    """The webserver and the daemon running, the sensor started as an operator would."""
    operator = Operator(deployment, tmp_path)
    try:
        operator.start()
        started = subprocess.run(
            SENSOR_START, cwd=PROJECT, env=deployment, capture_output=True, text=True, timeout=300
        )
        assert started.returncode == 0, started.stdout + started.stderr
        yield operator
    finally:
        operator.stop()


def _exec_start(unit: str) -> list[str]:
    """A systemd unit's command, its program by name."""
    for line in (PROJECT / "deploy" / "systemd" / unit).read_text().splitlines():
        if line.startswith("ExecStart="):
            program, *arguments = shlex.split(line.removeprefix("ExecStart="))
            return [Path(program).name, *arguments]
    raise AssertionError(f"{unit} has no ExecStart")


def test_the_units_run_the_commands_tested_here_with_its_variables():
    assert _exec_start("retention-webserver.service")[: len(WEBSERVER)] == WEBSERVER
    assert _exec_start("retention-daemon.service") == DAEMON
    example = dotenv_values(PROJECT / "deploy" / "dagster.env.example")
    assert example.keys() == {"DAGSTER_HOME", *DAGSTER_PG}


def test_drops_run_unattended_through_kill_9_of_the_daemon_and_of_a_run(operator, drops):
    graphql, database = operator.graphql, operator.env["RETENTION_DUCKDB_PATH"]
    # 1. A drop runs unattended; the daemon dies (-9) while the run is in progress.
    first = operator.drop(drops[0])
    operator.wait("the run to start", lambda: graphql.status(first["runId"]) == "STARTED", 300)
    operator.daemon.kill()
    assert graphql.status(first["runId"]) == "STARTED"  # killed mid-run
    assert operator.finished(first) == "SUCCESS"
    written = _ledger(database)
    assert written.get("applied", 0) > 0, written  # written back to the sandbox

    # 2. The daemon restarted, the next drop starts a run (the next tick proceeds); its
    #    worker dies (-9) holding the `duckdb` slot: the run fails, the slot is freed.
    operator.start_daemon()
    second = operator.drop(drops[1])
    operator.holds_slot(second)
    operator.kill_worker(second)
    assert operator.finished(second, 120) == "FAILURE"
    assert any("terminated by signal 9 (SIGKILL)" in m for m in graphql.messages(second["runId"]))
    operator.wait("the slot freed", lambda: second["runId"] not in graphql.slot_holders(), 120)

    # 3. The next drop's run gets the slot: the pool is not stuck. (It is stopped with the
    #    services: running it to the end again would prove nothing new.)
    third = operator.drop(drops[2])
    operator.holds_slot(third)

    runs = graphql.runs()
    keys = {
        run["runId"]: {t["key"]: t["value"] for t in run["tags"]}.get("dagster/run_key")
        for run in runs
    }
    assert (
        len(keys) == 3 and None not in keys.values() and len(set(keys.values())) == 3
    )  # none twice
    stored = _stored_runs(operator.env["DAGSTER_PG_DB"])
    assert stored.keys() == keys.keys()
    assert (stored[first["runId"]], stored[second["runId"]]) == ("SUCCESS", "FAILURE")
