"""The package map, enforced: what each top-level package may import (issues #12, #16).

Every module is parsed, not imported, so imports inside functions count as much as those
at the top, and nothing runs. Production code (the packages below) never reaches the
sandbox, the demo or the tests; the layers below orchestration never import it; and no two
top-level packages import each other, however indirectly.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
PRODUCTION = (
    "statedb",
    "billing_clients",
    "dlt_sources",
    "writebacks",
    "webhooks",
    "collector",
    "orchestration",
)
# No production package imports these: the sandbox, the demo, the tests, and the
# `retention` command that puts production and development commands together.
NOT_FROM_PRODUCTION = {"sandbox", "demo", "tests", "retention_cli"}
# The layers: what each production package must not import besides.
FORBIDDEN = {
    # The state database's opener: below everything that shares the file.
    "statedb": {
        "billing_clients",
        "dlt_sources",
        "writebacks",
        "webhooks",
        "collector",
        "orchestration",
    },
    "billing_clients": {"dlt_sources", "writebacks", "webhooks", "collector", "orchestration"},
    "dlt_sources": {"writebacks", "webhooks", "collector", "orchestration"},
    "writebacks": {"dlt_sources", "webhooks", "collector", "orchestration"},
    "webhooks": {"dlt_sources", "writebacks", "collector", "orchestration"},
    "collector": {"orchestration"},
    "orchestration": set(),
}
# Of a package it may import, the only modules a package may use: the collector checks
# sessions with the exit-sessions contract (one home of the rule) and nothing else of the
# sources.
ONLY_MODULES = {"collector": {"dlt_sources": {"dlt_sources.exit_sessions.contract"}}}


def packages(root: Path = PROJECT_DIR) -> list[str]:
    """The project's top-level packages (folders with an `__init__.py`), tests included."""
    return sorted(p.name for p in root.iterdir() if (p / "__init__.py").is_file())


def imported_modules(path: Path, package: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in `path`; a relative import counts
    as its own package."""
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, package if node.level else node.module or ""


def imports_of(package: str, root: Path = PROJECT_DIR) -> dict[str, list[str]]:
    """The project's top-level packages `package` imports, each with where
    (`file:line module`)."""
    ours = set(packages(root))
    found: dict[str, list[str]] = {}
    for path in sorted((root / package).rglob("*.py")):
        name = path.relative_to(root).as_posix()
        for line, module in imported_modules(path, package):
            top = module.partition(".")[0]
            if top in ours and top != package:
                found.setdefault(top, []).append(f"{name}:{line} {module}")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one package (Tarjan's algorithm): each
    one is an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_packages_are_where_the_map_says():
    assert set(PRODUCTION) | {"sandbox", "demo", "retention_cli", "tests"} <= set(packages())


@pytest.mark.parametrize("package", PRODUCTION)
def test_production_imports_only_what_its_layer_may(package):
    imports = imports_of(package)
    wrong = {
        top: where
        for top, where in imports.items()
        if top in NOT_FROM_PRODUCTION | FORBIDDEN[package]
    }
    assert not wrong, f"{package} imports {wrong}"


@pytest.mark.parametrize("package", sorted(ONLY_MODULES))
def test_a_package_uses_only_the_modules_it_may_of_another(package):
    imports = imports_of(package)
    wrong = [
        where
        for top, modules in ONLY_MODULES[package].items()
        for where in imports.get(top, [])
        if where.rsplit(" ", 1)[1] not in modules
    ]
    assert not wrong, f"{package} imports {wrong}"


def test_no_import_cycle_between_top_level_packages():
    graph = {package: set(imports_of(package)) for package in packages()}
    assert cycles(graph) == []


def test_the_checks_see_lazy_relative_and_indirect_imports(tmp_path):
    """The checks themselves can fail: an import inside a function and a relative one are
    found, and a cycle through three packages is one group."""
    for name, source in {
        "low": "def f():\n    from high.deep import x\n",
        "high": "from . import sibling\nimport mid.part\n",
        "mid": "import low\n",
    }.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(source)
    assert imports_of("low", tmp_path) == {"high": ["low/__init__.py:2 high.deep"]}
    assert imports_of("high", tmp_path) == {"mid": ["high/__init__.py:2 mid.part"]}
    graph = {p: set(imports_of(p, tmp_path)) for p in packages(tmp_path)}
    assert cycles(graph) == [["high", "low", "mid"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
