"""`retention webhooks check`: the file's problems named and the exit code set, endpoints
listed without their secrets, the JSON Schema printed; the outbox commands on an empty
state database."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from click.testing import CliRunner

from orchestration.webhooks_cli import webhooks

GOOD = "endpoints:\n  crm:\n    url: https://crm.example/h\n    secret_env: CLI_SECRET\n    events: ['validation.*']\n"


def test_check_lists_the_endpoints_without_their_secret(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.yml"
    path.write_text(GOOD)
    result = CliRunner().invoke(
        webhooks, ["check", "--config", str(path)], env={"CLI_SECRET": "hush-123"}
    )
    assert result.exit_code == 0, result.output
    assert "crm" in result.output and "https://crm.example/h" in result.output
    assert "1 endpoint(s)" in result.output
    assert "hush-123" not in result.output


def test_check_names_every_problem_and_fails(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.yml"
    path.write_text(GOOD.replace("validation.*", "validations.*"))
    result = CliRunner().invoke(webhooks, ["check", "--config", str(path)], env={"CLI_SECRET": ""})
    assert result.exit_code == 1
    assert "endpoints.crm.events.0: 'validations.*' matches no event type" in result.output
    assert "endpoints.crm.secret_env: CLI_SECRET is not set" in result.output


def test_check_prints_the_schema() -> None:
    result = CliRunner().invoke(webhooks, ["check", "--schema"])
    jsonschema.Draft202012Validator.check_schema(json.loads(result.output))


def test_the_outbox_commands_on_an_empty_state_database(tmp_path: Path) -> None:
    state = ["--config", str(tmp_path / "none.yml"), "--state-db", str(tmp_path / "s.sqlite")]
    runner = CliRunner()
    assert "attempts 0" in runner.invoke(webhooks, ["deliver", *state]).output
    assert "0 dead letter(s)" in runner.invoke(webhooks, ["dead-letters", *state]).output
    assert "0 event(s) back" in runner.invoke(webhooks, ["redeliver", *state]).output


def test_no_command_summary_is_cut_off() -> None:
    output = CliRunner().invoke(webhooks, ["--help"], terminal_width=80).output
    commands = output.split("Commands:\n", 1)[1].splitlines()
    assert len(commands) == len(webhooks.commands)
    assert not [line for line in commands if line.rstrip().endswith("...")]
