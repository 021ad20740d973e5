"""The one home of the collector's settings: where its state database, configuration and
drop folder are (environment), and what collector.yml may say (a pydantic model naming
every problem). Secrets never live in the YAML: it names the environment variable that
holds each app's secret, read when the configuration is loaded."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PROJECT_DIR = Path(__file__).resolve().parent.parent
STATE_DB_ENV = "RETENTION_COLLECTOR_DB"
CONFIG_ENV = "RETENTION_COLLECTOR_CONFIG"
# The drop folder the exit-sessions source and its sensor read (dlt's variable for the
# source's `folder`): its one home, which orchestration/settings.py imports.
DROP_FOLDER_ENV = "SOURCES__EXIT_SESSIONS__FOLDER"
DEFAULT_STATE_DB = PROJECT_DIR / ".collector" / "collector.sqlite"
DEFAULT_CONFIG = PROJECT_DIR / "collector.yml"
DEFAULT_DROP_FOLDER = PROJECT_DIR / "drop"


def collector_db(environ: Mapping[str, str] = os.environ) -> Path:
    """The state database shared by the collector, the fast path and the webhook outbox."""
    return Path(environ.get(STATE_DB_ENV) or DEFAULT_STATE_DB)


def config_path(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def drop_folder(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get(DROP_FOLDER_ENV) or DEFAULT_DROP_FOLDER)


class App(BaseModel):
    """One cancel-flow app (site): the environment variable holding its signing secret."""

    model_config = ConfigDict(extra="forbid")
    secret_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class CollectorConfig(BaseModel):
    """collector.yml."""

    model_config = ConfigDict(extra="forbid")
    apps: dict[str, App] = Field(min_length=1)
    # Origins (scheme://host[:port]) whose pages may call the collector from a browser.
    allowed_origins: list[str] = Field(default_factory=list)
    # A landing's signed timestamp must be this close to now (either side: clock skew).
    replay_window_seconds: int = Field(default=300, gt=0)
    # An update (PATCH) may reuse the landing's signature this long after its timestamp:
    # a visitor may read the offer for minutes before deciding.
    update_window_seconds: int = Field(default=3600, gt=0)
    max_body_bytes: int = Field(default=16 * 1024, gt=0)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            parts = urlsplit(origin)
            if origin != "*" and (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or origin != f"{parts.scheme}://{parts.netloc}"
            ):
                raise ValueError(
                    f"{origin!r} is not an origin: write scheme://host[:port], no path"
                )
        return origins


@dataclass(frozen=True)
class CollectorSettings:
    """What the app needs: the validated configuration, the apps' secrets (read from the
    environment, never printed: repr hides them), the state database and drop folder."""

    config: CollectorConfig
    state_db: Path
    drop_folder: Path
    secrets: dict[str, bytes] = field(repr=False)
    # How often the publisher writes a segment of newly committed sessions.
    publish_interval_seconds: float = 1.0


class ConfigError(ValueError):
    """collector.yml or the environment it names is wrong; the message says what to fix."""


def parse_config(text: str, source: str) -> CollectorConfig:
    """The configuration from YAML text; every problem named with its path in the file."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    try:
        return CollectorConfig.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None


def read_secrets(config: CollectorConfig, environ: Mapping[str, str]) -> dict[str, bytes]:
    """Each app's secret from the environment variable the configuration names."""
    missing = [
        f"{app.secret_env} (app {app_id})"
        for app_id, app in config.apps.items()
        if not environ.get(app.secret_env)
    ]
    if missing:
        raise ConfigError(
            "set the signing secret of every app in the environment: "
            + ", ".join(missing)
            + " unset or empty"
        )
    return {app_id: environ[app.secret_env].encode() for app_id, app in config.apps.items()}


def load_settings(
    path: Path | None = None, environ: Mapping[str, str] = os.environ
) -> CollectorSettings:
    """Settings from collector.yml (`RETENTION_COLLECTOR_CONFIG`) and the environment."""
    path = path or config_path(environ)
    if not path.is_file():
        raise ConfigError(
            f"collector configuration {path} not found: copy collector.yml or set {CONFIG_ENV}"
        )
    config = parse_config(path.read_text(), str(path))
    return CollectorSettings(
        config=config,
        state_db=collector_db(environ),
        drop_folder=drop_folder(environ),
        secrets=read_secrets(config, environ),
    )
