"""Shared fixtures: tool state kept inside the test run, and sandboxes on free ports."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
# The collector's state database (session log, fast-path journal, webhook outbox) is the
# test run's own, never the checkout's .collector/: a journal left there by a collector a
# developer ran would be imported into a test's write-back ledger.
os.environ["RETENTION_COLLECTOR_DB"] = os.path.join(
    tempfile.mkdtemp(prefix="retention-state-"), "collector.sqlite"
)

from sandbox.app import Sandbox, start_sandbox
from sandbox.scenario import validate_scenario


@pytest.fixture
def serve_scenario() -> Iterator[Callable[..., Sandbox]]:
    """Factory: `serve_scenario(doc, frozen=True, faults=..., rate_limits=...)` validates a
    scenario document and serves it on free loopback ports; stopped after the test."""
    started: list[Sandbox] = []

    def serve(doc: dict, **options) -> Sandbox:
        options.setdefault("frozen", True)
        sandbox = start_sandbox(validate_scenario(doc), **options)
        started.append(sandbox)
        return sandbox

    yield serve
    for sandbox in started:
        sandbox.stop()


@pytest.fixture(autouse=True)
def _state_db_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's own state database, so no test imports another's fast-path journal."""
    monkeypatch.setenv("RETENTION_COLLECTOR_DB", str(tmp_path / "collector.sqlite"))


DBT_PROJECT = Path(__file__).resolve().parent.parent / "dbt_project"


@pytest.fixture
def dbt(tmp_path, monkeypatch):
    """Run dbt commands on the project against a given DuckDB file, with target/ and logs
    kept in the test's temp folder. Returns the runner's result; fails on dbt failure."""
    from dbt.cli.main import dbtRunner

    def run(database: Path, *args: str, expect_success: bool = True, target: str = "duckdb"):
        monkeypatch.setenv("RETENTION_DUCKDB_PATH", str(database))
        monkeypatch.setenv("RETENTION_WAREHOUSE", target)
        result = dbtRunner().invoke(
            [
                *args,
                "--project-dir",
                str(DBT_PROJECT),
                "--profiles-dir",
                str(DBT_PROJECT),
                "--target-path",
                str(tmp_path / "dbt_target"),
                "--log-path",
                str(tmp_path / "dbt_logs"),
            ]
        )
        if expect_success:
            assert result.success, (
                f"dbt {' '.join(args)} failed: {result.exception or result.result}"
            )
        return result

    return run


PG = "postgresql://postgres:postgres@127.0.0.1:5432/postgres"  # trust auth: any password


def _server_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        return True
    except OSError:
        return False


@contextmanager
def scratch_database(prefix: str = "retention_test") -> Iterator[str]:
    """A new PostgreSQL database, its URL; dropped after. Skips, saying why, where no
    server answers on 127.0.0.1:5432."""
    if not _server_answers():
        pytest.skip(
            "no PostgreSQL server answers on 127.0.0.1:5432 (start one to run the Postgres tests)"
        )
    import psycopg2

    database = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(PG)
    admin.autocommit = True
    admin.cursor().execute(f'create database "{database}"')
    try:
        yield PG.rsplit("/", 1)[0] + "/" + database
    finally:
        admin.cursor().execute(f'drop database "{database}" with (force)')
        admin.close()


@pytest.fixture
def postgres(monkeypatch):
    """A fresh PostgreSQL database for one test, as dlt and dbt credentials; dropped after."""
    with scratch_database() as url:
        monkeypatch.setenv("RETENTION_WAREHOUSE", "postgres")
        monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", url)
        yield url
