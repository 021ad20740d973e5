"""The `retention` command: one entry point for the sandbox, loads, models and the demo."""

from __future__ import annotations

import click

from sandbox.cli import sandbox


@click.group()
@click.version_option(package_name="retention-data")
def main() -> None:
    """Retention-data pipeline: billing sandbox, extraction, models, orchestration."""


main.add_command(sandbox)


if __name__ == "__main__":
    main()
