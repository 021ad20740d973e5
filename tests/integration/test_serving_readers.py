"""BI reads the serving file while the jobs run: reader processes hold connections the way
dashboards do (a pool that recycles its connections every second, one connection never
closed, and a SQLAlchemy client through duckdb-engine, read-only) through three billing
syncs, a validation partition and a write-back run. No read fails, no run fails, every
read sees one whole build (the summary's identity, and the marts agreeing with each
other and with the build's own row counts), and a reconnecting reader sees each new
build. Printed: reads per second during the runs, the sync's time with and without
readers, and the delay from a build's publish to a reader seeing it."""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
RECYCLE_SECONDS = 1.0
PAUSE_SECONDS = 0.02  # between reads: a busy dashboard, not a benchmark loop
# One read: the summary's identity on every row, and the summary and the episodes mart
# counting the same episodes (two marts of one build agree).
READ = """
select
    (select count(*) from marts.rpt_retention_summary
     where valid_saves + cancels + unknowns + pending <> episodes) as broken_rows,
    (select sum(episodes) from marts.rpt_retention_summary) as summary_episodes,
    (select count(*) from marts.fct_exit_episodes) as episodes,
    (select run_id from serving.build) as run_id
"""


def _complete(execute: Callable[[str], list[tuple]]) -> bool:
    """Every mart holds the rows the build recorded for it."""
    recorded = execute("select table_name, row_count from serving.tables")
    return all(execute(f'select count(*) from marts."{t}"')[0][0] == n for t, n in recorded)


def _check(execute: Callable[[str], list[tuple]], seen: dict[str, float]) -> str | None:
    """One read; what was wrong with it, if anything. A build seen for the first time is
    timed and checked whole."""
    broken, summary, episodes, run_id = execute(READ)[0]
    if run_id not in seen:
        seen[run_id] = time.time()
        if not _complete(execute):
            return f"build {run_id}: a mart's row count differs from serving.tables"
    if broken or summary != episodes or not episodes:
        return f"build {run_id}: {broken} broken rows, {summary} vs {episodes} episodes"
    return None


def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def _duckdb_reads(link: str, recycle: float | None) -> Iterator[Callable[[str], list[tuple]]]:
    """For each read, the reader's connection; between reads, a new connection once
    `recycle` seconds have passed (a pool's recycle), never if None."""
    con, opened = duckdb.connect(link, read_only=True), time.monotonic()
    try:
        while True:
            if recycle is not None and time.monotonic() - opened > recycle:
                con.close()
                con, opened = duckdb.connect(link, read_only=True), time.monotonic()
            yield partial(_fetch, con)
    finally:
        con.close()


def _sqlalchemy_reads(link: str) -> Iterator[Callable[[str], list[tuple]]]:
    """For each read, a connection checked out of a duckdb-engine pool that recycles them
    (settings in the URL alone, as Superset takes them), while one more stays checked out
    the whole time, as a dashboard's open session does."""
    from sqlalchemy import create_engine, text

    def fetch(con, sql: str) -> list[tuple]:
        return [tuple(row) for row in con.execute(text(sql)).fetchall()]

    engine = create_engine(
        f"duckdb:///{link}?access_mode=read_only", pool_size=3, pool_recycle=RECYCLE_SECONDS
    )
    session = engine.connect()
    try:
        fetch(session, READ)
        while True:
            with engine.connect() as con:
                yield partial(fetch, con)
    finally:
        session.close()
        engine.dispose()


READERS = {
    "pool": lambda link: _duckdb_reads(link, RECYCLE_SECONDS),
    "held": lambda link: _duckdb_reads(link, None),
    "sqlalchemy": _sqlalchemy_reads,
}


