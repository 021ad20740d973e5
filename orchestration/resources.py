"""Dagster resources: the tools (dlt, dbt), the warehouse file, the drop folder and where
each billing system points.

Values come from the environment through `EnvVar` when set (resolved in each run's own
process, never written into the definitions or the run storage), else the project's
defaults. Billing keys are the `billing` resource's fields, `EnvVar`s of the variables dlt
reads (`SOURCES__<SYSTEM>__API_KEY`, ...); what no field gives is read from dlt's
providers when a run starts, `.dlt/secrets.toml` included, exactly as `retention extract`
reads it (`billing_clients.targets`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import Config, ConfigurableResource
from dagster_dbt import DbtCliResource
from dagster_dlt import DagsterDltResource
from dagster_duckdb import DuckDBResource
from pydantic import Field

from billing_clients.targets import (
    ENVIRONMENT_ENV,
    SANDBOX_KEY_ENV,
    DltSettings,
    Target,
    resolve_target,
    variable,
)
from orchestration.dbt_project import DBT_EXECUTABLE, retention_dbt
from orchestration.settings import (
    BILLING_SYSTEMS,
    DEFAULT_DATABASE,
    DEFAULT_DROP_FOLDER,
    DROP_FOLDER_ENV,
    DUCKDB_PATH_ENV,
    env_or_default,
)


class DropFolder(ConfigurableResource):
    """The folder the cancel page drops exit-session files into (JSON Lines, CSV,
    Parquet). The exit-sessions load and the sensor that notices new files share it."""

    path: str

    def files(self) -> list[Path]:
        """The files the exit-sessions source reads (or quarantines); none if the folder is
        absent, so a sensor waits quietly for the folder instead of failing every tick."""
        from dlt_sources.exit_sessions import drop_files

        return drop_files(Path(self.path))


class SystemTarget(Config):
    """One billing system's settings (`SOURCES__<SYSTEM>__<FIELD>`); None: dlt's providers."""

    environment: str | None = None
    api_key: str | None = None
    base_url: str | None = None
    site: str | None = None


class BillingTargets(ConfigurableResource):
    """Where the loads and the write-backs point, per billing system: the fields given here
    (`EnvVar`s in a deployment; literal values in a test), then dlt's providers."""

    environment: str | None = None
    sandbox_api_key: str | None = None
    systems: dict[str, SystemTarget] = Field(default_factory=dict)

    def settings(self) -> DltSettings:
        """The fields as the variables they stand for, over dlt's providers."""
        given = {ENVIRONMENT_ENV: self.environment, SANDBOX_KEY_ENV: self.sandbox_api_key}
        for system, fields in self.systems.items():
            given |= {variable(system, k): v for k, v in fields.model_dump().items()}
        return DltSettings({name: value for name, value in given.items() if value})

    def target(self, system: str) -> Target:
        return resolve_target(system, self.settings())


def billing_targets(env: Mapping[str, str] = os.environ) -> BillingTargets:
    """An `EnvVar` field for every billing variable set in `env`: the UI shows which
    variable each value comes from, never the value. The unset ones stay None, so dlt's
    providers (`.dlt/secrets.toml`) still give them when the run starts."""

    def field(name: str) -> str | None:
        return env_or_default(name, None, env)

    return BillingTargets(
        environment=field(ENVIRONMENT_ENV),
        sandbox_api_key=field(SANDBOX_KEY_ENV),
        systems={
            system: SystemTarget(
                **{name: field(variable(system, name)) for name in SystemTarget.model_fields}
            )
            for system in BILLING_SYSTEMS
        },
    )


def build_resources(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The resources every asset, job and sensor of the code location uses."""
    return {
        "dlt": DagsterDltResource(),
        "dbt": DbtCliResource(project_dir=retention_dbt, dbt_executable=DBT_EXECUTABLE),
        "duckdb": DuckDBResource(
            database=env_or_default(DUCKDB_PATH_ENV, str(DEFAULT_DATABASE), env)
        ),
        "drop_folder": DropFolder(
            path=env_or_default(DROP_FOLDER_ENV, str(DEFAULT_DROP_FOLDER), env)
        ),
        "billing": billing_targets(env),
    }
