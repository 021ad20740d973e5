"""End to end: a generated scenario served by the sandbox, extracted through the official
SDKs with dlt, modelled with dbt; every episode and every cohort cell of the marts equals
what tests/oracle.py computes from the scenario's facts alone.

The same build is checked when the billing sync is late by weeks (T moves with it)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import duckdb
import orjson
import pytest

from orchestration.extract import run_extract
from sandbox.exit_files import write_exit_session_files
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.scenario import load_scenario, validate_scenario
from tests.oracle import MONEY, cohorts, subscription_facts, validate, wrong_fields

pytestmark = pytest.mark.integration
AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
EPISODE_FIELDS = (
    "billing_system",
    "billing_id",
    "page_outcome",
    "save_type",
    "offer_id",
    "offer_type",
    "page_id",
    "subscription_id",
    "customer_id",
    "validation_status",
    "validated_outcome",
)


@pytest.fixture(params=["2.0", "1.0"], ids=["chargebee_catalog_2", "chargebee_catalog_1"])
def pipeline(request, tmp_path, serve_scenario, monkeypatch, dbt):
    """Generate, serve, extract and build once; return the scenario doc, the sandbox, and
    a function that re-extracts and rebuilds. The Chargebee site runs Product Catalog 2.0
    (items, item prices) or 1.0 (plans, add-ons: sites created before May 2021)."""
    path = tmp_path / "scenario.json"
    write_scenario(GenerateOptions(700, 21, AS_OF), path)
    doc = orjson.loads(path.read_bytes())
    doc["chargebee_product_catalog"] = request.param
    sandbox = serve_scenario(doc)
    write_exit_session_files(load_scenario(path), tmp_path / "drop")
    for system, url in sandbox.urls.items():
        monkeypatch.setenv(f"SOURCES__{system.upper()}__BASE_URL", url)
    database = tmp_path / "warehouse.duckdb"

    def build() -> None:
        results = run_extract(
            database=database,
            exit_sessions_folder=tmp_path / "drop",
            pipelines_dir=tmp_path / "dlt",
        )
        assert [r.error for r in results] == [None] * 4
        dbt(database, "build")

    build()
    return doc, sandbox, database, build


def marts(database, table: str) -> list[dict]:
    # Not read_only: dbt-duckdb may still hold the file open in this process, and DuckDB
    # refuses a second connection with a different configuration.
    with duckdb.connect(str(database)) as con:
        relation = con.sql(f"select * from marts.{table}")
        names = [d[0] for d in relation.description]
        return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]


def assert_marts_match_the_facts(doc: dict, database) -> None:
    scenario = validate_scenario(doc)
    expected = {e["episode_id"]: e for e in validate(scenario)}
    got = {row["episode_id"]: row for row in marts(database, "fct_exit_episodes")}
    assert got.keys() == expected.keys()
    for episode_id, want in expected.items():
        row = got[episode_id]
        for field in EPISODE_FIELDS:
            assert row[field] == want[field], (episode_id, field, row[field], want[field])
        assert row["session_count"] == len(want["sessions"])
        assert row["first_landed_at"] == want["first_landed_at"]
        assert row["validated_at"] == scenario.as_of
        for field in ("mrr", "saved_mrr", "lost_mrr"):
            if want[field] is None:
                assert row[field] is None, (episode_id, field)
            else:
                assert abs(row[field] - want[field]) < MONEY, (
                    episode_id,
                    field,
                    row[field],
                    want[field],
                )

    cells = cohorts(scenario, list(expected.values()))
    rows = marts(database, "fct_repurchase_cohorts")
    keys = (
        "cohort_month",
        "page_outcome",
        "validated_outcome",
        "save_type",
        "offer_type",
        "page_id",
        "month_offset",
    )
    got_cells = {tuple(r[k] for k in keys): r for r in rows}
    assert got_cells.keys() == cells.keys()
    for key, want in cells.items():
        for field, value in want.items():
            assert abs(Decimal(got_cells[key][field]) - value) < MONEY, (key, field)


def assert_subscriptions_match_the_facts(doc: dict, database) -> None:
    """Every subscription of every system has its plan, currency, quantity, MRR, current
    period and coupon in marts.dim_subscriptions, as the scenario states them: a field
    the pinned API versions no longer send (or send elsewhere) shows up here as a null."""
    scenario = validate_scenario(doc)
    got = {
        (row["billing_system"], row["subscription_id"]): row
        for row in marts(database, "dim_subscriptions")
    }
    want = subscription_facts(scenario)
    assert got.keys() == want.keys()
    wrong = wrong_fields(got, want)
    assert not wrong, f"{len(wrong)} wrong fields, e.g. {wrong[:10]}"


def test_every_episode_and_cohort_cell_equals_the_facts(pipeline, dbt, tmp_path):
    doc, _, database, _ = pipeline
    assert_marts_match_the_facts(doc, database)
    assert_subscriptions_match_the_facts(doc, database)
    statuses = {row["validation_status"] for row in marts(database, "fct_exit_episodes")}
    assert len(statuses) == 7  # the generated scenario reaches every status
    dbt(database, "docs", "generate")
    catalog = orjson.loads((tmp_path / "dbt_target" / "catalog.json").read_bytes())
    assert "model.retention.fct_exit_episodes" in catalog["nodes"]


def test_a_sync_late_by_weeks_validates_as_of_its_own_time(pipeline):
    doc, sandbox, database, build = pipeline
    late = AS_OF + timedelta(weeks=3)
    sandbox.clock.set(late)
    build()
    moved = copy.deepcopy(doc)
    moved["as_of"] = late.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert_marts_match_the_facts(moved, database)
    pending = [
        r for r in marts(database, "fct_exit_episodes") if r["validated_outcome"] == "pending"
    ]
    assert all(r["save_event_at"] > late for r in pending)
