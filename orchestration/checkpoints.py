"""Checkpointed full syncs: a dlt source is run again until no full listing is unfinished.

A full listing of a large resource (`dlt_sources.slices.sliced_listing`) stops after
`checkpoint_seconds` (SOURCES__CHECKPOINT_SECONDS) and keeps its pending windows in the
resource's dlt state under `"slices"`. The load that follows commits those rows and that
state together, so a run killed later resumes from the last commit without listing a
finished window again. The runner (`retention extract`, the Dagster load assets) repeats
extract/normalize/load in rounds until no resource holds pending windows; an incremental
run has none and takes exactly one round.

Only the round that starts a full listing writes the source's `syncs` row (the validation
time T): each later round, a resumed run's first included, is built with
`continues_listing=True` (`round_source`), so T is the clock at the listing's start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from dlt.extract.source import DltSource

from dlt_sources.slices import STATE_KEY

Round = TypeVar("Round")


class NoProgress(RuntimeError):
    """A round left a full listing's pending windows exactly as they were: running again
    would loop forever."""


def unfinished_listings(
    state: Mapping[str, Any], resources: set[str] | None = None
) -> dict[str, Any]:
    """The resources of a dlt pipeline's `state` whose full listing is unfinished, as
    `"<source> <resource>"` -> their pending windows (the `"slices"` value, non-empty).
    `resources`: only these resource names (a Dagster run of a subset leaves the others'
    pending windows for a run that selects them); None = all."""
    found: dict[str, Any] = {}
    for source, source_state in (state.get("sources") or {}).items():
        for resource, resource_state in (source_state.get("resources") or {}).items():
            if resources is not None and resource not in resources:
                continue
            pending = resource_state.get(STATE_KEY) if isinstance(resource_state, Mapping) else None
            if pending:
                found[f"{source} {resource}"] = pending
    return found


def round_source(
    make_source: Callable[..., DltSource],
    state: Mapping[str, Any],
    resources: set[str] | None = None,
) -> DltSource:
    """The source for the next round, given the pipeline's `state` before it: told that it
    continues a full listing (`continues_listing=True`, so it writes no `syncs` row) when
    the state already holds an unfinished one (`unfinished_listings`), else built as it
    is. A source that never lists in windows (exit sessions) never has one, so it is
    never asked. The state must be the warehouse's (read after `sync_destination`): a
    run killed after a round resumes a listing begun by another process."""
    if unfinished_listings(state, resources):
        return make_source(continues_listing=True)
    return make_source()


def run_rounds(
    run_round: Callable[[], Round],
    pending: Callable[[], dict[str, Any]],
    log: logging.Logger,
) -> list[Round]:
    """Call `run_round` (one extract/normalize/load) until `pending()` (the unfinished
    listings after it, `unfinished_listings`) is empty; each round's result, in order.

    A listing whose pending windows are the same after a round as before it made no
    progress (a checkpoint too short to finish one request, a lister that never advances):
    `NoProgress`, naming it, instead of running forever."""
    results: list[Round] = []
    before: dict[str, Any] = {}
    while True:
        results.append(run_round())
        after = pending()
        if not after:
            return results
        stuck = sorted(name for name, windows in after.items() if before.get(name) == windows)
        if stuck:
            raise NoProgress(
                f"full listing of {', '.join(stuck)} made no progress in round "
                f"{len(results)}: the same windows are pending as before it; raise "
                "SOURCES__CHECKPOINT_SECONDS (a round must finish at least one request), "
                "and report it if that does not help"
            )
        for name, windows in sorted(after.items()):
            log.info("full listing of %s continues: %d windows pending", name, len(windows))
        before = after
