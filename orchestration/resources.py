"""Dagster resources: the tools (dlt, dbt), the warehouse file and the drop folder.

Values come from the environment through `EnvVar` when set (resolved in each run's own
process, never written into the definitions), else the project's defaults. Billing API
keys are not resources: each billing source reads its own `SOURCES__<SYSTEM>__*`
variables when a run starts (`billing_clients.targets.resolve_target`), exactly as the
`retention extract` command does, so a key never passes through Dagster's config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from dagster_dbt import DbtCliResource
from dagster_dlt import DagsterDltResource
from dagster_duckdb import DuckDBResource

from orchestration.dbt_project import DBT_EXECUTABLE, retention_dbt
from orchestration.settings import (
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
    }
