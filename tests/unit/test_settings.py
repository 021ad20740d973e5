"""Settings read once, from one home: the billing systems in use, the save window."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from billing_clients import systems
from orchestration import settings
from orchestration.cli import extract
from orchestration.settings import BILLING_SYSTEMS, billing_systems_in_use


def test_the_list_of_systems_is_the_billing_client_layers():
    """One home: settings re-exports it (callers import it from there) and never redefines it."""
    assert settings.BILLING_SYSTEMS is systems.BILLING_SYSTEMS == ("stripe", "recurly", "chargebee")


def test_all_three_when_unset_or_blank():
    assert billing_systems_in_use({}) == BILLING_SYSTEMS
    assert billing_systems_in_use({"RETENTION_BILLING_SYSTEMS": " "}) == BILLING_SYSTEMS


def test_names_in_the_projects_order_whatever_the_spelling():
    env = {"RETENTION_BILLING_SYSTEMS": " chargebee, stripe ,chargebee"}
    assert billing_systems_in_use(env) == ("stripe", "chargebee")


def test_an_unknown_name_says_where_it_came_from_and_the_choices():
    with pytest.raises(ValueError, match="RETENTION_BILLING_SYSTEMS: unknown billing system"):
        billing_systems_in_use({"RETENTION_BILLING_SYSTEMS": "stripe,paypal"})


def test_the_loads_are_those_of_the_systems_in_use(monkeypatch):
    from orchestration.loads import load_assets

    monkeypatch.setenv("RETENTION_BILLING_SYSTEMS", "recurly")
    groups = {spec.group_name for assets in load_assets() for spec in assets.specs}
    assert groups == {"recurly", "exit_sessions"}


def test_extract_refuses_an_unknown_system_from_the_variable(monkeypatch):
    monkeypatch.setenv("RETENTION_BILLING_SYSTEMS", "paypal")
    result = CliRunner().invoke(extract, [])
    assert result.exit_code == 2
    assert "unknown billing system(s) paypal" in result.output


def test_the_save_window_is_the_dbt_projects(tmp_path):
    """validation_30d and the demo take the window from dbt_project.yml, its one home."""
    from datetime import timedelta

    from orchestration.settings import save_window
    from orchestration.validation import SAVE_WINDOW

    (tmp_path / "dbt_project.yml").write_text("vars:\n  save_window_days: 45\n")
    assert save_window(tmp_path) == timedelta(days=45)
    assert SAVE_WINDOW == save_window() == timedelta(days=30)


def test_the_warehouse_is_duckdb_unless_postgres_is_named():
    assert settings.warehouse_kind({}) == "duckdb"
    assert settings.warehouse_kind({"RETENTION_WAREHOUSE": " Postgres "}) == "postgres"


def test_an_unknown_warehouse_is_refused_naming_the_variable():
    with pytest.raises(ValueError, match="RETENTION_WAREHOUSE='postgresql' is not a warehouse"):
        settings.warehouse_kind({"RETENTION_WAREHOUSE": "postgresql"})


def test_postgres_credentials_are_dlts_and_print_masked(monkeypatch):
    url = "postgresql://loader:s3cr%40t@db.internal:6543/retention"
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", url)
    credentials = settings.postgres_credentials()
    assert (credentials.host, credentials.port, credentials.database) == (
        "db.internal",
        6543,
        "retention",
    )
    assert credentials.password == "s3cr@t"
    assert "s3cr" not in str(credentials) and "loader:***@db.internal" in str(credentials)


def test_no_postgres_credentials_says_which_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("DESTINATION__POSTGRES__CREDENTIALS", raising=False)
    monkeypatch.chdir(tmp_path)  # no .dlt/secrets.toml here
    with pytest.raises(ValueError, match="DESTINATION__POSTGRES__CREDENTIALS=postgresql://"):
        settings.postgres_credentials()