def read_serving(link: str, kind: str, stop, results) -> None:
    """A reader process (READERS[kind]) reading until `stop`; it reports once ready, then
    its reads, failures and when it first saw each build."""
    reads, failures, seen = 0, [], {}
    connections = READERS[kind](link)
    started = time.monotonic()
    while not stop.is_set():
        try:
            problem = _check(next(connections), seen)
        except Exception as exc:  # a failed read is what the test counts
            problem = f"{type(exc).__name__}: {exc}"
            connections = READERS[kind](link)
        reads += 1
        if problem:
            failures.append(problem)
        if reads == 1:
            results.put({"ready": kind})
        time.sleep(PAUSE_SECONDS)
    connections.close()
    span = time.monotonic() - started
    results.put(
        {"kind": kind, "reads": reads, "span": span, "failures": failures[:20], "seen": seen}
    )


@pytest.fixture
def scenario(tmp_path, serve_scenario, dagster_env, monkeypatch):
    """A small generated scenario served by the sandbox, its exit sessions in the drop
    folder, the sources and the write-backs (live catalog) pointed at it."""
    from sandbox.exit_files import write_exit_session_files
    from sandbox.generate import GenerateOptions, write_scenario
    from sandbox.scenario import load_scenario
    from tests.writeback_pipeline import live_catalog, point_at

    path = tmp_path / "scenario.json"
    write_scenario(GenerateOptions(120, 5, AS_OF), path)
    sandbox = serve_scenario(orjson.loads(path.read_bytes()))
    write_exit_session_files(load_scenario(path), dagster_env["SOURCES__EXIT_SESSIONS__FOLDER"])
    point_at(monkeypatch, sandbox)
    monkeypatch.setenv("RETENTION_WRITEBACKS", str(live_catalog(tmp_path / "writebacks.yml")))
    return dagster_env


class Runs:
    """The code location's jobs, run in this process on the test's instance."""

    def __init__(self) -> None:
        from orchestration.definitions import build_definitions

        self.defs = build_definitions()
        self.published: dict[str, float] = {}  # run id: when its build was published
        self.seconds: list[tuple[str, float]] = []

    def run(self, job_name: str, **options: Any) -> str:
        from dagster import AssetKey, DagsterInstance

        job = self.defs.resolve_job_def(job_name)
        started = time.monotonic()
        with DagsterInstance.get() as instance:
            result = job.execute_in_process(instance=instance, raise_on_error=False, **options)
        self.seconds.append((job_name, time.monotonic() - started))
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
        assert result.success, f"{job_name} failed in {failed}"
        [served] = [
            m
            for m in result.get_asset_materialization_events()
            if m.asset_key == AssetKey("serving_marts")
        ]
        metadata = served.materialization.metadata
        self.published[result.run_id] = metadata["published_at"].value
        return result.run_id


def _collect(results, count: int, key: str, timeout: float = 120) -> list[dict]:
    found, deadline = [], time.monotonic() + timeout
    while len(found) < count:
        try:
            message = results.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"{count - len(found)} reader(s) never reported {key!r}")
        if key in message:
            found.append(message)
    return found


def _busiest_validation_day(link: Path) -> str:
    """The validation partition with the most episodes (their cohort day + the window)."""
    from orchestration.settings import save_window

    with duckdb.connect(str(link), read_only=True) as con:
        [(day,)] = con.execute(
            "select cast(timezone('UTC', first_landed_at) as date) + ? as day "
            "from marts.fct_exit_episodes group by day order by count(*) desc, day limit 1",
            [save_window().days],
        ).fetchall()
    return day.isoformat()


