"""The `retention` command: the production commands (`extract`, `writebacks`, from
orchestration, `webhooks` and `collector`) with the sandbox's and the demo's. Assembled here, outside
the production packages, so that orchestration never imports the sandbox or the demo."""

from __future__ import annotations

from pathlib import Path

import click

from collector.cli import collector_command
from demo.cli import demo
from orchestration.cli import extract, load_env_file
from orchestration.webhooks_cli import webhooks
from orchestration.writebacks_cli import open_fast_path, writebacks
from sandbox.cli import sandbox


@click.group(
    commands=[sandbox, extract, writebacks, webhooks, collector_command(open_fast_path), demo]
)
@click.version_option(package_name="retention-data")
def main() -> None:
    """Retention-data pipeline: billing sandbox, extraction, models, orchestration."""
    load_env_file(Path.cwd() / ".env")
