"""The limit the marts bench measures dbt against: dbt's own SQL as ONE DuckDB statement.

The SQL dbt compiled for the marts and every model under them (`dbt compile` writes it to
the manifest), each model a CTE named after it and every reference to a model's relation
replaced by that name, in one `create table` with the marts' rows one after the other
(column `mart` says whose). It is the project's SQL, not a second copy of the rules:
what it leaves out is only how dbt runs them (a process, a statement per model, the
tables and views between models). Sources and seeds stay the tables dbt reads.
"""

from __future__ import annotations

import json
from graphlib import TopologicalSorter
from pathlib import Path


def one_statement(manifest: Path, marts: tuple[str, ...]) -> str:
    """`create table bench.one_statement` from the compiled models in `manifest`."""
    nodes = json.loads(manifest.read_text())["nodes"]
    graph: dict[str, list[str]] = {}
    todo = [f"model.retention.{mart}" for mart in marts]
    while todo:
        if (uid := todo.pop()) not in graph:
            graph[uid] = [d for d in nodes[uid]["depends_on"]["nodes"] if d.startswith("model.")]
            todo += graph[uid]
    ctes = []
    for uid in TopologicalSorter(graph).static_order():
        code = nodes[uid]["compiled_code"]
        for other in graph:
            code = code.replace(nodes[other]["relation_name"], nodes[other]["name"])
        ctes.append(f"{nodes[uid]['name']} as (\n{code}\n)")
    body = ",\n".join(ctes)
    rows = "\nunion all by name\n".join(f"select '{m}' as mart, * from {m}" for m in marts)
    return f"create or replace table bench.one_statement as\nwith\n{body}\n{rows}\n"
