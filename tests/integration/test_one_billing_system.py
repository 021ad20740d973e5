"""An account on one billing system (RETENTION_BILLING_SYSTEMS): only that system is loaded,
and the models build without the other systems' raw tables, which such an account never has."""

from __future__ import annotations

import duckdb
import pytest

from orchestration.extract import run_extract
from sandbox.exit_files import write_exit_session_files
from sandbox.scenario import validate_scenario
from tests.oracle import subscription_facts, validate
from tests.small_scenarios import one_subscription_per_system

pytestmark = pytest.mark.integration


def _stripe_only() -> dict:
    doc = one_subscription_per_system()
    for section in ("plans", "customers", "subscriptions"):
        doc[section] = [r for r in doc[section] if r["billing_system"] == "stripe"]
    doc["exit_sessions"] = [
        {
            "session_id": "es_1",
            "billing_system": "stripe",
            "billing_id": "sub_1",
            "started_at": "2026-05-02T08:00:00Z",
            "action": "deflected",
            "action_at": "2026-05-02T08:01:00Z",
        }
    ]
    return doc


def _rows(database, sql: str) -> list[tuple]:
    with duckdb.connect(str(database)) as con:
        return con.execute(sql).fetchall()


def test_a_stripe_only_account_loads_and_builds_its_marts(
    tmp_path, serve_scenario, monkeypatch, dbt
):
    doc = _stripe_only()
    scenario = validate_scenario(doc)
    sandbox = serve_scenario(doc)
    write_exit_session_files(scenario, tmp_path / "drop")
    monkeypatch.setenv("RETENTION_BILLING_SYSTEMS", "stripe")
    monkeypatch.setenv("SOURCES__STRIPE__BASE_URL", sandbox.urls["stripe"])
    database = tmp_path / "warehouse.duckdb"
    results = run_extract(
        database=database,
        exit_sessions_folder=tmp_path / "drop",
        pipelines_dir=tmp_path / "dlt",
        systems=("stripe",),
    )
    assert [r.error for r in results] == [None, None]
    schemas = {row[0] for row in _rows(database, "select schema_name from duckdb_schemas()")}
    assert "raw_stripe" in schemas and not schemas & {"raw_recurly", "raw_chargebee"}

    # A young account: no coupon and no invoice yet, so dlt made no table for them.
    assert not {"coupons", "invoices"} & {
        row[0]
        for row in _rows(
            database,
            "select table_name from information_schema.tables where table_schema = 'raw_stripe'",
        )
    }
    # As Dagster builds (orchestration/models.py): the unit tests mock all three systems.
    dbt(database, "build", "--exclude-resource-type", "unit_test")

    got = _rows(
        database, "select billing_system, subscription_id, mrr from marts.dim_subscriptions"
    )
    want = subscription_facts(scenario)
    assert [(s, i) for s, i, _ in got] == list(want)
    assert got[0][2] == want[("stripe", "sub_1")]["mrr"]
    episodes = _rows(database, "select episode_id, validation_status from marts.fct_exit_episodes")
    assert episodes == [(e["episode_id"], e["validation_status"]) for e in validate(scenario)]


def test_an_unknown_billing_system_is_named_by_dbt(tmp_path, monkeypatch, dbt):
    monkeypatch.setenv("RETENTION_BILLING_SYSTEMS", "stripe,paypal")
    result = dbt(tmp_path / "warehouse.duckdb", "parse", expect_success=False)
    assert not result.success
    assert "RETENTION_BILLING_SYSTEMS=stripe,paypal" in str(result.exception)


@pytest.mark.postgres
def test_a_young_stripe_only_account_builds_on_postgres(
    tmp_path, serve_scenario, monkeypatch, dbt, postgres
):
    import psycopg2

    doc = _stripe_only()
    scenario = validate_scenario(doc)
    sandbox = serve_scenario(doc)
    write_exit_session_files(scenario, tmp_path / "drop")
    monkeypatch.setenv("RETENTION_BILLING_SYSTEMS", "stripe")
    monkeypatch.setenv("SOURCES__STRIPE__BASE_URL", sandbox.urls["stripe"])
    results = run_extract(
        exit_sessions_folder=tmp_path / "drop", pipelines_dir=tmp_path / "dlt", systems=("stripe",)
    )
    assert [r.error for r in results] == [None, None]
    dbt(
        tmp_path / "unused.duckdb",
        "build",
        "--exclude-resource-type",
        "unit_test",
        target="postgres",
    )
    with psycopg2.connect(postgres) as con, con.cursor() as cur:
        cur.execute("select billing_system, subscription_id from marts.dim_subscriptions")
        assert cur.fetchall() == list(subscription_facts(scenario))
