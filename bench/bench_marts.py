"""dbt's marts at scale beside two baselines of ONE DuckDB statement each: a scaling curve.

Data: a base warehouse of the project's generator (`retention sandbox generate`, seed 7,
`--customers`, default 10,000: about 11,900 subscriptions and 2,400 exit sessions) served
by the sandbox and loaded by `retention extract` (untimed; `--keep DIR` keeps it). Each
point of the curve (`--sizes`, in subscriptions) is k copies of the base's raw tables made
in DuckDB SQL (replicate.py: ids prefixed per copy, times kept), so shapes stay the
generator's at any size; the 1-copy point is the base itself, where dbt's fixed cost shows,
and the reference of the copies check (the marts of k copies = k x those of one).
Per point: `dbt seed`, `parse`, a run of the staging views and `compile` (untimed), then
- the limit: fct_exit_episodes and fct_repurchase_cohorts as one statement of dbt's own
  compiled SQL (one_statement.py; one_statement.sql in the point's dir);
- the hand-written baseline: the same two marts from the staging views, the intermediate
  and mart rules written by hand for speed (sql/hand_marts.sql);
- `dbt run --select +fct_exit_episodes +fct_repurchase_cohorts`, alternating with both (the
  machine's other load hits all alike); the ratios of dbt to each are the headline;
- with `--build`, `dbt run` of every model and `dbt build` (seed, models, tests);
- each baseline's rows against the dbt marts, and the copies check (EXCEPT ALL both ways).
dbt runs as the venv's CLI (as dagster-dbt runs it): wall time includes process start and
partial parsing; dbt's own elapsed time (run_results.json) is beside it. cpu is user+sys
and peak the peak RSS of each child process (each baseline runs in one). DuckDB runs with
its defaults (memory_limit 80% of RAM, spilling to `<file>.tmp` beside the warehouse), or
with `RETENTION_DUCKDB_MEMORY_LIMIT`, which the baselines read as dbt's profile does.
With `--engine spark`, each point then runs the same two marts on Spark (spark_point.py):
its raw tables exported to a parquet lake in the point's dir, `dbt seed` (untimed) and
`dbt run --select ...` on the spark target (`method: session`: Spark's JVM is a child of
dbt's process, so cpu and peak are those of the process tree, sampled), each invocation with
its on-run-start registration of the raw tables; then Spark's marts, read from their parquet
folders with DuckDB, against DuckDB's (EXCEPT ALL both ways, numbers to 6 decimals). The
curve then also shows both engines side by side and each one's growth from the base.
Each point's figures stay in DIR/copies_<k>/result.json; the curve printed at the end is
every point in DIR, so sizes can be run one invocation at a time.

Run: .venv/bin/python bench/bench_marts.py [--customers N] [--sizes 1,100000,1000000]
     [--repeat N] [--build] [--keep DIR] [--keep-points] [--engine spark]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from marts_report import BASELINES, curve, engines_curve, report, spark_report
from one_statement import one_statement
from replicate import copies_check, named_columns, replicate
from sandbox_process import drop_files, extract, generate, served
from spark_point import export_lake, marts_check, run_tree, spark_env

ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT = ROOT / "dbt_project"
HAND_SQL = Path(__file__).resolve().parent / "sql" / "hand_marts.sql"
PORTS = {"stripe": 12331, "recurly": 12332, "chargebee": 12333}
DBT_ENV = {"RETENTION_WAREHOUSE": "duckdb", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
MARTS = ("fct_exit_episodes", "fct_repurchase_cohorts")
SELECTED = tuple(f"+{mart}" for mart in MARTS)
COUNTED = [f"raw_{s}.{t}" for s in PORTS for t in ("subscriptions", "customers", "invoices")]
COUNTED += ["raw_exit_sessions.exit_sessions"]
COUNTED += [f"marts.{mart}" for mart in MARTS]


def run_child(argv: list[str], env: dict[str, str], log: Path) -> dict:
    """Run a process with stdout/stderr to `log`: wall and CPU seconds, peak RSS, exit code."""
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    return {
        "wall": time.perf_counter() - started,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak": usage.ru_maxrss / 1024,
        "code": os.waitstatus_to_exitcode(status),
    }


class Dbt:
    """The venv's dbt CLI on one DuckDB file, state (target/, logs/) in a work dir; on the
    spark target with `spark` (spark_env: that engine's settings), measured over its
    process tree."""

    def __init__(
        self, database: Path, tmp: Path, project: Path, spark: dict[str, str] | None = None
    ) -> None:
        self.database, self.tmp, self.project, self.calls = database, tmp, project, 0
        self.env = os.environ | DBT_ENV | {"RETENTION_DUCKDB_PATH": str(database)}
        self.env |= spark or {}
        self.target = ["--target", "spark"] if spark else []

    def __call__(self, *args: str, check: bool = True) -> dict:
        self.calls += 1
        log = self.tmp / f"dbt_{self.calls}_{args[0]}.log"
        argv = [str(Path(sys.executable).with_name("dbt")), "--no-use-colors", *args]
        argv += ["--project-dir", str(self.project), "--profiles-dir", str(self.project)]
        argv += ["--target-path", str(self.tmp / "target"), "--log-path", str(self.tmp / "logs")]
        argv += self.target
        if self.target:
            result = run_tree(argv, self.env, ROOT, log)
        else:
            result = run_child(argv, self.env, log)
        if result["code"] != 0 and check:
            sys.exit(f"dbt {' '.join(args)} failed:\n{log.read_text()[-4000:]}")
        if args[0] not in ("run", "build"):
            return result
        doc = json.loads((self.tmp / "target" / "run_results.json").read_text())
        done = doc["results"]
        return result | {
            "elapsed": doc["elapsed_time"],
            "nodes": [(r["unique_id"].split(".", 2)[-1], r["execution_time"]) for r in done],
            "failed": [r["unique_id"] for r in done if r["status"] in ("error", "fail")],
        }


# DuckDB work runs in child processes (`--child TASK DATABASE ...`), one JSON line out: the
# parent stays small, so each child's peak RSS is its own.


def child_one(con, sql: str) -> dict:
    con.execute("create schema if not exists bench")
    started = time.perf_counter()
    con.execute(Path(sql).read_text())
    took = time.perf_counter() - started
    settings = ("memory_limit", "threads", "temp_directory")
    values = con.sql(f"select {', '.join(f'current_setting({s!r})' for s in settings)}")
    return {"seconds": took, "settings": dict(zip(settings, values.fetchall()[0], strict=True))}


def child_subscriptions(con) -> dict:
    systems = ("raw_stripe", "raw_recurly", "raw_chargebee")
    counts = [con.sql(f"select count(*) from {s}.subscriptions").fetchall()[0][0] for s in systems]
    return {"subscriptions": sum(counts)}


def child_check(con, reference: str, copies: str, *baselines: str) -> dict:
    """Rows per table; per baseline and mart [dbt rows, baseline rows, dbt EXCEPT ALL
    baseline, baseline EXCEPT ALL dbt]; and the marts of these copies against those of
    one (`reference`, the 1-copy point's warehouse: replicate.copies_check)."""

    def count(query: str) -> int:
        return con.sql(f"select count(*) from ({query})").fetchall()[0][0]

    rows = {table: count(f"from {table}") for table in COUNTED}
    rows["distinct billing ids in sessions"] = count(
        "select distinct billing_system, billing_id from raw_exit_sessions.exit_sessions"
    )
    agreement: dict[str, dict[str, list[int]]] = {table: {} for table in baselines}
    for table in baselines:
        for mart in MARTS:
            columns = ", ".join(f'"{c}"' for c in con.table(f"marts.{mart}").columns)
            built = f"select {columns} from marts.{mart}"
            own = f"select {columns} from bench.{table} where mart = '{mart}'"
            queries = (built, own, f"{built} except all {own}", f"{own} except all {built}")
            agreement[table][mart] = [count(query) for query in queries]
    if int(copies) == 1:  # the reference itself: the check runs, and must find the same
        copied = copies_check(con, "marts", MARTS, 1)
    else:
        con.execute(f"attach '{reference}' as one_copy (read_only)")
        copied = copies_check(con, "one_copy.marts", MARTS, int(copies))
    return {"rows": rows, "agreement": agreement, "copies": copied}


def child_main(task: str, database: str, *rest: str) -> None:
    if task == "replicate":
        base, copies, *compiled = rest
        keep = named_columns(Path(compiled[0])) if compiled else None
        print(json.dumps(replicate(Path(base), Path(database), int(copies), keep)))
        return
    import duckdb

    tasks = {
        "one": child_one,
        "check": child_check,
        "subscriptions": child_subscriptions,
        "lake": lambda con, lake: export_lake(con, Path(lake)),
        "spark_check": lambda con, tables: marts_check(con, Path(tables), MARTS),
    }
    with duckdb.connect(database) as con:
        con.execute("set enable_progress_bar = false")
        con.execute("set preserve_insertion_order = false")  # as dbt's profile sets it
        if limit := os.environ.get("RETENTION_DUCKDB_MEMORY_LIMIT"):  # as the profile reads it
            con.execute(f"set memory_limit = '{limit}'")
        print(json.dumps(tasks[task](con, *rest)))


def child(task: str, database: Path, log_dir: Path, *rest: object) -> dict:
    """Run a child task: wall/cpu/peak of the process, its JSON output as `result`."""
    log = log_dir / f"{task}.log"
    argv = [sys.executable, __file__, "--child", task, str(database), *map(str, rest)]
    result = run_child(argv, dict(os.environ), log)
    if result["code"] != 0:
        sys.exit(f"{task} failed:\n{log.read_text()[-4000:]}")
    return result | {"result": json.loads(log.read_text().splitlines()[-1])}


def base_warehouse(folder: Path, customers: int) -> Path:
    """The base: a scenario of the project's generator served by the sandbox and loaded by
    `retention extract` into `folder` (untimed), or the one an earlier run left there."""
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "warehouse.duckdb"
    if database.exists():
        print(f"base: reusing {database} (extracted by an earlier run)", flush=True)
        return database
    started, scenario = time.perf_counter(), folder / "scenario.json"
    generate(scenario, customers, seed=7)
    drop_files(scenario, folder / "drop")
    with served(scenario, PORTS):
        extract(database, folder / "drop", PORTS)
    took = time.perf_counter() - started
    print(f"base: generated, served and extracted {customers:,} customers in {took:.0f} s")
    return database


def prepared(database: Path, folder: Path, project: Path) -> Dbt:
    """dbt on `database`, seeded and parsed, the staging views run (the hand-written SQL
    reads them), the marts compiled and inlined as one statement (all untimed)."""
    dbt = Dbt(database, folder, project)
    dbt("seed")
    dbt("parse")
    dbt("run", "--select", "path:models/staging")
    dbt("compile", "--select", *SELECTED)  # after the run: its manifest has the SQL
    (folder / "one_statement.sql").write_text(
        one_statement(folder / "target" / "manifest.json", MARTS)
    )
    return dbt


def measure(dbt: Dbt, folder: Path, repeat: int, build: bool, baselines: list[str]) -> dict:
    """The baselines and `dbt run` of the two marts, interleaved (the machine's other load
    hits them alike), then `dbt run` of every model and `dbt build` if asked."""
    statements = {"one_statement": folder / "one_statement.sql", "hand_marts": HAND_SQL}
    statements = {table: sql for table, sql in statements.items() if table in baselines}
    baselines: dict[str, list[dict]] = {table: [] for table in statements}
    selected = []
    for round_ in range(1, repeat + 1):
        for table, sql in statements.items():
            run = child("one", dbt.database, folder, sql)
            baselines[table].append(run | run["result"])
            print(f"  round {round_}: {table} {run['result']['seconds']:.2f} s", flush=True)
        selected.append(dbt("run", "--select", *SELECTED))
        print(f"  round {round_}: dbt run --select {selected[-1]['wall']:.2f} s", flush=True)
    everything = [dbt("run")] if build else []
    built = dbt("build", check=False) if build else None
    return {"baselines": baselines, "selected": selected, "everything": everything, "build": built}


def on_spark(database: Path, folder: Path, project: Path, repeat: int) -> dict:
    """The point's two marts on Spark (spark_point.py): the lake exported, seeds loaded
    (untimed), `dbt run --select` timed `repeat` times, Spark's marts checked against
    DuckDB's (the warehouse holds them after the DuckDB runs)."""
    load = os.getloadavg()[0]
    spark = folder / "spark"
    shutil.rmtree(spark, ignore_errors=True)  # a fresh metastore and lake each time
    spark.mkdir()
    lake = child("lake", database, spark, spark / "lake")
    print(f"  spark: lake exported in {lake['wall']:.1f} s", flush=True)
    dbt = Dbt(database, spark, project, spark_env(spark))
    seeded = dbt("seed")
    print(f"  spark: dbt seed {seeded['wall']:.1f} s (untimed)", flush=True)
    selected = []
    for round_ in range(1, repeat + 1):
        selected.append(dbt("run", "--select", *SELECTED))
        print(f"  round {round_}: spark dbt run --select {selected[-1]['wall']:.2f} s", flush=True)
    tables = spark / "spark-warehouse" / "tables"
    check = child("spark_check", database, spark, tables)["result"]
    loads = [load, os.getloadavg()[0]]
    return {"lake": lake, "seed": seeded, "selected": selected, "check": check, "load": loads}


def point(base: Path, base_subscriptions: int, size: int, work: Path, args) -> dict:
    """One point of the curve: `size` subscriptions as k copies of the base (k = 1: the
    base itself, the point where dbt's fixed cost shows), measured and checked."""
    copies = max(1, round(size / base_subscriptions))
    folder = work / f"copies_{copies}"
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "warehouse.duckdb"
    print(f"\n== {copies} copies of the base (~{copies * base_subscriptions:,} subscriptions)")
    lean = [work / "copies_1" / "target" / "compiled"] if args.lean and copies > 1 else []
    made = child("replicate", database, folder, base, copies, *lean)
    print(f"  replicated in {made['wall']:.1f} s, peak {made['peak']:,.0f} MiB", flush=True)
    dbt = prepared(database, folder, args.project_dir.resolve())
    load = os.getloadavg()[0]
    runs = measure(dbt, folder, args.repeat, args.build, args.baselines) | {
        "load": [load, os.getloadavg()[0]]
    }
    reference = work / "copies_1" / "warehouse.duckdb"
    check = child("check", database, folder, reference, copies, *args.baselines)["result"]
    size_on_disk = database.stat().st_size
    result = {"copies": copies, "replicate": made, "check": check, "bytes": size_on_disk}
    result |= runs | {"lean": bool(lean)}
    if args.engine == "spark":
        result["spark"] = on_spark(database, folder, args.project_dir.resolve(), args.repeat)
    (folder / "result.json").write_text(json.dumps(result))
    if copies > 1 and not args.keep_points:  # the 1-copy point is the others' reference
        database.unlink()
        shutil.rmtree(folder / "spark", ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=10_000, help="the base's customers")
    parser.add_argument(
        "--sizes", default="1,100000,1000000", help="subscriptions per point (1: the base)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of each (best counts)")
    parser.add_argument("--build", action="store_true", help="also dbt run and dbt build")
    parser.add_argument("--keep", type=Path, help="work dir kept (base and results reused)")
    parser.add_argument("--keep-points", action="store_true", help="keep each point's file")
    parser.add_argument(
        "--baselines",
        type=lambda text: text.split(","),
        default=list(BASELINES),
        help=f"of {','.join(BASELINES)} (default: both)",
    )
    parser.add_argument(
        "--lean", action="store_true", help="copies without the raw columns no model names"
    )
    parser.add_argument(
        "--engine",
        choices=("duckdb", "spark"),
        default="duckdb",
        help="spark: also the two marts on Spark (dbt's spark target), beside DuckDB",
    )
    parser.add_argument("--project-dir", type=Path, default=DBT_PROJECT, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(*args.child)

    with tempfile.TemporaryDirectory(prefix="bench_marts_") as scratch:
        work = (args.keep or Path(scratch)).resolve()
        base = base_warehouse(work / "base", args.customers)
        base_subscriptions = child("subscriptions", base, work)["result"]["subscriptions"]
        print(f"base: {base_subscriptions:,} subscriptions")
        sizes = [int(s) for s in args.sizes.split(",")]
        if 1 not in sizes and not (work / "copies_1" / "warehouse.duckdb").exists():
            sizes.insert(0, 1)  # the reference of the copies check
        for size in sorted(sizes):
            measured = point(base, base_subscriptions, size, work, args)
            report(measured)
            if "spark" in measured:
                spark_report(measured)
        points = [json.loads(p.read_text()) for p in work.glob("copies_*/result.json")]
        curve(points)
        engines_curve(points)


if __name__ == "__main__":
    main()
