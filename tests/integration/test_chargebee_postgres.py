"""Chargebee sites of each Product Catalog modelled on Postgres: the generated scenario
(add-ons, charges, tiers and the variety of real accounts) served on a 1.0 and on a 2.0
site (whose subscriptions state their `item_tiers`), extracted into Postgres and built
there; every Chargebee subscription in marts.dim_subscriptions equals tests/oracle.py's
facts, and the Chargebee staging and pricing unit tests pass on Postgres too. Skipped,
with the reason, where no PostgreSQL server answers on 127.0.0.1:5432."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from orchestration.extract import run_extract
from sandbox.exit_files import write_exit_session_files
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.scenario import validate_scenario
from tests.oracle import same, subscription_facts

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
CB = "chargebee"
CATALOG_TABLES = {"1.0": {"plans", "addons"}, "2.0": {"items", "item_prices"}}


@pytest.mark.parametrize("catalog", ["1.0", "2.0"])
def test_a_site_models_on_postgres(catalog, tmp_path, serve_scenario, monkeypatch, dbt, postgres):
    import psycopg2

    path = tmp_path / "scenario.json"
    write_scenario(GenerateOptions(160, 17, AS_OF), path)
    doc = orjson.loads(path.read_bytes()) | {"chargebee_product_catalog": catalog}
    sandbox = serve_scenario(doc)
    write_exit_session_files(validate_scenario(doc), tmp_path / "drop")
    for system, url in sandbox.urls.items():
        monkeypatch.setenv(f"SOURCES__{system.upper()}__BASE_URL", url)
    results = run_extract(exit_sessions_folder=tmp_path / "drop", pipelines_dir=tmp_path / "dlt")
    assert [r.error for r in results] == [None] * 4
    warehouse = tmp_path / "unused.duckdb"  # the dbt fixture names a DuckDB file regardless
    # unit tests apart: only the Chargebee and pricing ones are this test's business
    dbt(warehouse, "build", "--exclude", "resource_type:unit_test", target="postgres")
    dbt(
        warehouse,
        "test",
        "--select",
        "test_type:unit,path:models/staging/chargebee",  # the pricing one on int included
        target="postgres",
    )

    with psycopg2.connect(postgres) as con, con.cursor() as cur:
        cur.execute(
            "select table_name from information_schema.tables where table_schema = 'raw_chargebee'"
        )
        raw = {name for (name,) in cur.fetchall()}
        other = CATALOG_TABLES["2.0" if catalog == "1.0" else "1.0"]
        assert CATALOG_TABLES[catalog] <= raw and not other & raw
        cur.execute("select * from marts.dim_subscriptions where billing_system = %s", [CB])
        names = [d[0] for d in cur.description]
        got = {
            row["subscription_id"]: row
            for row in (dict(zip(names, values, strict=True)) for values in cur.fetchall())
        }
        cur.execute(
            "select item_type, count(*) from staging.stg_chargebee__subscription_items group by 1"
        )
        item_types = dict(cur.fetchall())
        cur.execute(
            "select count(*) from staging.stg_chargebee__price_tiers "
            "where subscription_id is not null"
        )
        (own_tiers,) = cur.fetchone()

    facts = {
        sub_id: want
        for (system, sub_id), want in subscription_facts(validate_scenario(doc)).items()
        if system == CB
    }
    assert got.keys() == facts.keys()
    wrong = [
        (sub_id, field, got[sub_id][field], value)
        for sub_id, want in facts.items()
        for field, value in want.items()
        if not same(_utc(got[sub_id][field]), value)
    ]
    assert not wrong, f"{len(wrong)} wrong fields, e.g. {wrong[:10]}"
    assert set(item_types) == {"plan", "addon", "charge"}
    assert (own_tiers > 0) == (catalog == "2.0")  # 2.0 subscriptions' item_tiers price them


def _utc(value):
    """Postgres answers timestamptz in the session's zone and numerics as Decimal."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, float):
        return Decimal(str(value))
    return value
