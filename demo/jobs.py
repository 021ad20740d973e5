"""The demo's Dagster runs, in a process of their own (`python -m demo.jobs`, started by
`demo.run`).

The code location reads where it works (warehouse, drop folder, dlt's state, the instance
in DAGSTER_HOME) and where the sources point (`SOURCES__<SYSTEM>__*`, SANDBOX_API_KEY) from
its process's environment, as a deployment's run workers do: keys never pass through
Dagster's config. So the demo gives this process the sandbox's environment when it starts
it, and nothing changes `os.environ` at run time, here or in the demo's own process.

Tool output (dlt, dbt, Dagster) goes to this process's stdout and stderr, which the demo
sends to its log; progress lines and the outcome go to the demo, one JSON object a line,
through the file descriptor `--report-fd` names.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date
from pathlib import Path
from typing import TextIO

from demo import DemoError
from orchestration.marts_metadata import query
from orchestration.resources import Warehouse
from orchestration.settings import warehouse_kind
from orchestration.validation import SAVE_WINDOW, validation_partitions


def _validation_days(database: Path, last: date) -> tuple[date, date]:
    """validation_30d's partitions the demo fills, in one backfill run: from the first day
    whose cohort has episodes to `last`. The days before have nothing to validate, and
    each day costs Dagster an event: every day since RETENTION_VALIDATION_START would
    take longer than the rest of the demo."""
    with Warehouse(kind=warehouse_kind(), database=str(database)).get_connection() as con:
        landed = query(con, "select min(first_landed_at) from marts.fct_exit_episodes")[1][0][0]
    first = date.fromisoformat(validation_partitions().get_first_partition_key())
    if landed is not None:
        first = max(first, landed.astimezone(UTC).date() + SAVE_WINDOW)
    return min(first, last), last


def _execute(
    defs, instance, job_name: str, say: Callable[[str], None], tags: Mapping[str, str] | None = None
) -> str:
    """One job of the code location, in this process; its run id. `tags`: a partition
    range, as a backfill launches it."""
    tags = tags or {}
    span = "...".join(tags.values())
    say(f"dagster: running job {job_name}" + (f" for {span}" if span else ""))
    job = defs.resolve_job_def(job_name)
    result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.is_step_failure and e.step_key]
        raise DemoError(f"run {result.run_id} of {job_name} failed in {', '.join(failed) or '?'}")
    return result.run_id[:8]


def run_jobs(
    database: Path, validation_day: date | None, say: Callable[[str], None]
) -> tuple[list[str], date | None]:
    """The code location's own jobs on the DAGSTER_HOME instance; the run ids and the
    first validation day filled."""
    from dagster import DagsterInstance
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from orchestration.definitions import build_definitions

    say("loading the code location (dbt manifest parsed if stale)")
    defs = build_definitions()
    first = None
    with DagsterInstance.get() as instance:
        run_ids = [_execute(defs, instance, "billing_sync", say)]
        if validation_day:  # the range reads the marts billing_sync has just built
            first, last = _validation_days(database, validation_day)
            tags = {
                ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
                ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
            }
            run_ids.append(_execute(defs, instance, "validation_30d_daily", say, tags))
        run_ids.append(_execute(defs, instance, "billing_writebacks_job", say))
    return run_ids, first


def _report(channel: TextIO, **message: object) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.jobs", description=__doc__)
    parser.add_argument("--database", type=Path, required=True)
    parser.add_argument("--validation-day", type=date.fromisoformat, default=None)
    parser.add_argument("--report-fd", type=int, required=True)
    args = parser.parse_args(argv)
    with os.fdopen(args.report_fd, "w") as channel:

        def say(line: str) -> None:  # in the log and, through the demo, on the console
            print(line, flush=True)
            _report(channel, say=line)

        try:
            run_ids, first = run_jobs(args.database, args.validation_day, say)
        except DemoError as exc:
            _report(channel, error=str(exc))
            return 1
        _report(channel, run_ids=run_ids, validation_from=first and first.isoformat())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
