"""The UI as `make ui` starts it: `dagster dev` on a free loopback port (DAGSTER_HOME in
tmp) serves the asset graph over GraphQL, and a materialisation launched through
GraphQL runs in its own process against the sandbox and succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx
import orjson
import pytest

from sandbox.generate import GenerateOptions, write_scenario
from sandbox.scenario import load_scenario
from tests.ports import free_port

pytestmark = pytest.mark.integration
PROJECT = Path(__file__).resolve().parents[2]

LOCATION = """
query {
  workspaceOrError { ... on Workspace { locationEntries {
    name
    locationOrLoadError {
      __typename
      ... on PythonError { message }
    }
  } } }
}
"""
ASSET_NODES = """
query { assetNodes { assetKey { path } groupName dependencyKeys { path } } }
"""
LAUNCH = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  }
}
"""
RUN = """
query ($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }
"""


def _wait_for(what: str, probe: Callable[[], object], timeout: float, log: Path) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise AssertionError(f"{what} not within {timeout:.0f}s; dagster dev said:\n{tail}")


@pytest.fixture
def stripe_sandbox(serve_scenario, monkeypatch, tmp_path) -> Path:
    """A small scenario served before `dagster dev` starts, so its runs inherit the
    address through SOURCES__STRIPE__BASE_URL, as a deployment would set it."""
    path = tmp_path / "scenario.json"
    write_scenario(GenerateOptions(40, 5, datetime(2026, 6, 30, tzinfo=UTC)), path)
    sandbox = serve_scenario(orjson.loads(path.read_bytes()))
    monkeypatch.setenv("SOURCES__STRIPE__BASE_URL", sandbox.urls["stripe"])
    return path


@pytest.fixture
def dagster_dev(dagster_env, stripe_sandbox, tmp_path) -> Iterator[tuple[Callable, Path]]:
    """`dagster dev` as `make ui` runs it, in its own process group; stopped after."""
    port = free_port()
    log = tmp_path / "dagster_dev.log"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("dagster")),
                "dev",
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)

    def graphql(query: str, **variables) -> dict:
        response = client.post("/graphql", json={"query": query, "variables": variables})
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def answers() -> bool:
        try:
            return client.get("/server_info").status_code == 200
        except httpx.TransportError:
            return False

    try:
        _wait_for("the webserver", answers, 180, log)  # minutes on a loaded machine
        yield graphql, log
    finally:
        client.close()
        os.killpg(process.pid, signal.SIGINT)  # dagster dev stops its daemon and servers
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_ui_serves_the_graph_and_runs_a_materialisation(
    dagster_dev, dagster_env, stripe_sandbox
):
    graphql, log = dagster_dev

    def location():
        entries = graphql(LOCATION)["workspaceOrError"]["locationEntries"]
        state = entries[0]["locationOrLoadError"]
        if state and state["__typename"] == "PythonError":
            raise AssertionError(state["message"])
        return entries[0]["name"] if state else None

    name = _wait_for("the code location", location, 240, log)

    nodes = {tuple(n["assetKey"]["path"]): n for n in graphql(ASSET_NODES)["assetNodes"]}
    stg = nodes[("staging", "stg_stripe__subscriptions")]
    assert ["dlt_stripe_subscriptions"] in [d["path"] for d in stg["dependencyKeys"]]
    assert nodes[("dlt_stripe_customers",)]["groupName"] == "stripe"
    assert nodes[("marts", "fct_exit_episodes")]["groupName"] == "marts"
    assert ("validation_30d",) in nodes

    launched = graphql(
        LAUNCH,
        params={
            "selector": {
                "repositoryLocationName": name,
                "repositoryName": "__repository__",
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": ["dlt_stripe_customers"]}],
            },
            "mode": "default",
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def finished():
        status = graphql(RUN, runId=run_id)["runOrError"]["status"]
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    assert _wait_for("the run", finished, 300, log) == "SUCCESS"
    scenario = load_scenario(stripe_sandbox)
    stripe = [c for c in scenario.customers if c["billing_system"] == "stripe"]
    with duckdb.connect(str(dagster_env["RETENTION_DUCKDB_PATH"]), read_only=True) as con:
        loaded = {row[0] for row in con.execute("select id from raw_stripe.customers").fetchall()}
    # Stripe lists live customers; a deleted one arrives only by its (30-day) event.
    assert {c["customer_id"] for c in stripe if c["deleted_at"] is None} <= loaded
    assert loaded <= {c["customer_id"] for c in stripe}
