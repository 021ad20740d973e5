"""Where a run points, read as dlt reads its settings: the environment, then the project's
`.dlt/secrets.toml` and `config.toml`; and the Dagster `billing` resource, whose fields
name the variables (`EnvVar`) and win over dlt's providers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dagster import EnvVar
from dlt.common.configuration.container import Container
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

from billing_clients.targets import TargetError, resolve_target
from orchestration.resources import BillingTargets, SystemTarget, billing_targets
from writebacks.systems import WRITERS, writer_for

KEY = "sk_live_from_secrets_toml"
SETTINGS = (
    "RETENTION_ENVIRONMENT",
    "SANDBOX_API_KEY",
    *(f"SOURCES__STRIPE__{name}" for name in ("ENVIRONMENT", "API_KEY", "BASE_URL", "SITE")),
)


class RecordingWriter:
    """Stands in for a system's writer: what it was given."""

    def __init__(self, api_key: str, base_url: str | None) -> None:
        self.api_key, self.base_url = api_key, base_url


def _reload_dlt_providers() -> None:
    """dlt reads its TOML files once per process; a test that changes them says so."""
    Container()[PluggableRunContext].reload_providers()


@pytest.fixture
def dlt_project(tmp_path) -> Iterator[Callable[..., Path]]:
    """Factory: `dlt_project(secrets=..., config=...)` writes a project's `.dlt/` files,
    points dlt at the project (DLT_PROJECT_DIR) with none of the settings in the
    environment, and returns the `.dlt` folder; dlt reads the real project again after."""
    settings = tmp_path / ".dlt"
    settings.mkdir()
    with pytest.MonkeyPatch.context() as env:
        for name in SETTINGS:
            env.delenv(name, raising=False)
        env.setenv("DLT_PROJECT_DIR", str(tmp_path))

        def write(secrets: str = "", config: str = "") -> Path:
            (settings / "secrets.toml").write_text(secrets)
            (settings / "config.toml").write_text(config)
            _reload_dlt_providers()
            return settings

        yield write
    _reload_dlt_providers()


def test_a_key_only_in_secrets_toml_points_the_source_and_the_writer(dlt_project, monkeypatch):
    dlt_project(
        secrets=f'[sources.stripe]\napi_key = "{KEY}"\n',
        config='retention_environment = "live"\n\n[sources.stripe]\nbase_url = "http://x:1"\n',
    )
    target = resolve_target("stripe")
    assert (target.api_key, target.base_url, target.is_sandbox) == (KEY, "http://x:1", False)
    monkeypatch.setitem(WRITERS, "stripe", (__name__, "RecordingWriter"))
    writer = writer_for("stripe")
    assert (writer.api_key, writer.base_url) == (KEY, "http://x:1")


def test_the_environment_wins_over_secrets_toml(dlt_project, monkeypatch):
    dlt_project(secrets=f'[sources.stripe]\napi_key = "{KEY}"\nenvironment = "live"\n')
    monkeypatch.setenv("SOURCES__STRIPE__API_KEY", "sk_live_from_the_environment")
    assert resolve_target("stripe").api_key == "sk_live_from_the_environment"


def test_a_key_in_config_toml_is_no_secret_and_the_error_says_where_dlt_looks(dlt_project):
    """dlt keeps secrets out of config.toml; live without a key names the variable and the
    secrets.toml dlt would have read."""
    folder = dlt_project(config=f'[sources.stripe]\napi_key = "{KEY}"\nenvironment = "live"\n')
    with pytest.raises(TargetError) as error:
        resolve_target("stripe")
    message = str(error.value)
    assert message.startswith("stripe is live but SOURCES__STRIPE__API_KEY is not set")
    assert f"[sources.stripe] in {folder.resolve()}/secrets.toml" in message
    assert "DLT_PROJECT_DIR" in message and KEY not in message


def test_a_key_in_secrets_toml_while_on_the_sandbox_is_refused(dlt_project):
    dlt_project(secrets=f'[sources.stripe]\napi_key = "{KEY}"\n')
    with pytest.raises(TargetError, match="SOURCES__STRIPE__API_KEY is set but stripe points"):
        resolve_target("stripe")


def test_the_resource_names_the_variables_that_are_set_and_leaves_the_rest_to_dlt():
    env = {"RETENTION_ENVIRONMENT": "live", "SOURCES__STRIPE__API_KEY": KEY}
    resource = billing_targets(env)
    assert resource.environment == EnvVar("RETENTION_ENVIRONMENT")
    assert resource.systems["stripe"].api_key == EnvVar("SOURCES__STRIPE__API_KEY")
    assert resource.systems["stripe"].base_url is None
    assert resource.systems["recurly"] == SystemTarget()
    assert resource.sandbox_api_key is None


def test_the_resource_fields_win_over_dlt(dlt_project):
    dlt_project(secrets=f'[sources.stripe]\napi_key = "{KEY}"\n')
    resource = BillingTargets(
        environment="live", systems={"stripe": SystemTarget(base_url="http://x:1")}
    )
    target = resource.target("stripe")  # the key from secrets.toml, the rest from the fields
    assert (target.api_key, target.base_url, target.is_sandbox) == (KEY, "http://x:1", False)
    sandbox = BillingTargets(systems={"stripe": SystemTarget(environment="sandbox")})
    with pytest.raises(TargetError, match="is set but stripe points at the local sandbox"):
        sandbox.target("stripe")
