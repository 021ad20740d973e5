"""The Spark side of a marts bench point (`bench_marts.py --engine spark`): the point's
DuckDB raw tables as a lake of parquet folders, dbt on the spark target over them, and the
check that Spark's marts are DuckDB's.

The lake has the layout `register_raw_tables()` (dbt_project/macros/spark_raw.sql)
registers at the start of every dbt invocation on the spark target:
`<lake>/<dataset>/<table>/*.parquet`. Parquet files rather than dlt's Delta tables (which
the real landing writes): the bench copies a warehouse k times in DuckDB SQL instead of
extracting it, and after a vacuum a Delta table's folder is such parquet files anyway.

dbt-spark's `method: session` runs Spark inside dbt's process, but its JVM is a child of
that process (pyspark starts it), so the resource usage of the dbt process alone misses
Spark's work: `run_tree` samples the whole process tree instead.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from replicate import RAW_SCHEMAS

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SAMPLE_SECONDS = 0.2


def spark_env(folder: Path) -> dict[str, str]:
    """The spark target's settings for one point: its own metastore (embedded Derby: one
    JVM per folder) and its own lake, both inside the point's folder."""
    return {
        "RETENTION_WAREHOUSE": "spark",
        "RETENTION_SPARK_WAREHOUSE_DIR": str(folder / "spark-warehouse"),
        "RETENTION_SPARK_LAKE": str(folder / "lake"),
    }


def export_lake(con, lake: Path) -> dict[str, int]:
    """Each raw table of the open DuckDB warehouse (dlt's own `_dlt*` tables left out) as
    `<lake>/<dataset>/<table>/data.parquet`; returns the rows per table."""
    tables = con.sql(
        "select schema_name, table_name from duckdb_tables()"
        f" where schema_name in {RAW_SCHEMAS} and not starts_with(table_name, '_dlt')"
        " order by all"
    ).fetchall()
    rows = {}
    for schema, table in tables:
        folder = lake / schema / table
        folder.mkdir(parents=True, exist_ok=True)
        con.execute(f"copy {schema}.{table} to '{folder / 'data.parquet'}' (format parquet)")
        (count,) = con.sql(f"select count(*) from {schema}.{table}").fetchall()[0]
        rows[f"{schema}.{table}"] = count
    return rows


def _same_value(column: str, kind: str) -> str:
    """A column as both engines must agree on it: non-integer numbers to 6 decimals (Spark
    and DuckDB may differ in a double's last bits), anything else as DuckDB's type (Spark's
    timestamps read back from parquet as instants, compared in UTC)."""
    if kind in ("DOUBLE", "FLOAT", "REAL") or kind.startswith("DECIMAL"):
        return f'cast("{column}" as decimal(38, 6))'
    return f'cast("{column}" as {kind})'


def marts_check(con, tables: Path, marts: tuple[str, ...]) -> dict[str, list[int]]:
    """Per mart, DuckDB's (`marts.<mart>` in the open warehouse) against Spark's (its parquet
    folder under the spark warehouse's `tables/marts.db/`): [DuckDB rows, Spark rows,
    DuckDB EXCEPT ALL Spark, Spark EXCEPT ALL DuckDB]."""
    con.execute("set TimeZone = 'UTC'")

    def count(query: str) -> int:
        return con.sql(f"select count(*) from ({query})").fetchall()[0][0]

    agreement = {}
    for mart in marts:
        described = con.sql(f"describe marts.{mart}").fetchall()
        columns = ", ".join(_same_value(name, kind) for name, kind, *_ in described)
        duck = f"select {columns} from marts.{mart}"
        spark = f"select {columns} from read_parquet('{tables / 'marts.db' / mart}/*.parquet')"
        queries = (duck, spark, f"{duck} except all {spark}", f"{spark} except all {duck}")
        agreement[mart] = [count(query) for query in queries]
    return agreement


def _tree(root: int) -> list[int]:
    """`root` and every process descending from it, from each process's parent in /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:  # ended since the listing
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def _usage(pid: int) -> tuple[float, int] | None:
    """A process's own CPU seconds (user + system, not its children's) and resident bytes."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK, resident * PAGE


def run_tree(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> dict:
    """Run a process with its output to `log`: wall seconds, exit code, and, sampled every
    SAMPLE_SECONDS over the process and its descendants (the JVM), the CPU seconds (each
    process's last sample, summed) and the peak of their summed resident memory (MiB)."""
    started = time.perf_counter()
    cpu: dict[int, float] = {}
    peak = 0
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        while True:
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            resident = 0
            for member in _tree(proc.pid):
                if (usage := _usage(member)) is not None:
                    cpu[member] = usage[0]
                    resident += usage[1]
            peak = max(peak, resident)
            time.sleep(SAMPLE_SECONDS)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4
    return {
        "wall": time.perf_counter() - started,
        "cpu": sum(cpu.values()),
        "peak": peak / 2**20,
        "code": proc.returncode,
    }
