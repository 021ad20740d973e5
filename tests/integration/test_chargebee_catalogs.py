"""A Chargebee site on Product Catalog 1.0 and one on 2.0, serving the same generated
facts: both extract (the catalog found by `GET /configurations`, or set), model with
dbt into the same conformed rows (the marts equal the oracle on both), and take every
write-back (tests/integration/test_writeback_chargebee.py covers the writer per action)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pytest

from orchestration.extract import run_extract
from sandbox.exit_files import write_exit_session_files
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.scenario import validate_scenario
from tests.integration.test_end_to_end_marts import assert_marts_match_the_facts

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
CB = "chargebee"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("scenario") / "scenario.json"
    write_scenario(GenerateOptions(160, 17, AS_OF), path)
    return orjson.loads(path.read_bytes())


def _rows(database: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(database)) as con:
        return sorted(con.sql(sql).fetchall(), key=repr)


def _tables(database: Path, schema: str) -> set[str]:
    sql = f"select table_name from information_schema.tables where table_schema = '{schema}'"
    return {name for (name,) in _rows(database, sql)}


def _build(doc: dict, catalog: str, setting: str, root: Path, serve_scenario, env, dbt) -> Path:
    """Serve `doc` with a Chargebee site on `catalog`, extract all systems (the Chargebee
    source told `setting`) and build every model; the warehouse file."""
    folder = root / catalog
    site = doc | {"chargebee_product_catalog": catalog}
    sandbox = serve_scenario(site)
    write_exit_session_files(validate_scenario(site), folder / "drop")
    for system, url in sandbox.urls.items():
        env.setenv(f"SOURCES__{system.upper()}__BASE_URL", url)
    env.setenv("SOURCES__CHARGEBEE__PRODUCT_CATALOG", setting)
    database = folder / "warehouse.duckdb"
    results = run_extract(
        database=database, exit_sessions_folder=folder / "drop", pipelines_dir=folder / "dlt"
    )
    assert [r.error for r in results] == [None] * 4
    dbt(database, "build")
    return database


ITEM_COLUMNS = (
    "subscription_id, item_id, item_type, price_id, usage_type, pricing_model, quantity, "
    'unit_amount_local, currency, "interval", interval_count'
)


def test_both_catalogs_extract_and_model_the_same_facts(
    generated, tmp_path, serve_scenario, monkeypatch, dbt
):
    v1 = _build(generated, "1.0", "auto", tmp_path, serve_scenario, monkeypatch, dbt)
    v2 = _build(generated, "2.0", "v2", tmp_path, serve_scenario, monkeypatch, dbt)

    # Each site's catalog tables, and never the other's (its endpoints answer 400).
    assert {"plans", "subscriptions"} <= _tables(v1, "raw_chargebee")
    assert not {"items", "item_prices"} & _tables(v1, "raw_chargebee")
    assert {"items", "item_prices", "subscriptions"} <= _tables(v2, "raw_chargebee")
    assert "plans" not in _tables(v2, "raw_chargebee")
    raw_v1 = _rows(v1, "select plan_id, plan_quantity from raw_chargebee.subscriptions")
    assert raw_v1 and all(plan for plan, _ in raw_v1)

    # The same conformed rows; products differ by nature (1.0 has no items), and so do
    # metered add-ons: 1.0 bills usage as non-recurring add-ons on the renewal invoice, so
    # only a 2.0 subscription lists them.
    licensed = "usage_type = 'licensed'"
    metered = _rows(v2, f"select price_id from staging.stg_chargebee__prices where not {licensed}")
    assert metered
    for sql in (
        "select * from staging.stg_chargebee__subscriptions",
        f"select {ITEM_COLUMNS} from staging.stg_chargebee__subscription_items where {licensed}",
        'select billing_system, plan_id, currency, unit_amount_local, "interval", '
        "interval_count from staging.stg_chargebee__plans "
        f"where plan_id not in ({', '.join(repr(price_id) for (price_id,) in metered)})",
        f"select {ITEM_COLUMNS} from intermediate.int_subscription_items "
        f"where billing_system = '{CB}' and {licensed}",
    ):
        got_v1, got_v2 = _rows(v1, sql), _rows(v2, sql)
        assert got_v1 == got_v2 and got_v1, sql
    usage = "select usage_type, count(*) from staging.stg_chargebee__subscription_items group by 1"
    assert "metered" not in dict(_rows(v1, usage)) and dict(_rows(v2, usage))["metered"] > 0
    items = _rows(v1, "select item_type, quantity from staging.stg_chargebee__subscription_items")
    assert {t for t, _ in items} == {"plan", "addon", "charge"} and all(q >= 1 for _, q in items)
    tiers = (
        "select price_id, count(*) from staging.stg_chargebee__price_tiers "
        "where subscription_id is null group by 1"
    )
    assert _rows(v1, tiers) == _rows(v2, tiers) and _rows(v1, tiers)
    # A 2.0 subscription states its items' tiers (`item_tiers`): they price it (the same
    # amounts as on 1.0, checked above through int_subscription_items); 1.0 has none.
    own = (
        "select count(*) from staging.stg_chargebee__price_tiers where subscription_id is not null"
    )
    assert _rows(v1, own) == [(0,)] and _rows(v2, own)[0][0] > 0

    for database in (v1, v2):
        assert_marts_match_the_facts(generated, database)
