"""`retention sandbox schema` prints the models' JSON Schema, and it describes real scenarios.

The schema is for people and tools that write scenarios without our code; if it drifted
from what `load_scenario` accepts, they would write files we refuse (or the reverse)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import orjson
import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from sandbox.cli import sandbox
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.scenario import (
    BILLING_SYSTEMS,
    SCHEMA,
    SECTIONS,
    ScenarioDocument,
    ScenarioError,
    load_scenario,
    validate_scenario,
)
from tests.unit.test_scenario import BASE


@pytest.fixture(scope="module")
def printed() -> dict:
    result = CliRunner().invoke(sandbox, ["schema"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith('{\n  "$defs": {\n    "Coupon": {')  # indent 2
    return json.loads(result.output)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("gen") / "scenario.json"
    write_scenario(GenerateOptions(300, 5, datetime(2026, 6, 30, tzinfo=UTC)), path)
    load_scenario(path)  # the models accept it
    return orjson.loads(path.read_bytes())


def test_the_printed_schema_is_the_models(printed):
    assert printed == ScenarioDocument.model_json_schema()
    Draft202012Validator.check_schema(printed)


def test_a_generated_scenario_follows_the_schema(printed, generated):
    assert {name: len(generated[name]) > 0 for name in SECTIONS} == dict.fromkeys(SECTIONS, True)
    errors = list(Draft202012Validator(printed).iter_errors(generated))
    assert errors == [], errors[:3]


def test_the_schema_states_required_fields_and_choices(printed):
    subscription = printed["$defs"]["Subscription"]
    assert subscription["required"] == [
        "billing_system",
        "subscription_id",
        "customer_id",
        "plan_id",
        "quantity",
        "created_at",
        "activated_at",
    ]
    assert subscription["properties"]["billing_system"]["enum"] == list(BILLING_SYSTEMS)
    assert subscription["properties"]["quantity"]["minimum"] == 1
    assert subscription["additionalProperties"] is False
    assert printed["required"] == ["as_of", "reporting_currency", "fx_rates"]


@pytest.mark.parametrize(
    ("section", "change", "expected"),
    [
        ("plans", {"billing_system": "paypal"}, "plans[0] (paypal price_m).billing_system:"),
        ("plans", {"unit_amount": 49}, "plans[0] (stripe price_m).unit_amount:"),
        ("customers", {"created_at": None}, "customers[0] (stripe cus_1).created_at:"),
        ("subscriptions", {"quantity": 0}, "subscriptions[0] (stripe sub_1).quantity:"),
        ("invoices", {"colour": "red"}, "invoices[0] (stripe in_1).colour:"),
    ],
)
def test_schema_and_models_refuse_the_same_field(printed, section, change, expected):
    doc = copy.deepcopy(BASE)
    doc[section][0].update(change)
    assert not Draft202012Validator(printed).is_valid(doc)
    with pytest.raises(ScenarioError) as caught:
        validate_scenario(doc)
    assert [p for p in caught.value.problems if p.startswith(expected)], caught.value.problems


def test_the_generator_columns_follow_the_models(printed):
    """`SCHEMA` (the columns the generator writes, "ts" ones as timestamps) is derived from
    the models: the same fields, and "ts" exactly where the schema says date-time."""
    for section, model in SECTIONS.items():
        properties = printed["$defs"][model.__name__]["properties"]
        assert [f.name for f in SCHEMA[section]] == list(properties)
        timestamps = {name for name, spec in properties.items() if "date-time" in json.dumps(spec)}
        assert {f.name for f in SCHEMA[section] if f.kind == "ts"} == timestamps


def test_null_is_a_field_left_out():
    doc = copy.deepcopy(BASE)
    doc["plans"][0].update(kind=None, pricing_model=None)
    doc["invoices"][0]["kind"] = None
    doc["exit_sessions"] = None
    scenario = validate_scenario(doc)
    assert (scenario.plans[0]["kind"], scenario.plans[0]["pricing_model"]) == ("plan", "per_unit")
    assert scenario.invoices[0]["kind"] == "charge"
    assert scenario.exit_sessions == []


def test_a_refused_field_is_not_named_again_by_a_rule():
    """A field the models refuse reads as left out to the rules, which would otherwise
    add a second, misleading problem (here: "is required exactly with pricing_model")."""
    doc = copy.deepcopy(BASE)
    doc["plans"][0].update(pricing_model="package", package_size=1)
    with pytest.raises(ScenarioError) as caught:
        validate_scenario(doc)
    assert caught.value.problems == ["plans[0] (stripe price_m).package_size: must be >= 2"]
