"""The write-back catalog: the shipped file loads, a bad one is refused at load with
every problem named by file and key path, and the JSON Schema printed is the models'."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from billing_clients.systems import BILLING_SYSTEMS
from orchestration.writebacks_cli import writebacks
from sandbox.generate import OFFERS
from writebacks.catalog import (
    CATALOG_ENV,
    DEFAULT_CATALOG,
    CatalogError,
    CatalogFile,
    SystemSettings,
    catalog_path,
    json_schema,
    load_catalog,
)


def write(tmp_path: Path, document: object) -> Path:
    """A catalog file: a str is written as it is, anything else dumped as YAML."""
    path = tmp_path / "writebacks.yml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


def problems_of(path: Path) -> str:
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    return str(caught.value)


# --------------------------------------------------------------------------- the shipped file


def test_shipped_catalog_covers_every_generated_offer():
    catalog = load_catalog(DEFAULT_CATALOG)
    for offer_id, offer_type in OFFERS:
        assert offer_id in catalog.offers, offer_id
        assert catalog.offers[offer_id].type == offer_type


def test_shipped_catalog_sends_nothing_by_default():
    catalog = load_catalog(DEFAULT_CATALOG)
    assert set(catalog.systems) == set(BILLING_SYSTEMS)
    assert {s.mode for s in catalog.systems.values()} == {"dry_run"}
    assert all(s.since is None for s in catalog.systems.values())


def test_catalog_path_follows_the_environment(tmp_path):
    assert catalog_path({}) == DEFAULT_CATALOG
    assert catalog_path({CATALOG_ENV: str(tmp_path / "x.yml")}) == tmp_path / "x.yml"


CANCEL_DEFAULTS = {
    "stripe": {
        "when": "period_end",
        "scope": "subscription",
        "prorate": False,
        "invoice_now": False,
    },
    "recurly": {"when": "period_end", "scope": "subscription", "refund": "none"},
    "chargebee": {"when": "period_end", "scope": "subscription"},
}


@pytest.mark.parametrize("text", ["", "billing_systems: {stripe: , recurly: {}}\noffers: {}\n"])
def test_empty_catalog_gets_the_defaults(tmp_path, text):
    catalog = load_catalog(write(tmp_path, text))
    assert catalog.offers == {}
    for system in BILLING_SYSTEMS:
        assert catalog.systems[system] == SystemSettings("dry_run", None, CANCEL_DEFAULTS[system])


# --------------------------------------------------------------------------- valid settings


def test_system_settings_are_read(tmp_path):
    catalog = load_catalog(
        write(
            tmp_path,
            "billing_systems:\n"
            "  stripe: {mode: live, since: 2026-05-01T12:00:00Z,"
            " cancel: {when: immediately, prorate: true}}\n"
            "  recurly: {mode: off, cancel: {when: immediately, refund: partial}}\n"
            "  chargebee: {mode: live, since: '2026-05-01T14:00:00+02:00'}\n",
        )
    )
    stripe, recurly, chargebee = (catalog.systems[s] for s in BILLING_SYSTEMS)
    assert stripe.mode == "live"
    assert stripe.since == datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert stripe.cancel == {
        "when": "immediately",
        "scope": "subscription",
        "prorate": True,
        "invoice_now": False,
    }
    assert recurly.mode == "off"  # a bare `off` is YAML 1.1's false
    assert recurly.cancel["refund"] == "partial"
    assert chargebee.since == datetime(2026, 5, 1, 12, tzinfo=UTC)  # converted to UTC


def test_shared_parameters_merge_with_per_system_overrides(tmp_path):
    catalog = load_catalog(
        write(
            tmp_path,
            {
                "offers": {
                    "save50": {
                        "type": "discount",
                        "coupon": "SAVE50",
                        "chargebee": {"coupon": "cb-50"},
                    },
                    "pause_2m": {
                        "type": "pause",
                        "duration": 2,
                        "interval": "month",
                        "recurly": {"cycles": 1},
                    },
                }
            },
        )
    )
    save50 = catalog.offers["save50"]
    assert save50.for_system("stripe") == {"coupon": "SAVE50"}
    assert save50.for_system("recurly") == {"coupon": "SAVE50"}
    assert save50.for_system("chargebee") == {"coupon": "cb-50"}
    pause = catalog.offers["pause_2m"]
    assert pause.for_system("recurly") == {"duration": 2, "interval": "month", "cycles": 1}
    assert pause.for_system("stripe") == {"duration": 2, "interval": "month"}


@pytest.mark.parametrize(
    ("settings", "action_at", "enabled"),
    [
        (SystemSettings(mode="dry_run"), datetime(2020, 1, 1, tzinfo=UTC), True),
        (SystemSettings(mode="off"), datetime(2030, 1, 1, tzinfo=UTC), False),
        (
            SystemSettings(mode="live", since=datetime(2026, 1, 1, tzinfo=UTC)),
            datetime(2025, 12, 31, 23, 59, tzinfo=UTC),
            False,
        ),
        (
            SystemSettings(mode="live", since=datetime(2026, 1, 1, tzinfo=UTC)),
            datetime(2026, 1, 1, tzinfo=UTC),
            True,
        ),
        (
            SystemSettings(mode="off", since=datetime(2026, 1, 1, tzinfo=UTC)),
            datetime(2026, 6, 1, tzinfo=UTC),
            False,
        ),
    ],
    ids=["no-since", "off", "before-since", "at-since", "off-after-since"],
)
def test_enabled_for(settings, action_at, enabled):
    assert settings.enabled_for(action_at) is enabled


# --------------------------------------------------------------------------- bad catalogs

SYSTEM_PROBLEMS = {
    "bad-mode": (
        "stripe: {mode: sometimes}",
        "billing_systems.stripe.mode: 'sometimes' is not one of off, dry_run, live",
    ),
    "mode-on": ("stripe: {mode: on}", "billing_systems.stripe.mode: True is not one of"),
    "since-not-a-time": (
        "stripe: {since: yesterday}",
        "billing_systems.stripe.since: 'yesterday' is not an ISO-8601 timestamp",
    ),
    "live-without-since": (
        "chargebee: {mode: live}",
        "billing_systems.chargebee.since: required when mode is live",
    ),
    "bad-when": (
        "chargebee: {cancel: {when: end_of_term}}",
        "billing_systems.chargebee.cancel.when: 'end_of_term' is not one of period_end, immediately",
    ),
    "bad-scope": (
        "stripe: {cancel: {scope: account}}",
        "billing_systems.stripe.cancel.scope: 'account' is not one of subscription, customer",
    ),
    "bad-prorate": (
        "stripe: {cancel: {prorate: maybe}}",
        "billing_systems.stripe.cancel.prorate: 'maybe' is not one of true, false",
    ),
    "prorate-int": (
        "stripe: {cancel: {prorate: 1}}",
        "billing_systems.stripe.cancel.prorate: 1 is not one of true, false",
    ),
    "bad-refund": (
        "recurly: {cancel: {when: immediately, refund: some}}",
        "billing_systems.recurly.cancel.refund: 'some' is not one of none, partial, full",
    ),
    "refund-at-period-end": (
        "recurly: {cancel: {refund: full}}",
        "billing_systems.recurly.cancel.refund: a refund needs when: immediately",
    ),
    "option-of-another-system": (
        "chargebee: {cancel: {refund: full}}",
        "billing_systems.chargebee.cancel.refund: unknown key",
    ),
    "typo-in-system": ("stripe: {mdoe: live}", "billing_systems.stripe.mdoe: unknown key"),
    "unknown-system": (
        "paypal: {mode: live}",
        "billing_systems.paypal: unknown key (expected one of stripe, recurly, chargebee)",
    ),
    "system-not-a-mapping": (
        "stripe: live",
        "billing_systems.stripe: expected a mapping, got 'live'",
    ),
}

OFFER_PROBLEMS = {
    "plan-currency-not-a-code": (
        "down: {type: plan_change, plan: {usd: basic}}",
        "offers.down.plan.usd: expected a currency code such as USD",
    ),
    "plan-per-currency-empty-id": (
        "down: {type: plan_change, stripe: {plan: {USD: ''}}, plan: b}",
        "offers.down.stripe.plan.USD: expected a plan id, got ''",
    ),
    "unknown-type": (
        "x: {type: refund}",
        "offers.x.type: 'refund' is unknown (expected one of pause, discount, extension, plan_change, custom)",
    ),
    "missing-type": ("x: {coupon: A}", "offers.x.type: missing"),
    "coupon-missing-on-one-system": (
        "save50: {type: discount, stripe: {coupon: A}, recurly: {coupon: B}}",
        "offers.save50.chargebee.coupon: required for a discount offer",
    ),
    "typo-cupon": (
        "save50: {type: discount, coupon: A, cupon: A}",
        "offers.save50.cupon: unknown key",
    ),
    "typo-cupon-in-system": (
        "save50: {type: discount, coupon: A, stripe: {cupon: B}}",
        "offers.save50.stripe.cupon: unknown key",
    ),
    "parameter-of-another-type": (
        "e: {type: extension, days: 3, coupon: A}",
        "offers.e.coupon: unknown key",
    ),
    "plan-not-a-string": (
        "d: {type: plan_change, plan: 42}",
        "offers.d.plan: expected str, got 42",
    ),
    "empty-coupon": ("s: {type: discount, coupon: ''}", "offers.s.coupon: expected str, got ''"),
    "bad-interval": (
        "p: {type: pause, duration: 1, interval: fortnight}",
        "offers.p.interval: 'fortnight' is not one of day, week, month",
    ),
    "bad-interval-in-system": (
        "p: {type: pause, duration: 1, interval: month, recurly: {interval: year}}",
        "offers.p.recurly.interval: 'year' is not one of day, week, month",
    ),
    "zero-duration": (
        "p: {type: pause, duration: 0, interval: month}",
        "offers.p.duration: must be at least 1, got 0",
    ),
    "negative-days-in-system": (
        "e: {type: extension, days: 14, stripe: {days: -3}}",
        "offers.e.stripe.days: must be at least 1, got -3",
    ),
    "unknown-extension-method": (
        "e: {type: extension, days: 14, stripe: {method: free_month}}",
        "offers.e.stripe.method: 'free_month' is not one of pause_collection, trial_end",
    ),
    "extension-method-outside-stripe": (
        "e: {type: extension, days: 14, method: trial_end}",
        "offers.e.method: only Stripe has extension methods (set it under stripe)",
    ),
    "bool-duration": (
        "p: {type: pause, duration: true, interval: day}",
        "offers.p.duration: expected int, got True",
    ),
    "text-duration": (
        "p: {type: pause, duration: '1', interval: day}",
        "offers.p.duration: expected int, got '1'",
    ),
    "offer-not-a-mapping": ("x: pause", "offers.x: expected a mapping, got 'pause'"),
}

FILE_PROBLEMS = {
    "top-level-list": (
        "- stripe\n- recurly\n",
        "(top level): expected a mapping with billing_systems and offers",
    ),
    "top-level-scalar": ("just text\n", "(top level): expected a mapping"),
    "unknown-top-level-key": (
        "offer: {}\n",
        "offer: unknown key (expected one of billing_systems, offers)",
    ),
    "offers-not-a-mapping": ("offers: [save50]\n", "offers: expected a mapping, got ['save50']"),
}


def _cases(problems: dict[str, tuple[str, str]], section: str | None):
    for case_id, (body, expected) in problems.items():
        text = f"{section}:\n  {body}\n" if section else body
        yield pytest.param(text, expected, id=case_id)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        *_cases(SYSTEM_PROBLEMS, "billing_systems"),
        *_cases(OFFER_PROBLEMS, "offers"),
        *_cases(FILE_PROBLEMS, None),
    ],
)
def test_bad_catalog_is_refused_naming_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    message = problems_of(path)
    assert f"  {path}: {expected}" in message
    assert message.startswith(f"write-back catalog {path} has ")


@pytest.mark.parametrize(
    "since", ["2026-01-01T00:00:00", "'2026-01-01T00:00:00'", "2026-01-01", "'2026-01-01 08:00'"]
)
def test_since_without_time_zone_is_refused(tmp_path, since):
    path = write(tmp_path, f"billing_systems:\n  stripe: {{mode: live, since: {since}}}\n")
    [problem] = problems_of(path).splitlines()[1:]
    assert problem.startswith(f"  {path}: billing_systems.stripe.since: ")
    assert problem.endswith("has no time zone (write it in UTC, ending in Z)")


def test_every_problem_is_reported_together_once(tmp_path):
    path = write(
        tmp_path,
        "billing_systems:\n"
        "  stripe: {mode: live}\n"
        "  recurly: {cancel: {refund: full}}\n"
        "offers:\n"
        "  x: {type: refund}\n"
        "  save50: {type: discount, cupon: SAVE50}\n"
        "  p: {type: pause, duration: 0, interval: month}\n",
    )
    message = problems_of(path)
    expected = [
        "billing_systems.stripe.since: required when mode is live",
        "billing_systems.recurly.cancel.refund: a refund needs when: immediately",
        "offers.x.type: 'refund' is unknown",
        "offers.save50.cupon: unknown key",
        *(
            f"offers.save50.{system}.coupon: required for a discount offer"
            for system in BILLING_SYSTEMS
        ),
        "offers.p.duration: must be at least 1, got 0",  # shared: reported once, not per system
    ]
    lines = message.splitlines()[1:]
    assert len(lines) == len(expected)
    assert message.splitlines()[0] == f"write-back catalog {path} has {len(expected)} problem(s):"
    for problem in expected:
        assert sum(line.startswith(f"  {path}: {problem}") for line in lines) == 1, problem


def test_stripe_extension_method_is_an_offer_option(tmp_path):
    path = write(
        tmp_path,
        "offers:\n"
        "  e: {type: extension, days: 14, stripe: {method: trial_end}}\n"
        "  f: {type: extension, days: 7}\n",
    )
    offers = load_catalog(path).offers
    assert offers["e"].for_system("stripe") == {"days": 14, "method": "trial_end"}
    assert offers["e"].for_system("recurly") == {"days": 14}
    assert offers["f"].for_system("stripe") == {"days": 7}  # the writer's default applies


def test_invalid_yaml_is_refused(tmp_path):
    path = write(tmp_path, "offers: {save50: [\n")
    assert problems_of(path).startswith(f"{path}: not valid YAML: ")


def test_missing_file_is_refused(tmp_path):
    path = tmp_path / "nowhere.yml"
    assert problems_of(path) == f"{path}: no such write-back catalog file"


def test_live_with_a_null_since_is_refused_too(tmp_path):
    """`since: null` would mean "from the beginning": the history enabling never replays."""
    path = write(tmp_path, "billing_systems:\n  stripe: {mode: live, since: null}\n")
    assert "billing_systems.stripe.since: required when mode is live" in problems_of(path)


def test_a_null_parameter_is_not_set(tmp_path):
    path = write(tmp_path, "offers:\n  s: {type: discount, coupon: A, stripe: {coupon: null}}\n")
    assert load_catalog(path).offers["s"].for_system("stripe") == {"coupon": "A"}


# --------------------------------------------------------------------------- the JSON Schema


def test_check_prints_the_models_json_schema():
    result = CliRunner().invoke(writebacks, ["check", "--schema"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed == json_schema()
    assert printed.pop("$schema") == "https://json-schema.org/draft/2020-12/schema"
    assert printed == CatalogFile.model_json_schema()


def test_check_passes_the_shipped_catalog():
    result = CliRunner().invoke(writebacks, ["check", "--catalog", str(DEFAULT_CATALOG)])
    assert result.exit_code == 0, result.output
    assert result.output.endswith(f"{DEFAULT_CATALOG}: ok\n")


def test_the_schema_accepts_the_shipped_catalog():
    shipped = yaml.safe_load(DEFAULT_CATALOG.read_text())
    jsonschema.Draft202012Validator(json_schema()).validate(shipped)


@pytest.mark.parametrize(
    "document",
    [
        {"offer": {}},
        {"billing_systems": {"paypal": {}}},
        {"billing_systems": {"stripe": {"mode": "sometimes"}}},
        {"billing_systems": {"chargebee": {"cancel": {"refund": "full"}}}},
        {"offers": {"x": {"type": "refund"}}},
        {"offers": {"s": {"type": "discount", "cupon": "A"}}},
        {"offers": {"p": {"type": "pause", "duration": 0, "interval": "month"}}},
        {"offers": {"e": {"type": "extension", "days": 3, "recurly": {"method": "trial_end"}}}},
    ],
    ids=lambda document: json.dumps(document),
)
def test_the_schema_refuses_what_the_loader_refuses(tmp_path, document):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(json_schema()).validate(document)
    problems_of(write(tmp_path, document))


def test_run_without_a_warehouse_names_the_file_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("RETENTION_WAREHOUSE", raising=False)
    missing = tmp_path / "absent.duckdb"
    result = CliRunner().invoke(writebacks, ["run", "--database", str(missing)])
    assert result.exit_code == 1
    assert f"no warehouse at {missing}" in result.output
    assert "retention extract" in result.output
    assert not missing.exists()  # not created empty by the attempt
