"""collector.yml: every problem named with its place, secrets only from the environment."""

from __future__ import annotations

import pytest

from collector.settings import DEFAULT_CONFIG, ConfigError, load_settings, parse_config

GOOD = """
apps:
  shop:
    secret_env: SHOP_SECRET
allowed_origins: [https://shop.test]
"""


def test_the_example_config_is_valid():
    config = parse_config(DEFAULT_CONFIG.read_text(), str(DEFAULT_CONFIG))
    assert config.replay_window_seconds == 300 and config.max_body_bytes == 16 * 1024


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("apps: {}", "apps"),
        ("apps: {shop: {secret: abc}}", r"apps\.shop\.secret"),
        ("apps: {shop: {secret_env: 'not a name'}}", r"apps\.shop\.secret_env"),
        (
            GOOD + "allowed_origins: [https://shop.test/cancel]",
            r"allowed_origins: .*shop\.test/cancel.* is not an origin",
        ),
        (GOOD + "replay_window_seconds: 0", "replay_window_seconds"),
        (GOOD + "max_body_byte: 10", "max_body_byte"),
        ("apps: [", "not valid YAML"),
    ],
)
def test_each_problem_is_named(text, named):
    with pytest.raises(ConfigError, match=named):
        parse_config(text, "collector.yml")


def test_secrets_come_from_the_named_variables_and_never_show(tmp_path):
    path = tmp_path / "collector.yml"
    path.write_text(GOOD)
    with pytest.raises(ConfigError, match="SHOP_SECRET"):
        load_settings(path, {})
    settings = load_settings(path, {"SHOP_SECRET": "s3cr3t-value"})
    assert settings.secrets == {"shop": b"s3cr3t-value"}
    assert "s3cr3t-value" not in repr(settings)


def test_a_missing_file_says_how_to_point_at_one(tmp_path):
    with pytest.raises(ConfigError, match="RETENTION_COLLECTOR_CONFIG"):
        load_settings(tmp_path / "none.yml", {})


def test_serve_refuses_a_bad_config_with_the_reason_and_no_traceback(tmp_path):
    from click.testing import CliRunner

    from collector.cli import collector_command

    path = tmp_path / "collector.yml"
    path.write_text(GOOD)
    runner = CliRunner()
    missing = runner.invoke(collector_command(), ["serve", "--config", str(tmp_path / "x.yml")])
    unset = runner.invoke(collector_command(), ["serve", "--config", str(path)], env={})
    assert missing.exit_code == 1 and "not found" in missing.output
    assert unset.exit_code == 1 and "SHOP_SECRET" in unset.output
    assert "Traceback" not in missing.output + unset.output
