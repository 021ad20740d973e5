"""Run the billing and exit-session loads: the wiring the CLI and Dagster share.

Each billing system has its own dlt pipeline and dataset (`raw_stripe`, `raw_recurly`,
`raw_chargebee`, `raw_exit_sessions`) in the warehouse RETENTION_WAREHOUSE names (a
DuckDB file, the default, Postgres, or Spark: Delta tables under RETENTION_SPARK_LAKE).
Systems extract and normalise in parallel; loads into one DuckDB file take turns, since
DuckDB allows one writer at a time (Postgres and lake loads run in parallel).

Where each source points is billing_clients.targets' to say: the real service where a
system is live (`RETENTION_ENVIRONMENT`, its key required), else the local sandbox at its
default address. `SOURCES__<SYSTEM>__BASE_URL` overrides the address either way. Each is
read through dlt's providers: the environment, then `.dlt/secrets.toml` / `config.toml`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import importlib
import logging
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import dlt
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.common.runtime.collector import LogCollector
from dlt.extract.source import DltSource
from dlt.pipeline.exceptions import PipelineStepFailed

from billing_clients.targets import Settings, Target, TargetError, resolve_target, unreachable
from orchestration.checkpoints import round_source, run_rounds, unfinished_listings
from orchestration.settings import (
    BILLING_SYSTEMS,
    DEFAULT_DATABASE,
    postgres_credentials,
    spark_lake,
    warehouse_kind,
)
from orchestration.spark import LAKE_TABLE_FORMAT, deduplicate, lands_in_lake, vacuum

SOURCES = {
    "stripe": ("dlt_sources.stripe", "stripe_source"),
    "recurly": ("dlt_sources.recurly", "recurly_source"),
    "chargebee": ("dlt_sources.chargebee", "chargebee_source"),
}
log = logging.getLogger("retention.extract")


def billing_source(target: Target, continues_listing: bool = False):
    """The dlt source of one billing system, configured for `target`; `continues_listing`:
    this run continues a full listing an earlier one left (`checkpoints.round_source`)."""
    module, name = SOURCES[target.system]
    factory = getattr(importlib.import_module(module), name)
    options = {"api_key": target.api_key, "base_url": target.base_url}
    if continues_listing:
        options["continues_listing"] = True
    if target.site:
        options["site"] = target.site
    if target.is_sandbox:  # the local sandbox has no rate limit to respect
        options["requests_per_second"] = None
    return factory(**options)


def destination(database: str | Path | None, kind: str | None = None):
    """The warehouse (`kind`, else RETENTION_WAREHOUSE): the DuckDB file `database` by
    default; Postgres with its credentials as dlt reads them (DESTINATION__POSTGRES__
    CREDENTIALS, or .dlt/secrets.toml), resolved when the load starts; for Spark, dlt's
    filesystem destination at the lake (RETENTION_SPARK_LAKE; an object store's
    credentials as dlt reads them), its tables Delta (`_round`): dlt has no Spark
    destination, and Delta is the table format whose merges dlt keeps merges."""
    kind = kind or warehouse_kind()
    if kind == "postgres":
        return dlt.destinations.postgres()
    if kind == "spark":
        return dlt.destinations.filesystem(bucket_url=spark_lake())
    return dlt.destinations.duckdb(str(Path(database or DEFAULT_DATABASE).resolve()))


def working_dir(
    database: str | Path | None,
    pipelines_dir: str | Path | None = None,
    kind: str | None = None,
) -> Path:
    """Where dlt keeps the state and load packages of the loads into one warehouse: a
    folder of its own per DuckDB file (`<name>-<hash of its path>` under DLT_DATA_DIR's
    pipelines), or per Postgres database (`postgres-<hash of host, port and database>`).

    dlt's local state holds cursors that describe one warehouse. Shared by two files, a
    run on the first file after runs on the second kept the second's cursors (dlt keeps
    the local state when it is newer than the warehouse's copy) and skipped every change
    in between, exiting 0. A new folder starts from the warehouse's own copy of the state.
    """
    root = Path(pipelines_dir or get_dlt_pipelines_dir())
    kind = kind or warehouse_kind()
    if kind == "postgres":
        pg = postgres_credentials()
        name, where = "postgres", f"{pg.host}:{pg.port}/{pg.database}"
    elif kind == "spark":
        name, where = "lake", spark_lake()
    else:
        path = Path(database or DEFAULT_DATABASE).resolve()
        name, where = path.stem, str(path)
    return root / f"{name}-{hashlib.sha256(where.encode()).hexdigest()[:10]}"


def pipeline_name(name: str) -> str:
    return f"retention_{name}"


def pipeline(
    name: str,
    database: str | Path | None,
    pipelines_dir: str | Path | None = None,
    kind: str | None = None,
):
    """The dlt pipeline loading `name` into the warehouse (`kind`, else
    RETENTION_WAREHOUSE; `database`: the DuckDB file)."""
    return dlt.pipeline(
        pipeline_name=pipeline_name(name),
        destination=destination(database, kind),
        dataset_name=f"raw_{name}",
        pipelines_dir=str(working_dir(database, pipelines_dir, kind)),
        # Progress lines without the memory/CPU figures, which need psutil (not installed)
        # and otherwise print a warning on every run.
        progress=LogCollector(dump_system_stats=False),
    )


@dataclass
class LoadSummary:
    name: str
    rows: dict[str, int]
    seconds: float
    error: str | None = None
    rounds: int = 0  # extract/normalize/load rounds (more than one: a checkpointed full sync)


def _run_one(
    name: str, make_source: Callable[..., DltSource], database, pipelines_dir, load_lock
) -> LoadSummary:
    """Load `name` in rounds until no full listing is unfinished (orchestration.checkpoints):
    each round commits its rows and the listing's progress, so a run killed later resumes
    where the last round ended. `make_source`: a new source per round (one is consumed by
    its extract)."""
    started = time.perf_counter()
    try:
        p = pipeline(name, database, pipelines_dir)
        # The cursors in dlt's local state describe what the warehouse holds, so the
        # warehouse decides: a dataset that no longer exists (the file was deleted, or
        # another one named) wipes them and the run loads everything; deleted local state
        # is restored from the copy dlt keeps in the dataset. `pipeline.run` does this
        # itself; separate extract/normalize/load steps must ask for it.
        with load_lock:  # it reads the destination, which takes one writer at a time
            p.sync_destination()
        if p.has_pending_data:  # left by a stopped run (killed, a full disk): loaded now
            log.info("%s: finishing the load a stopped run left", name)
        counts = run_rounds(
            lambda: _round(p, round_source(make_source, p.state), load_lock),
            lambda: unfinished_listings(p.state),
            log,
        )
        rows: Counter[str] = Counter()
        for round_rows in counts:
            rows.update(round_rows)
        return LoadSummary(name, dict(rows), time.perf_counter() - started, rounds=len(counts))
    except Exception as exc:  # one system failing must not hide the others' results
        message = explain(exc, database)
        log.error("%s: load failed: %s", name, message)
        return LoadSummary(name, {}, time.perf_counter() - started, message)


def _round(p, source: DltSource, load_lock) -> dict[str, int]:
    """One extract/normalize/load of `source`: the rows normalised per table. Into the
    lake, every table is Delta, one row per key before the load (`spark.deduplicate`), and
    vacuumed after it (`spark.vacuum`)."""
    in_lake = lands_in_lake(p)
    p.extract(source, table_format=LAKE_TABLE_FORMAT if in_lake else None)
    normalized = p.normalize()
    if in_lake:
        deduplicate(p)
    with load_lock:
        p.load(raise_on_failed_jobs=True)
    if in_lake:
        vacuum(p)
    return {
        table: count
        for table, count in normalized.row_counts.items()
        if not table.startswith("_dlt")
    }


class PipelinesBusy(Exception):
    """Another process is loading with the same dlt working folders."""


@contextlib.contextmanager
def exclusive(names: Iterable[str], root: Path) -> Iterator[None]:
    """Hold the dlt working folders of the named datasets for this run, all or none.

    Two runs sharing a working folder take each other's load packages: started together,
    one moved the other's job files away mid-load, and both failed, leaving a warehouse
    loaded in part. The lock files sit beside the working folders (dlt wipes the folders
    themselves); the kernel drops the locks when their process ends, even when killed, so
    a crashed run never leaves one behind. `root`: the `working_dir` of the warehouse."""
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        for name in names:
            handle = held.enter_context((root / f".{pipeline_name(name)}.lock").open("a+"))
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise PipelinesBusy(
                    f"another load (PID {holder}) is running with the same dlt state "
                    f"({root}): wait for it to finish, or stop it, and run again"
                ) from None
            handle.truncate(0)
            handle.write(f"{os.getpid()}: {' '.join(Path(a).name for a in sys.argv[:2])}")
            handle.flush()
        yield


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


_NO_SPACE_IN = re.compile(r'"(?P<path>[^"]+)": No space left on device')


def explain(exc: BaseException, database) -> str:
    """The failure as the user can act on it. dlt wraps a DuckDB file held by another
    process in a message about credentials; the lock, and who holds it, is the cause. A
    full disk surfaces as a dozen tracebacks of dlt's and DuckDB's; the disk is the cause.
    Otherwise the innermost error of dlt's step (dlt's wrapper adds only its own advice)."""
    chain = causes(exc)
    for cause in chain:
        text = str(cause)
        if "Conflicting lock is held" in text or "Could not set lock on file" in text:
            holder = _LOCK_HOLDER.search(text)
            who = f" (PID {holder['pid']}: {holder['program']})" if holder else ""
            return (
                f"the warehouse {Path(database or DEFAULT_DATABASE).resolve()} is locked by "
                f"another process{who}: close it (a BI tool, a notebook, `dagster dev`, or "
                "another `retention extract`) and run again"
            )
    for cause in chain:
        if (reason := no_space(cause)) is not None:
            return reason
    if isinstance(exc, PipelineStepFailed):
        return f"{exc.step} step: {type(chain[-1]).__name__}: {chain[-1]}"
    return f"{type(exc).__name__}: {exc}"


def causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what caused it, outermost first."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def no_space(exc: BaseException) -> str | None:
    """What to do about a full disk, naming the file that did not fit; None otherwise."""
    text = str(exc)
    full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    if not full and "No space left on device" not in text:
        return None
    written = _NO_SPACE_IN.search(text)
    path = getattr(exc, "filename", None) or (written["path"] if written else None)
    where = f" (writing {path})" if path else ""
    return (
        f"no space left on the disk{where}: free space there, or move the warehouse "
        "(--database) or dlt's state (DLT_DATA_DIR) to a disk with room, and run again; "
        "what was committed is kept, and the next run loads the rest"
    )


def run_extract(
    systems: tuple[str, ...] = BILLING_SYSTEMS,
    database: str | Path | None = None,
    exit_sessions_folder: str | Path | None = None,
    pipelines_dir: str | Path | None = None,
    settings: Settings | None = None,
) -> list[LoadSummary]:
    """Load the given billing systems (and the exit-session folder, if given) in parallel.
    `settings`: where the sources point (dlt's providers unless given)."""
    jobs, refused = [], []
    for system in systems:
        try:
            target = resolve_target(system, settings)
        except TargetError as exc:
            refused.append(LoadSummary(system, {}, 0.0, str(exc)))
            continue
        log.info("%s", target.describe())
        if (reason := unreachable(target)) is not None:
            refused.append(LoadSummary(system, {}, 0.0, reason))
            continue
        jobs.append((system, partial(billing_source, target)))
    if exit_sessions_folder is not None:
        from dlt_sources.exit_sessions import exit_sessions_source

        jobs.append(
            ("exit_sessions", partial(exit_sessions_source, folder=str(exit_sessions_folder)))
        )
    load_lock = threading.Lock() if warehouse_kind() == "duckdb" else contextlib.nullcontext()
    try:
        with (
            exclusive([name for name, _ in jobs], working_dir(database, pipelines_dir)),
            ThreadPoolExecutor(max_workers=len(jobs) or 1) as pool,
        ):
            futures = [
                pool.submit(_run_one, name, make_source, database, pipelines_dir, load_lock)
                for name, make_source in jobs
            ]
            return refused + [f.result() for f in futures]
    except PipelinesBusy as busy:
        return refused + [LoadSummary(name, {}, 0.0, str(busy)) for name, _ in jobs]
