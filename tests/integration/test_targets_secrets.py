"""A live key reaches the sources as dlt documents it, and nowhere else: `retention
extract` run in a project whose only key is in `.dlt/secrets.toml` loads with it, and a
Dagster run with a live key leaves no trace of it in the instance's storage.

"Live" here is the real-service path (SDK pacing, no sandbox defaults) against a sandbox
that accepts only that key: any other key gets the API's 401."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import zlib
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pytest
from dagster import DagsterInstance, materialize

from orchestration.loads import billing_assets
from orchestration.resources import build_resources
from sandbox.generate import GenerateOptions, write_scenario

pytestmark = pytest.mark.integration
AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
LIVE_KEY = "sk_live_kept_out_of_storage_4f1c"
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stripe_with_a_live_key(tmp_path, serve_scenario):
    """A small Stripe account served on the sandbox, answering only LIVE_KEY."""
    path = tmp_path / "scenario.json"
    write_scenario(GenerateOptions(40, 3, AS_OF), path)
    doc = orjson.loads(path.read_bytes())
    stripe = serve_scenario(doc, api_key=LIVE_KEY, systems=("stripe",))
    subscriptions = sum(1 for s in doc["subscriptions"] if s["billing_system"] == "stripe")
    return stripe.urls["stripe"], subscriptions


def test_an_extract_uses_a_key_found_only_in_dlt_secrets_toml(tmp_path, stripe_with_a_live_key):
    url, subscriptions = stripe_with_a_live_key
    project = tmp_path / "project"
    (project / ".dlt").mkdir(parents=True)
    (project / ".dlt" / "secrets.toml").write_text(f'[sources.stripe]\napi_key = "{LIVE_KEY}"\n')
    (project / ".dlt" / "config.toml").write_text(
        f'[sources.stripe]\nenvironment = "live"\nbase_url = "{url}"\n'
    )
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("SOURCES__")
        and name not in ("RETENTION_ENVIRONMENT", "DLT_PROJECT_DIR")
    }
    env |= {"PYTHONPATH": str(PROJECT), "DLT_DATA_DIR": str(tmp_path / "dlt")}
    database = tmp_path / "warehouse.duckdb"
    extract = (
        "from orchestration.extract import run_extract\n"
        f"[summary] = run_extract(('stripe',), {str(database)!r})\n"
        "assert summary.error is None, summary.error\n"
    )
    # dlt finds .dlt/ in the working directory: the process starts in the project.
    done = subprocess.run(
        [sys.executable, "-c", extract], cwd=project, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with duckdb.connect(str(database), read_only=True) as con:
        loaded = con.execute("select count(*) from raw_stripe.subscriptions").fetchone()[0]
    assert loaded == subscriptions
    assert LIVE_KEY not in done.stdout + done.stderr


def stored_text(root: Path) -> str:
    """Everything under `root` as text: plain files as they are, and every value of every
    table of the SQLite files, zlib-compressed blobs (Dagster's snapshots) decompressed."""
    parts = []
    for path in (p for p in root.rglob("*") if p.is_file()):
        if path.suffix != ".db":
            parts.append(path.read_bytes().decode("utf-8", "replace"))
            continue
        with sqlite3.connect(path) as db:
            tables = [t for (t,) in db.execute("select name from sqlite_master where type='table'")]
            for table in tables:
                for row in db.execute(f'select * from "{table}"'):
                    parts.extend(_text(value) for value in row)
    return "\n".join(parts)


def _text(value) -> str:
    if isinstance(value, bytes):
        with contextlib.suppress(zlib.error):  # not every blob is compressed
            value = zlib.decompress(value)
        return value.decode("utf-8", "replace")
    return str(value)


def test_no_key_reaches_the_dagster_run_storage(stripe_with_a_live_key, dagster_env, monkeypatch):
    url, subscriptions = stripe_with_a_live_key
    monkeypatch.setenv("RETENTION_ENVIRONMENT", "live")
    monkeypatch.setenv("SOURCES__STRIPE__API_KEY", LIVE_KEY)
    monkeypatch.setenv("SOURCES__STRIPE__BASE_URL", url)

    with DagsterInstance.get() as instance:
        result = materialize(
            [billing_assets("stripe")], resources=build_resources(), instance=instance
        )
    assert result.success

    with duckdb.connect(str(dagster_env["RETENTION_DUCKDB_PATH"]), read_only=True) as con:
        loaded = con.execute("select count(*) from raw_stripe.subscriptions").fetchone()[0]
    assert loaded == subscriptions
    stored = stored_text(dagster_env["DAGSTER_HOME"])
    # The run's snapshot names the variable the key comes from (so this reads the storage
    # that holds the resources' configuration), never the key itself.
    assert "SOURCES__STRIPE__API_KEY" in stored
    assert LIVE_KEY not in stored
    # Nor in dlt's state, load packages and trace (the source is given the key as an
    # argument, which dlt does not record).
    assert LIVE_KEY not in stored_text(dagster_env["DLT_DATA_DIR"])
