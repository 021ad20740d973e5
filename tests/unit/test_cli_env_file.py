"""The `retention` CLI reads `.env` from the working directory, as `dagster dev` does."""

from __future__ import annotations

import os

from click.testing import CliRunner

from retention_cli import main


def test_env_file_reaches_the_commands_and_the_shell_wins(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(
        "SOURCES__STRIPE__API_KEY=sk_live_from_env_file\n"
        "SOURCES__RECURLY__API_KEY=from_env_file\n"
        "# a comment\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SOURCES__STRIPE__API_KEY", raising=False)
    monkeypatch.setenv("SOURCES__RECURLY__API_KEY", "from_shell")
    monkeypatch.setattr(os, "environ", os.environ.copy())  # undo what the CLI sets

    result = CliRunner().invoke(main, ["sandbox", "--help"])

    assert result.exit_code == 0, result.output
    assert os.environ["SOURCES__STRIPE__API_KEY"] == "sk_live_from_env_file"
    assert os.environ["SOURCES__RECURLY__API_KEY"] == "from_shell"
    assert "SOURCES__STRIPE__API_KEY" in result.stderr
    assert "sk_live_from_env_file" not in result.output + result.stderr


def test_no_env_file_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "environ", os.environ.copy())
    before = dict(os.environ)
    assert CliRunner().invoke(main, ["sandbox", "--help"]).exit_code == 0
    assert dict(os.environ) == before
