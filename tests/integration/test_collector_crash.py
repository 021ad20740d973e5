"""`retention collector serve` killed with SIGKILL under load from several threads, then
restarted: every acknowledged session is in the published drop files exactly once, and
the real exit-sessions extraction (dlt into DuckDB) loads each exactly once.

The helpers that run the collector as a process are also used by bench/bench_collector.py.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import suppress
from pathlib import Path

import dlt
import duckdb
import httpx
import pytest

from billing_clients.systems import BILLING_SYSTEMS
from dlt_sources.exit_sessions import exit_sessions_source
from tests.ports import free_port
from webhooks.signing import sign

pytestmark = pytest.mark.integration

PROJECT_DIR = Path(__file__).resolve().parents[2]
SECRET = "collector-process-test-secret-7f3a"
APP = "load"


def collector_env(folder: Path, more_config: str = "") -> dict[str, str]:
    """A collector's configuration and state, all under `folder`: no webhook endpoints,
    write-backs off (so no fast path reads the project's marts); `more_config` is appended
    to its collector.yml."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "collector.yml"
    config.write_text(f"apps:\n  {APP}:\n    secret_env: COLLECTOR_TEST_SECRET\n{more_config}")
    catalog = folder / "writebacks.yml"
    catalog.write_text(
        "billing_systems:\n"
        + "".join(f"  {system}: {{mode: 'off'}}\n" for system in BILLING_SYSTEMS)
    )
    return {
        **os.environ,
        "COLLECTOR_TEST_SECRET": SECRET,
        "RETENTION_COLLECTOR_CONFIG": str(config),
        "RETENTION_COLLECTOR_DB": str(folder / "state" / "collector.sqlite"),
        "SOURCES__EXIT_SESSIONS__FOLDER": str(folder / "drop"),
        "RETENTION_WEBHOOKS": str(folder / "no-webhooks.yml"),
        "RETENTION_WRITEBACKS": str(catalog),
    }


def start_collector(
    folder: Path, port: int, log_name: str, more_config: str = ""
) -> subprocess.Popen:
    """The collector as its own process (`python -m retention_cli collector serve`), its
    output in `folder/log_name`; returns once /healthz answers."""
    env = collector_env(folder, more_config)
    log = (folder / log_name).open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "retention_cli", "collector", "serve", "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the collector exited: {(folder / log_name).read_text()}")
        with suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("the collector did not answer /healthz within 60 s")


def stop_collector(process: subprocess.Popen) -> None:
    """SIGTERM: uvicorn's graceful shutdown runs the lifespan's end (a last publish)."""
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


def signed(session_id: str, billing_id: str, **fields) -> dict:
    timestamp = str(int(time.time()))
    parts = [APP, "stripe", billing_id, timestamp]
    return {
        "app_id": APP,
        "billing_system": "stripe",
        "billing_id": billing_id,
        "timestamp": timestamp,
        "signature": sign(SECRET.encode(), parts),
        "session_id": session_id,
        **fields,
    }


class Load:
    """Threads posting landings (every third one followed by a cancel) until stopped or
    the collector stops answering; every acknowledged row is kept."""

    def __init__(self, base_url: str, threads: int, prefix: str) -> None:
        self.base_url = base_url
        self.prefix = prefix
        self.acknowledged: list[dict] = []
        self.unexpected: list[str] = []
        self.signatures: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)
        ]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def count(self) -> int:
        with self._lock:
            return len(self.acknowledged)

    def wait_for(self, count: int, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while self.count() < count and time.monotonic() < deadline and not self.unexpected:
            time.sleep(0.05)

    def _run(self, number: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            for n in itertools.count():
                if self._stop.is_set():
                    return
                session_id = f"{self.prefix}{number}-{n}"
                billing_id = f"sub_{number}_{n % 7}"
                body = signed(session_id, billing_id, started_at="2026-04-02T08:00:00Z")
                requests = [("POST", "/v1/sessions", body)]
                if n % 3 == 0:
                    update = signed(session_id, billing_id, action="canceled")
                    requests.append(("PATCH", f"/v1/sessions/{session_id}", update))
                for method, path, json_body in requests:
                    self.signatures.add(json_body["signature"])
                    try:
                        response = client.request(method, path, json=json_body)
                    except httpx.HTTPError:
                        return  # the collector is gone
                    if response.status_code not in (200, 201):
                        self.unexpected.append(f"{response.status_code} {response.text}")
                        return
                    with self._lock:
                        self.acknowledged.append(response.json()["session"])


def published_rows(drop: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted(drop.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def key(row: dict) -> str:
    return json.dumps(row, sort_keys=True)


def test_acknowledged_sessions_survive_kill_9_and_load_exactly_once(tmp_path):
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    process = start_collector(tmp_path, port, "first.log")
    load = Load(base_url, threads=4, prefix="before-").start()
    load.wait_for(600)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    load.stop()
    before_kill = list(load.acknowledged)
    assert load.unexpected == [] and len(before_kill) >= 600

    process = start_collector(tmp_path, port, "second.log")
    after = Load(base_url, threads=2, prefix="after-").start()
    after.wait_for(50)
    after.stop()
    stop_collector(process)
    assert after.unexpected == [] and after.count() >= 50
    acknowledged = before_kill + after.acknowledged

    published = published_rows(tmp_path / "drop")  # in log order: names sort by sequence
    counts = Counter(key(row) for row in published)
    assert [key(row) for row in acknowledged if counts[key(row)] != 1] == []
    assert max(counts.values()) == 1  # no log row published twice
    assert not list((tmp_path / "drop").glob("*.tmp"))

    database = tmp_path / "warehouse.duckdb"
    pipeline = dlt.pipeline(
        "collector_crash_test",
        destination=dlt.destinations.duckdb(str(database)),
        dataset_name="raw_exit_sessions",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    assert not pipeline.run(exit_sessions_source(folder=str(tmp_path / "drop"))).has_failed_jobs
    with duckdb.connect(str(database), read_only=True) as con:
        loaded = con.sql(
            "select session_id, count(*), any_value(action)"
            " from raw_exit_sessions.exit_sessions group by session_id"
        ).fetchall()
        [(quarantined,)] = con.sql(
            "select count(*) from raw_exit_sessions.exit_sessions_quarantine"
        ).fetchall()
    # Each session once, as its last committed change: the last acknowledged one, or one
    # committed but not acknowledged when the kill cut its answer.
    last_published = {row["session_id"]: row["action"] for row in published}
    loaded_by_id = {session_id: (count, action) for session_id, count, action in loaded}
    acknowledged_ids = {row["session_id"] for row in acknowledged}
    assert {s: loaded_by_id.get(s) for s in acknowledged_ids} == {
        s: (1, last_published[s]) for s in acknowledged_ids
    }
    assert quarantined == 0

    logs = (tmp_path / "first.log").read_text() + (tmp_path / "second.log").read_text()
    assert "POST /v1/sessions" in logs  # the access log is there, and holds no secret
    assert SECRET not in logs
    assert not [s for s in load.signatures | after.signatures if s in logs]
