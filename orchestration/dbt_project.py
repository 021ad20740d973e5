"""The dbt project as Dagster sees it, alone in its module so that a build step can
prepare the manifest without loading any asset (`make manifest`, or
`dagster-dbt project prepare-and-package --file orchestration/dbt_project.py`).

`@dbt_assets` reads `dbt_project/target/manifest.json`, so the manifest must exist and
match the models when the definitions load. `ensure_manifest` parses the project when
the manifest is missing or older than any project file (`make manifest` parses
unconditionally, e.g. after changing RETENTION_WAREHOUSE): without that, a fresh clone
could not load the definitions, and a model edited since the last parse would run a
graph that no longer exists. It runs when the dbt assets are built
(`orchestration.models.dbt_models`), never on import: importing this module, or any
that imports it, starts no dbt. (This replaces dagster-dbt's `prepare_if_dev`, which
parses on every load under `dagster dev`, run workers included, and never elsewhere.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from dagster_dbt import DbtProject
from filelock import FileLock

from orchestration.settings import DBT_PROJECT_DIR

# What a parse reads; a newer file than the manifest means the manifest is stale.
_PARSED_FOLDERS = ("models", "macros", "seeds", "tests", "snapshots", "analyses")
_PARSED_FILES = ("dbt_project.yml", "profiles.yml", "packages.yml", "dependencies.yml")


def _dbt_executable() -> str:
    """The dbt beside the interpreter running Dagster (the project's venv), so runs do
    not depend on PATH (dagster-dbt looks for a bare `dbt` on it)."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else shutil.which("dbt") or "dbt"


DBT_EXECUTABLE = _dbt_executable()
retention_dbt = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def _project_files(project_dir: Path) -> list[Path]:
    files = [project_dir / name for name in _PARSED_FILES if (project_dir / name).exists()]
    for folder in _PARSED_FOLDERS:
        files.extend(p for p in (project_dir / folder).rglob("*") if p.is_file())
    return files


def manifest_is_current(project: DbtProject = retention_dbt) -> bool:
    """The manifest exists and is newer than every file dbt parses (a cheap check of
    modification times, before paying for a parse)."""
    manifest = project.manifest_path
    if not manifest.exists():
        return False
    parsed_at = manifest.stat().st_mtime
    return all(p.stat().st_mtime <= parsed_at for p in _project_files(project.project_dir))


def _parse(project: DbtProject) -> None:
    """`dbt parse` as a plain subprocess: dagster-dbt's own prepare step costs three
    times as long here, as it also loads the project into this process."""
    subprocess.run(
        [
            DBT_EXECUTABLE,
            "parse",
            "--quiet",
            "--project-dir",
            str(project.project_dir),
            "--profiles-dir",
            str(project.profiles_dir),
            "--target-path",
            str(project.manifest_path.parent),
        ],
        check=True,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
    )


def _parse_lock(project: DbtProject) -> FileLock:
    """One parse at a time into target/: a code server and a run worker (or two test
    processes) may find the manifest stale together."""
    project.manifest_path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(project.manifest_path.with_name("manifest.parse-lock"), timeout=300)


def ensure_manifest(project: DbtProject = retention_dbt) -> Path:
    """Parse when the manifest is missing or stale (partial parsing keeps it to seconds;
    checked again under the lock, so a process that waited for another's parse does not
    repeat it). Returns the manifest's path."""
    if not manifest_is_current(project):
        with _parse_lock(project):
            if not manifest_is_current(project):
                _parse(project)
    return project.manifest_path