def test_readers_never_fail_and_never_block_the_jobs(scenario):
    from orchestration.serving import serving_path

    link = serving_path(Path(scenario["RETENTION_DUCKDB_PATH"]))
    runs = Runs()
    runs.run("billing_sync")  # the first build, before any reader
    runs.run("billing_sync")  # a sync's time without readers
    assert link.is_symlink()
    day = _busiest_validation_day(link)

    spawn = multiprocessing.get_context("spawn")
    stop, results = spawn.Event(), spawn.Queue()
    kinds = ("pool", "held", "sqlalchemy")
    readers = [
        spawn.Process(target=read_serving, args=(str(link), kind, stop, results)) for kind in kinds
    ]
    for reader in readers:
        reader.start()
    try:
        _collect(results, len(readers), "ready")
        reading = time.monotonic()
        syncs = [runs.run("billing_sync") for _ in range(3)]
        validation = runs.run("validation_30d_daily", partition_key=day)
        last = runs.run("billing_writebacks_job")
        busy = time.monotonic() - reading
        time.sleep(3 * RECYCLE_SECONDS)  # a recycling reader's next connection
    finally:
        stop.set()
    reports = {r["kind"]: r for r in _collect(results, len(readers), "kind")}
    for reader in readers:
        reader.join(timeout=30)

    _print_figures(runs, reports, busy, [*syncs, validation, last])
    for kind, report in reports.items():
        assert report["failures"] == [], kind
        assert report["reads"] > 10, kind
    assert len(reports["held"]["seen"]) == 1  # its first build, read to the end
    for kind in ("pool", "sqlalchemy"):
        assert last in reports[kind]["seen"], kind  # reconnecting readers see new builds
        assert set(syncs) & set(reports[kind]["seen"]), kind

    with duckdb.connect(str(link), read_only=True) as con:
        assert con.execute("select run_id, job_name from serving.build").fetchall() == [
            (last, "billing_writebacks_job")
        ]
        tables = dict(con.execute("select table_name, row_count from serving.tables").fetchall())
    assert tables["validation_30d_daily"] > 0 and tables["fct_billing_writebacks"] > 0
    builds = sorted(p.name for p in link.resolve().parent.iterdir())
    assert len(builds) == 3 and link.resolve().name == builds[-1]  # KEEP_BUILDS


def _print_figures(runs: Runs, reports: dict[str, dict], busy: float, run_ids: list[str]):
    """Reads per second, failures, the sync's time with and without readers, and the
    delay from a build's publish to a reconnecting reader's first read of it."""
    delays = [
        seen - runs.published[run_id]
        for kind in ("pool", "sqlalchemy")
        for run_id, seen in reports[kind]["seen"].items()
        if run_id in run_ids
    ] or [float("nan")]
    syncs = [f"{s:.1f}" for name, s in runs.seconds if name == "billing_sync"]
    rates = ", ".join(f"{k} {r['reads'] / r['span']:.1f}" for k, r in reports.items())
    failures = {k: len(r["failures"]) for k, r in reports.items()}
    print(
        f"\nserving readers over {busy:.1f} s of runs: reads/s {rates}; failures {failures}\n"
        f"billing_sync: {', '.join(syncs[:2])} s without readers (cold, warm), "
        f"{', '.join(syncs[2:])} s with them\n"
        f"publish to a reader seeing the build: max {max(delays):.2f} s, mean "
        f"{sum(delays) / len(delays):.2f} s over {len(delays)} sightings (recycle "
        f"{RECYCLE_SECONDS:.0f} s)"
    )
    for kind, report in reports.items():
        for failure in report["failures"][:3]:
            print(f"  {kind}: {failure}")


def test_no_serving_file_on_postgres(dagster_env):
    """On Postgres BI reads the marts schema under MVCC: the asset publishes nothing (and
    connects to nothing)."""
    from dagster import materialize

    from orchestration.resources import Warehouse
    from orchestration.serving import serving_marts, serving_path

    database = Path(dagster_env["RETENTION_DUCKDB_PATH"])
    warehouse = Warehouse(kind="postgres", database=str(database))
    result = materialize([serving_marts()], resources={"warehouse": warehouse})
    assert result.success
    [served] = result.asset_materializations_for_node("serving_marts")
    assert served.metadata["published"].value is False
    assert not serving_path(database).exists() and not database.exists()
