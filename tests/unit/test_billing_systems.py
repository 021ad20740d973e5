"""One list of billing systems in Python (billing_clients.systems), and dbt's copy of it:
dbt cannot import Python, so the test reads dbt's files as text and fails when the two
homes drift apart."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from billing_clients.systems import BILLING_SYSTEMS

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
MACRO = DBT_PROJECT_DIR / "macros" / "billing_systems.sql"
# The variable's default where dbt reads it (an empty default only names it in an error).
DEFAULT = re.compile(r"env_var\('RETENTION_BILLING_SYSTEMS', '([^']+)'\)")


def test_the_macro_knows_the_python_list_and_defaults_to_it():
    text = MACRO.read_text()
    [known] = re.findall(r"set known = \[([^\]]*)\]", text)
    assert tuple(re.findall(r"'(\w+)'", known)) == BILLING_SYSTEMS
    assert DEFAULT.findall(text) == [",".join(BILLING_SYSTEMS)]


def test_the_projects_defaults_and_switches_name_the_python_list():
    text = (DBT_PROJECT_DIR / "dbt_project.yml").read_text()
    defaults = DEFAULT.findall(text)
    assert defaults == [",".join(BILLING_SYSTEMS)] * 2 * len(BILLING_SYSTEMS)
    project = yaml.safe_load(text)
    staging = project["models"]["retention"]["staging"]
    sources = project["sources"]["retention"]["staging"]
    for switches in (staging, sources):
        assert tuple(k for k in switches if not k.startswith("+")) == BILLING_SYSTEMS
        for system in BILLING_SYSTEMS:
            assert f"'{system}' in env_var" in switches[system]["+enabled"]


def test_every_system_has_its_staging_folder():
    folders = {p.name for p in (DBT_PROJECT_DIR / "models" / "staging").iterdir() if p.is_dir()}
    assert folders >= set(BILLING_SYSTEMS)
