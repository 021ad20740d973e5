"""dbt's marts beside two baselines of ONE DuckDB statement each, on the project's own data.

Data: a scenario of the project's generator (`retention sandbox generate`, seed 7), served
by the sandbox and loaded by `retention extract`: the raw tables a deployment lands. That
is slow (1,000 customers in 10-15 s on two busy cores) and untimed; `--keep DIR` keeps the
warehouse for later runs on the same DIR. Then `dbt seed`, `parse`, a run of the staging
views and `compile` (untimed), and:
- the limit: fct_exit_episodes and fct_repurchase_cohorts as one statement of dbt's own
  compiled SQL (one_statement.py; one_statement.sql in the work dir);
- the hand-written baseline: the same two marts from the staging views, the intermediate
  and mart rules written by hand for speed (sql/hand_marts.sql);
- `dbt run --select +fct_exit_episodes +fct_repurchase_cohorts`, alternating with both (the
  machine's other load hits all alike); the ratios of dbt to each are the headline;
- `dbt run` of every model, `dbt build` (seed, models, data and unit tests), and dbt's
  fixed cost: the same selected `dbt run` on a 1,000-customer scenario;
- each baseline's rows against the dbt marts: counts, and EXCEPT ALL both ways.
dbt runs as the venv's CLI (as dagster-dbt runs it): wall time includes process start and
partial parsing; dbt's own elapsed time (run_results.json) is beside it. cpu is user+sys
and peak the peak RSS of each child process (each baseline runs in one).

Run: .venv/bin/python bench/bench_marts.py [--customers N] [--repeat N] [--no-build]
     [--no-fixed-cost] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from marts_report import BASELINES, report
from one_statement import one_statement
from sandbox_process import drop_files, extract, generate, served

ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT = ROOT / "dbt_project"
HAND_SQL = Path(__file__).resolve().parent / "sql" / "hand_marts.sql"
PORTS = {"stripe": 12331, "recurly": 12332, "chargebee": 12333}
DBT_ENV = {"RETENTION_WAREHOUSE": "duckdb", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
MARTS = ("fct_exit_episodes", "fct_repurchase_cohorts")
SELECTED = tuple(f"+{mart}" for mart in MARTS)
COUNTED = [f"raw_{s}.{t}" for s in PORTS for t in ("subscriptions", "customers", "invoices")]
COUNTED += ["raw_exit_sessions.exit_sessions"]
COUNTED += [f"marts.{t}" for t in ("fct_exit_sessions", *MARTS, "dim_subscriptions")]
COUNTED += ["marts.dim_subscriber_profiles", "marts.rpt_retention_summary"]


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
    """The venv's dbt CLI on one DuckDB file, state (target/, logs/) in a work dir."""

    def __init__(self, database: Path, tmp: Path, project: Path) -> None:
        self.database, self.tmp, self.project, self.calls = database, tmp, project, 0
        self.env = os.environ | DBT_ENV | {"RETENTION_DUCKDB_PATH": str(database)}

    def __call__(self, *args: str, check: bool = True) -> dict:
        self.calls += 1
        log = self.tmp / f"dbt_{self.calls}_{args[0]}.log"
        argv = [str(Path(sys.executable).with_name("dbt")), "--no-use-colors", *args]
        argv += ["--project-dir", str(self.project), "--profiles-dir", str(self.project)]
        argv += ["--target-path", str(self.tmp / "target"), "--log-path", str(self.tmp / "logs")]
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
    return {"seconds": time.perf_counter() - started}


def child_check(con) -> dict:
    """Rows per table, and per baseline and mart [dbt rows, baseline rows, dbt EXCEPT ALL
    baseline, baseline EXCEPT ALL dbt]."""

    def count(query: str) -> int:
        return con.sql(f"select count(*) from ({query})").fetchall()[0][0]

    rows = {table: count(f"from {table}") for table in COUNTED}
    rows["distinct billing ids in sessions"] = count(
        "select distinct billing_system, billing_id from raw_exit_sessions.exit_sessions"
    )
    agreement: dict[str, dict[str, list[int]]] = {table: {} for table in BASELINES}
    for table in BASELINES:
        for mart in MARTS:
            columns = ", ".join(f'"{c}"' for c in con.table(f"marts.{mart}").columns)
            built = f"select {columns} from marts.{mart}"
            own = f"select {columns} from bench.{table} where mart = '{mart}'"
            queries = (built, own, f"{built} except all {own}", f"{own} except all {built}")
            agreement[table][mart] = [count(query) for query in queries]
    return {"rows": rows, "agreement": agreement}


