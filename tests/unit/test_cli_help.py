"""Every command of `retention` has a whole summary line in its group's help (click cuts a
long first sentence into `…run...`)."""

from __future__ import annotations

import click
from click.testing import CliRunner

from retention_cli import main


def _groups(group: click.Group, path: tuple[str, ...] = ()):
    yield path, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _groups(command, (*path, name))


def test_no_command_summary_is_cut_off():
    for path, group in _groups(main):
        result = CliRunner().invoke(main, [*path, "--help"], terminal_width=80)
        assert result.exit_code == 0, result.output
        commands = result.output.split("Commands:\n", 1)[1].splitlines()
        assert len(commands) == len(group.commands)
        cut = [line for line in commands if line.rstrip().endswith("...")]
        assert not cut, f"retention {' '.join(path)} --help cuts: {cut}"


def test_extract_help_says_where_sources_point_and_where_bad_rows_go():
    output = CliRunner().invoke(main, ["extract", "--help"]).output
    assert "SOURCES__<SYSTEM>__API_KEY" in output and "retention sandbox serve" in output
    assert "exit_sessions_quarantine" in output
