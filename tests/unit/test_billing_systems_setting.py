"""RETENTION_BILLING_SYSTEMS: which billing systems a deployment loads and models."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from orchestration.cli import main
from orchestration.settings import BILLING_SYSTEMS, billing_systems_in_use


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
    result = CliRunner().invoke(main, ["extract"])
    assert result.exit_code == 2
    assert "unknown billing system(s) paypal" in result.output