def child_main(task: str, database: str, *rest: str) -> None:
    import duckdb

    with duckdb.connect(database) as con:
        con.execute("set enable_progress_bar = false")
        con.execute("set preserve_insertion_order = false")  # as dbt's profile sets it
        print(json.dumps({"one": child_one, "check": child_check}[task](con, *rest)))


def child(task: str, database: Path, log_dir: Path, *rest: object) -> dict:
    """Run a child task: wall/cpu/peak of the process, its JSON output as `result`."""
    log = log_dir / f"{task}.log"
    argv = [sys.executable, __file__, "--child", task, str(database), *map(str, rest)]
    result = run_child(argv, dict(os.environ), log)
    if result["code"] != 0:
        sys.exit(f"{task} failed:\n{log.read_text()[-4000:]}")
    return result | {"result": json.loads(log.read_text().splitlines()[-1])}


def prepared_dbt(folder: Path, customers: int, project: Path) -> Dbt:
    """dbt, seeded and parsed (untimed), on the warehouse in `folder`: extracted now, or
    kept there by an earlier run."""
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "warehouse.duckdb"
    if database.exists():
        print(f"reusing {database} (extracted by an earlier run)")
    else:
        started, scenario = time.perf_counter(), folder / "scenario.json"
        generate(scenario, customers, seed=7)
        drop_files(scenario, folder / "drop")
        with served(scenario, PORTS):
            extract(database, folder / "drop", PORTS)
        took = time.perf_counter() - started
        print(f"generated, served and extracted {customers:,} customers in {took:.0f} s")
    dbt = Dbt(database, folder, project)
    dbt("seed")
    dbt("parse")
    return dbt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each (best counts)")
    parser.add_argument("--no-build", action="store_true", help="skip `dbt build` with tests")
    parser.add_argument("--no-fixed-cost", action="store_true", help="skip the 1,000-customer run")
    parser.add_argument("--project-dir", type=Path, default=DBT_PROJECT, help=argparse.SUPPRESS)
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the warehouse in this dir")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(*args.child)

    with tempfile.TemporaryDirectory(prefix="bench_marts_") as scratch:
        tmp, project = (args.keep or Path(scratch)).resolve(), args.project_dir.resolve()
        print(f"bench_marts: a scenario of {args.customers:,} customers (sandbox.generate)")
        dbt = prepared_dbt(tmp, args.customers, project)
        dbt("run", "--select", "path:models/staging")  # the views the hand-written SQL reads
        dbt("compile", "--select", *SELECTED)  # after the run: its manifest has the SQL
        statements = {"one_statement": tmp / "one_statement.sql", "hand_marts": HAND_SQL}
        statements["one_statement"].write_text(
            one_statement(tmp / "target" / "manifest.json", MARTS)
        )

        baselines: dict[str, list[dict]] = {table: [] for table in statements}
        selected = []  # interleaved: the machine's other load hits them alike
        for _ in range(args.repeat):
            for table, sql in statements.items():
                run = child("one", dbt.database, tmp, sql)
                baselines[table].append(run | run["result"])
            selected.append(dbt("run", "--select", *SELECTED))
        everything = [dbt("run") for _ in range(args.repeat)]
        build = None if args.no_build else dbt("build", check=False)
        check = child("check", dbt.database, tmp)["result"]
        fixed = None
        if not args.no_fixed_cost:
            small = prepared_dbt(tmp / "fixed_cost", 1000, project)
            fixed = [small("run", "--select", *SELECTED) for _ in range(args.repeat)]
        runs = {"selected": selected, "everything": everything, "build": build, "fixed": fixed}
        report(check, baselines, runs | {"select": " ".join(SELECTED)})


if __name__ == "__main__":
    main()
