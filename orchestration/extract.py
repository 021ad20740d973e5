"""Run the billing and exit-session loads: the wiring the CLI and Dagster share.

Each billing system has its own dlt pipeline and dataset (`raw_stripe`, `raw_recurly`,
`raw_chargebee`, `raw_exit_sessions`). Systems extract and normalise in parallel; loads
into one DuckDB file take turns, since DuckDB allows one writer at a time (Postgres
loads run in parallel).

Where each source points: a real API key in the environment (`SOURCES__STRIPE__API_KEY`,
…) means the real service; otherwise the local sandbox at its default address with its
key. `SOURCES__<SYSTEM>__BASE_URL` overrides the address either way.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import dlt
from dlt.common.runtime.collector import LogCollector

from sandbox.cli import DEFAULT_PORTS
from sandbox.server import DEFAULT_API_KEY

BILLING_SYSTEMS = ("stripe", "recurly", "chargebee")
SOURCES = {
    "stripe": ("dlt_sources.stripe", "stripe_source"),
    "recurly": ("dlt_sources.recurly", "recurly_source"),
    "chargebee": ("dlt_sources.chargebee", "chargebee_source"),
}
DEFAULT_DATABASE = Path("warehouse.duckdb")
log = logging.getLogger("retention.extract")


@dataclass(frozen=True)
class Target:
    """Where one billing source reads from. The key is kept out of repr and logs."""

    system: str
    api_key: str = field(repr=False)
    base_url: str | None
    site: str | None = None

    @property
    def is_sandbox(self) -> bool:
        return self.base_url is not None and self.api_key == sandbox_key()

    def describe(self) -> str:
        return f"{self.system}: {'sandbox at ' + self.base_url if self.is_sandbox else self.base_url or 'the real service'}"


def sandbox_key(env: Mapping[str, str] = os.environ) -> str:
    return env.get("SANDBOX_API_KEY", DEFAULT_API_KEY)


def resolve_target(system: str, env: Mapping[str, str] = os.environ) -> Target:
    """A real key switches the source to the real service; no key means the sandbox."""
    prefix = f"SOURCES__{system.upper()}__"
    key = env.get(prefix + "API_KEY")
    base_url = env.get(prefix + "BASE_URL")
    if key and key != sandbox_key(env):
        return Target(system, key, base_url, env.get(prefix + "SITE"))
    default_url = f"http://127.0.0.1:{DEFAULT_PORTS[system]}"
    return Target(system, sandbox_key(env), base_url or default_url, env.get(prefix + "SITE"))


def unreachable(target: Target, timeout: float = 3.0) -> str | None:
    """Why `target`'s address cannot be used, with what to do; None when something answers.

    Checked before a run starts: without it, a sandbox that is not running costs minutes
    of retries and ends in errors that hide the refused connection. The real services'
    own hosts are left to the SDKs."""
    if target.base_url is None:
        return None
    parts = urlsplit(target.base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
        return None
    except OSError as exc:
        where = f"nothing answers at {parts.hostname}:{port} ({exc.strerror or exc})"
    variable = f"SOURCES__{target.system.upper()}__"
    if target.is_sandbox:
        return (
            f"{where}: start the sandbox with `retention sandbox serve`, or set "
            f"{variable}API_KEY to read the real {target.system}"
        )
    return f"{where}: check {variable}BASE_URL"


def billing_source(target: Target):
    """The dlt source of one billing system, configured for `target`."""
    module, name = SOURCES[target.system]
    factory = getattr(importlib.import_module(module), name)
    options = {"api_key": target.api_key, "base_url": target.base_url}
    if target.site:
        options["site"] = target.site
    if target.is_sandbox:  # the local sandbox has no rate limit to respect
        options["requests_per_second"] = None
    return factory(**options)


def destination(database: str | Path | None):
    """DuckDB file by default; Postgres when RETENTION_DESTINATION=postgres (credentials
    from DESTINATION__POSTGRES__CREDENTIALS, as dlt reads them)."""
    if os.environ.get("RETENTION_DESTINATION", "duckdb") == "postgres":
        return dlt.destinations.postgres()
    return dlt.destinations.duckdb(str(Path(database or DEFAULT_DATABASE).resolve()))


def pipeline(name: str, database: str | Path | None, pipelines_dir: str | Path | None = None):
    return dlt.pipeline(
        pipeline_name=f"retention_{name}",
        destination=destination(database),
        dataset_name=f"raw_{name}",
        pipelines_dir=str(pipelines_dir) if pipelines_dir else None,
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


def _run_one(name: str, source, database, pipelines_dir, load_lock) -> LoadSummary:
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
        p.extract(source)
        normalized = p.normalize()
        with load_lock:
            p.load(raise_on_failed_jobs=True)
        rows = {
            table: count
            for table, count in normalized.row_counts.items()
            if not table.startswith("_dlt")
        }
        return LoadSummary(name, rows, time.perf_counter() - started)
    except Exception as exc:  # one system failing must not hide the others' results
        message = explain(exc, database)
        log.error("%s: load failed: %s", name, message)
        return LoadSummary(name, {}, time.perf_counter() - started, message)


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


def explain(exc: BaseException, database) -> str:
    """The failure as the user can act on it. dlt wraps a DuckDB file held by another
    process in a message about credentials; the lock, and who holds it, is the cause."""
    chain, seen = exc, []
    while chain is not None and chain not in seen:
        seen.append(chain)
        text = str(chain)
        if "Conflicting lock is held" in text or "Could not set lock on file" in text:
            holder = _LOCK_HOLDER.search(text)
            who = f" (PID {holder['pid']}: {holder['program']})" if holder else ""
            return (
                f"the warehouse {Path(database or DEFAULT_DATABASE).resolve()} is locked by "
                f"another process{who}: close it (a BI tool, a notebook, `dagster dev`, or "
                "another `retention extract`) and run again"
            )
        chain = chain.__cause__ or chain.__context__
    return f"{type(exc).__name__}: {exc}"


def run_extract(
    systems: tuple[str, ...] = BILLING_SYSTEMS,
    database: str | Path | None = None,
    exit_sessions_folder: str | Path | None = None,
    pipelines_dir: str | Path | None = None,
    env: Mapping[str, str] = os.environ,
) -> list[LoadSummary]:
    """Load the given billing systems (and the exit-session folder, if given) in parallel."""
    jobs, refused = [], []
    for system in systems:
        target = resolve_target(system, env)
        log.info("%s", target.describe())
        if (reason := unreachable(target)) is not None:
            refused.append(LoadSummary(system, {}, 0.0, reason))
            continue
        jobs.append((system, billing_source(target)))
    if exit_sessions_folder is not None:
        from dlt_sources.exit_sessions import exit_sessions_source

        jobs.append(("exit_sessions", exit_sessions_source(folder=str(exit_sessions_folder))))
    parallel_loads = os.environ.get("RETENTION_DESTINATION") == "postgres"
    load_lock = contextlib.nullcontext() if parallel_loads else threading.Lock()
    with ThreadPoolExecutor(max_workers=len(jobs) or 1) as pool:
        futures = [
            pool.submit(_run_one, name, source, database, pipelines_dir, load_lock)
            for name, source in jobs
        ]
        return refused + [f.result() for f in futures]
