"""dbt through a Spark Thrift server (#15): the `spark_thrift` output of profiles.yml, the
way a cluster is reached, proved on a local server started from pyspark's own jars with
exactly the README's commands ("Spark", "A cluster").

The server is a separate JVM with its own metastore (embedded Derby) and warehouse folder
in tmp; dbt reaches it over the Thrift protocol (PyHive) only. A small lake of exit
sessions, written by hand so the expected episodes are known, is registered by the
on-run-start hook, then a staging view, the episode walk and a mart are built and tested,
and the mart's rows are read back through the server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.spark]
if shutil.which("java") is None:
    pytest.skip(
        "Spark needs Java (a JRE 17 on PATH, e.g. apt-get install openjdk-17-jre-headless)",
        allow_module_level=True,
    )

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
# The server's start on a loaded 2-core machine (about 12 s idle).
START_TIMEOUT = 180
# Registration, the staging view, the walk, the mart and their data tests. Not the
# relationship to fct_exit_episodes (it needs the billing marts, which this lake lacks), nor
# the unit tests: test_spark_marts runs them on Spark, and the 300-visit walk alone took
# 114 s through this server.
BUILD = ["build", "--select", "+fct_exit_sessions"]
BUILD += ["--exclude", "test_name:relationships", "resource_type:unit_test"]
DAY0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
# (session_id, billing_system, billing_id, days after DAY0, the episode it must join).
# s3 opens a second episode: 31 days after the episode's first visit, though only 21
# after the previous one (validation.md §2 measures from the episode's start).
SESSIONS = [
    ("s1", "stripe", "cus_A", 0, "s1"),
    ("s2", "stripe", "cus_A", 10, "s1"),
    ("s3", "stripe", "cus_A", 31, "s3"),
    ("s4", "stripe", "cus_A", 45, "s3"),
    ("s5", "recurly", "acct_B", 3, "s5"),
]


def server_command(spark_home: Path, warehouse: Path, port: int) -> list[str]:
    """The README's local server: pyspark's spark-submit running Spark's HiveThriftServer2,
    its tables and Derby metastore under `warehouse`, listening on 127.0.0.1:`port`."""
    return [
        str(spark_home / "bin" / "spark-submit"),
        *("--class", "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"),
        *("--conf", f"spark.sql.warehouse.dir={warehouse}/tables"),
        *("--conf", f"spark.driver.extraJavaOptions=-Dderby.system.home={warehouse}"),
        *("--conf", "spark.sql.session.timeZone=UTC"),
        *("--conf", "spark.ui.enabled=false"),
        *("--hiveconf", f"hive.server2.thrift.port={port}"),
        *("--hiveconf", "hive.server2.thrift.bind.host=127.0.0.1"),
        "spark-internal",
    ]


def wait_for_server(proc: subprocess.Popen, port: int, log: Path) -> None:
    """Until the server accepts connections; fails with its log if it exits or is late."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the Thrift server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    tail = log.read_text()[-3000:]
    pytest.fail(f"the Thrift server did not listen within {START_TIMEOUT} s:\n{tail}")


def stop(proc: subprocess.Popen) -> None:
    """The server's process group (spark-submit and its JVM), politely, then not: its state
    is in tmp, and once its JVM's shutdown took over 30 s (after test_spark_marts)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class Server:
    port: int
    warehouse: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """A local Spark Thrift server on a free port, in its own tmp folder."""
    import pyspark

    folder = tmp_path_factory.mktemp("thrift")
    port, warehouse, log = free_port(), folder / "spark-warehouse", folder / "server.log"
    command = server_command(Path(pyspark.__file__).parent, warehouse, port)
    with log.open("w") as out:
        proc = subprocess.Popen(
            command, cwd=folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_server(proc, port, log)
        yield Server(port, warehouse)
    finally:
        stop(proc)


def write_lake(lake: Path) -> None:
    """raw_exit_sessions.exit_sessions as the landing lays it out (a parquet folder per
    table, timestamps as UTC instants): the SESSIONS, each a cancel-page visit."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = [
        "session_id", "app_id", "billing_system", "billing_id", "email", "action",
        "offer_id", "offer_type", "page_id", "cancel_reason", "custom",
    ]  # fmt: skip
    schema = pa.schema(
        [(name, pa.string()) for name in text]
        + [(name, pa.timestamp("us", tz="UTC")) for name in ("started_at", "action_at")]
    )
    rows = [
        {
            "session_id": session,
            "app_id": "app_1",
            "billing_system": system,
            "billing_id": billing_id,
            "email": f"{billing_id}@example.com",
            "action": "canceled",
            "page_id": "page_1",
            "started_at": DAY0 + timedelta(days=days),
            "action_at": DAY0 + timedelta(days=days, minutes=2),
        }
        for session, system, billing_id, days, _ in SESSIONS
    ]
    folder = lake / "raw_exit_sessions" / "exit_sessions"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "data.parquet")


def query(server: Server, sql: str) -> list[tuple]:
    """Rows of `sql` over Thrift, as dbt's connection reads them."""
    from pyhive import hive

    with hive.connect(host="127.0.0.1", port=server.port, username="retention") as con:
        cursor = con.cursor()
        cursor.execute(sql)
        return cursor.fetchall()


def test_dbt_builds_a_mart_through_the_thrift_server(server, tmp_path, monkeypatch):
    from dbt.cli.main import dbtRunner

    write_lake(tmp_path / "lake")
    monkeypatch.setenv("RETENTION_SPARK_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("RETENTION_SPARK_HOST", "127.0.0.1")
    monkeypatch.setenv("RETENTION_SPARK_PORT", str(server.port))
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    result = dbtRunner().invoke(
        [
            *BUILD,
            *("--target", "spark_thrift"),
            *("--project-dir", str(DBT_PROJECT), "--profiles-dir", str(DBT_PROJECT)),
            *("--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")),
        ]
    )
    assert result.success, f"dbt build through Thrift: {result.exception or ''}"
    built = {r.node.name for r in result.result if r.status in ("success", "pass")}
    assert {"stg_exit_sessions__sessions", "fct_exit_sessions"} <= built

    assert query(server, "select count(*) from raw_exit_sessions.exit_sessions") == [
        (len(SESSIONS),)
    ]
    got = query(
        server,
        "select session_id, episode_id, date_format(started_at, 'yyyy-MM-dd HH:mm')"
        " from marts.fct_exit_sessions order by session_id",
    )
    want = [
        (session, episode, f"{DAY0 + timedelta(days=days):%Y-%m-%d %H:%M}")
        for session, _, _, days, episode in SESSIONS
    ]
    assert got == want
    # The server, not dbt's process, wrote the mart: into its own warehouse folder.
    assert list((server.warehouse / "tables" / "marts.db" / "fct_exit_sessions").glob("*.parquet"))
