"""webhooks.yml: the shipped file sends nothing, a missing file is no endpoints, a bad file
is refused at load with every problem named by file and key path, secrets come from the
variables the file names (and never show in a repr), and the JSON Schema is the models'."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from webhooks.config import (
    DEFAULT_WEBHOOKS,
    WEBHOOKS_ENV,
    Delivery,
    WebhooksConfigError,
    json_schema,
    load_config,
    webhooks_path,
)

ENV = {"CRM_SECRET": "s3cret-value"}


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "webhooks.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def commented_example() -> dict:
    """The example the shipped file carries in comments, uncommented."""
    lines = DEFAULT_WEBHOOKS.read_text().splitlines()
    start = lines.index("# endpoints:")
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("# Each request"))
    return yaml.safe_load("\n".join(line[2:] for line in lines[start:end]))


def test_the_shipped_file_has_no_endpoint_so_nothing_is_sent() -> None:
    config = load_config(DEFAULT_WEBHOOKS, env={})
    assert config.endpoints == {}
    assert config.subscribers("exit_session.canceled") == []
    assert not config.wants("validation.")


def test_a_missing_file_is_no_endpoints(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.yml", env={}).endpoints == {}


def test_the_variable_names_the_file(tmp_path: Path) -> None:
    assert webhooks_path({}) == DEFAULT_WEBHOOKS
    assert webhooks_path({WEBHOOKS_ENV: str(tmp_path / "x.yml")}) == tmp_path / "x.yml"


def test_the_commented_example_loads_and_routes_events(tmp_path: Path) -> None:
    document = commented_example()
    secret_env = document["endpoints"]["crm"]["secret_env"]
    config = load_config(write(tmp_path, document), env={secret_env: "abc"})
    crm = config.endpoints["crm"]
    assert crm.secret == b"abc"
    assert crm.takes("exit_session.canceled")
    assert crm.takes("validation.invalid_save")
    assert not crm.takes("exit_session.started")
    assert config.wants("validation.")
    # The defaults the comment shows are the models' defaults.
    assert config.delivery == Delivery()
    jsonschema.validate(document, json_schema())


def test_every_problem_is_named_with_its_key_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "endpoints": {
                "crm": {
                    "url": "ftp://x",
                    "secret_env": "UNSET_SECRET",
                    "events": ["validation.valid_saves", "exit_session.*"],
                    "extra": 1,
                },
                "bad name": {"url": "http://localhost:1/x", "secret_env": 1, "events": []},
            },
            "delivery": {"max_attempts": 0, "timeout_seconds": "3", "wat": 2},
        },
    )
    with pytest.raises(WebhooksConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    expected = [
        "endpoints.crm.url: 'ftp://x' is not an http(s) URL with a host",
        "endpoints.crm.events.0: 'validation.valid_saves' matches no event type",
        "endpoints.crm.extra: unknown key (expected one of url, secret_env, events)",
        "endpoints.bad name: 'bad name' does not match",
        "endpoints.bad name.secret_env: expected str, got 1",
        "endpoints.bad name.events: expected at least one entry",
        "delivery.max_attempts: must be at least 1, got 0",
        "delivery.timeout_seconds: expected a number, got '3'",
        "delivery.wat: unknown key",
        "endpoints.crm.secret_env: UNSET_SECRET is not set",
    ]
    for problem in expected:
        assert f"{path}: {problem}" in message
    assert f"has {len(expected)} problem(s)" in message


def test_an_unset_secret_alone_refuses_the_file(tmp_path: Path) -> None:
    document = {
        "endpoints": {"crm": {"url": "https://h/x", "secret_env": "CRM_SECRET", "events": ["*"]}}
    }
    with pytest.raises(
        WebhooksConfigError, match=r"endpoints\.crm\.secret_env: CRM_SECRET is not set"
    ):
        load_config(write(tmp_path, document), env={"CRM_SECRET": ""})


def test_the_secret_never_shows_in_a_repr(tmp_path: Path) -> None:
    document = {
        "endpoints": {"crm": {"url": "https://h/x", "secret_env": "CRM_SECRET", "events": ["*"]}}
    }
    config = load_config(write(tmp_path, document), env=ENV)
    assert config.endpoints["crm"].secret == ENV["CRM_SECRET"].encode()
    assert ENV["CRM_SECRET"] not in repr(config)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("endpoints: [", "not valid YAML"),
        ("- a\n- b\n", "(top level): expected a mapping"),
        ("endpoints: 3\n", "endpoints: expected a mapping, got 3"),
    ],
)
def test_unreadable_files_are_refused_clearly(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "webhooks.yml"
    path.write_text(text)
    with pytest.raises(WebhooksConfigError, match=re.escape(problem)):
        load_config(path, env={})


def test_the_schema_is_valid_and_refuses_what_the_loader_refuses() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"endpoints": {"x": {"url": "https://h"}}}, schema)
