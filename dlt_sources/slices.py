"""Sliced concurrent listing: a full listing split into time windows listed at once.

APIs list a resource as one cursor followed a page at a time, so a large resource moves at
one request per round trip (2-4 pages/s) whatever the rate limit allows. Here the listing
is a set of windows `[lo, hi)` on the records' sort field (a creation time), each listed by
its own cursor, up to `workers` requests in flight. One request is one task: a window's
next page is a new task, so a slow window never holds a worker.

**Adaptive split.** After a page with more to come, the page's own time span says how dense
the window is: the seconds it covered per page, against the seconds left, estimate the
pages left. A dense window (at least `MIN_PAGES_PER_PIECE` pages for each of 2 or more
pieces) is split while workers are idle; a sparse one just continues with its cursor. A
split cuts at the last record's second `s`: the records of `s` already handed over stay
handed over (`skip`), the rest of `s` is a window of its own (a cursor cannot be moved to
another window, and an API may order a second's records any way it likes), and the seconds
not yet reached become equal pieces. A 1-second window is never split: its cursor pages it.

**Nothing lost or doubled.** Every window holds exactly the records not yet handed over in
its range (less `skip`); a page ends the window or shrinks it to the seconds its cursor has
still to reach, with `skip` = the ids of the edge second already handed over. The engine
drops what a page returns outside its window or in `skip` (an API may over-fetch).
Records need a string `id`.

**Memory stays flat.** Requests are started by the generator itself, before each page it
hands over (so they run while the consumer takes the page): a consumer that is slow stops
new requests, so at most `workers` pages wait.

**One progress line.** The listing counts nothing itself: the source counts the records it
hands on (`common.Progress`), and a listing given that `progress` adds its windows (done,
in flight, waiting) to the same line, so a resource logs one line, not one per layer.

**Checkpoints.** `state["slices"]` always holds the windows not finished (as JSON), updated
before each page is handed over. When `checkpoint_seconds` have passed no new request is
started; the ones in flight finish and hand over their pages, and the generator returns,
leaving `state["slices"]` for dlt to commit with the load: the next run resumes there. A
finished listing removes the key. An error in a request is raised from the generator, so
the run fails and the state of the last load stays as it was.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from itertools import pairwise
from time import monotonic
from typing import Protocol

from dlt_sources.common import Progress

log = logging.getLogger("retention.extract")

STATE_KEY = "slices"
# Where a resource's state keeps the incremental cursor taken before a full listing began,
# until the listing's last window is done: then the source stores it as its real cursor,
# so whatever was created or changed while the listing ran is read by the next
# incremental run (one rule for every source).
PENDING_CURSOR_KEY = "slices_cursor"
# A piece of a split must promise at least this many pages, or the split's extra requests
# (one per piece, one for the tie second) cost more than the parallelism gains.
MIN_PAGES_PER_PIECE = 2
# How long a full listing runs before the run loads what it has and keeps the rest in
# state["slices"]: what a killed run loses at most (the next run resumes from the last
# load), against one more load (normalize, DuckDB merge, state commit) per interval. The
# sources' `checkpoint_seconds` default; dlt reads `SOURCES__CHECKPOINT_SECONDS`, or
# `SOURCES__<SYSTEM>__CHECKPOINT_SECONDS` for one system, before it.
DEFAULT_CHECKPOINT_SECONDS = 60.0


@dataclass(frozen=True)
class Window:
    """Records whose stamp is in [lo, hi) (epoch seconds), continued from `cursor` (the
    API's own; None = from the window's start), less the ids in `skip` (handed over before
    a split; all of them in the window's edge second)."""

    lo: int
    hi: int
    cursor: str | None = None
    skip: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.lo >= self.hi:
            raise ValueError(f"a window needs lo < hi, not [{self.lo}, {self.hi})")

    def to_state(self) -> dict:
        return {"lo": self.lo, "hi": self.hi, "cursor": self.cursor, "skip": sorted(self.skip)}

    @classmethod
    def from_state(cls, value: dict) -> Window:
        return cls(
            int(value["lo"]), int(value["hi"]), value.get("cursor"), frozenset(value["skip"])
        )


@dataclass(frozen=True)
class Page:
    """One response: the records in the window's range, and the cursor to the next page
    (None: the window has no more)."""

    records: list[dict]
    cursor: str | None


class WindowLister(Protocol):
    """One system's resource listed by windows (written by the system's source)."""

    name: str  # for logs, e.g. "stripe invoices"
    descending: bool  # True when the API lists a window newest first (Stripe)

    def page(self, window: Window) -> Page:
        """Exactly one HTTP request (and its retries)."""
        ...

    def stamp(self, record: dict) -> int:
        """The record's sort-field time, epoch seconds."""
        ...


def sliced_listing(
    lister: WindowLister,
    state: dict,
    span: tuple[int, int],
    *,
    workers: int,
    checkpoint_seconds: float | None = None,
    progress: Progress | None = None,
) -> Iterator[list[dict]]:
    """Every record with stamp in [span[0], span[1]) exactly once, as pages, listed by up to
    `workers` concurrent requests; windows dense with records are split adaptively.
    Progress lives in `state["slices"]`; a run that finds it there resumes from it and
    ignores `span`. After `checkpoint_seconds` the generator returns early, leaving the
    pending windows in `state["slices"]`; a finished listing removes the key. The
    resource's `progress` line, if given, tells the windows too."""
    if workers < 1:
        raise ValueError(f"{lister.name}: workers must be 1 or more, not {workers}")
    saved = state.get(STATE_KEY)
    if saved:
        windows = [Window.from_state(w) for w in saved]
        log.info("%s: resuming a full listing, %d windows pending", lister.name, len(windows))
    else:
        windows = [Window(*span)] if span[0] < span[1] else []
    listing = _Listing(lister, state, workers, checkpoint_seconds)
    if progress is not None:
        progress.detail = listing.windows
    yield from listing.run(windows)


class _Listing:
    """One run of a sliced listing: the windows waiting, those in flight, the counts."""

    def __init__(
        self, lister: WindowLister, state: dict, workers: int, checkpoint_seconds: float | None
    ):
        self.lister, self.state, self.workers = lister, state, workers
        self.deadline = None if checkpoint_seconds is None else monotonic() + checkpoint_seconds
        self.waiting: deque[Window] = deque()
        self.running: dict[Future[Page], Window] = {}
        self.finished = 0

    def run(self, windows: list[Window]) -> Iterator[list[dict]]:
        self.waiting.extend(windows)
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="slices")
        try:
            first_round = True  # always started, so a checkpoint of 0 still progresses
            while self.waiting or self.running:
                if first_round or not self._stopping():
                    self._start(pool)
                    first_round = False
                if not self.running:
                    break  # checkpoint: what waits stays in the state
                done, _ = wait(self.running, return_when=FIRST_COMPLETED)
                for future in done:
                    records = self._settle(future)
                    if not self._stopping():
                        self._start(pool)  # the next requests run while dlt takes the page
                    if records:
                        yield records
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        self._close()

    def _start(self, pool: ThreadPoolExecutor) -> None:
        while self.waiting and len(self.running) < self.workers:
            window = self.waiting.popleft()
            self.running[pool.submit(self.lister.page, window)] = window

    def _stopping(self) -> bool:
        return self.deadline is not None and monotonic() >= self.deadline

    def _settle(self, future: Future[Page]) -> list[dict]:
        """A finished request: its window's next windows queued, the state saved, and the
        records to hand over (an error in the request is raised here)."""
        window = self.running.pop(future)
        page = future.result()
        inside = [r for r in page.records if window.lo <= self.lister.stamp(r) < window.hi]
        follow = self._follow(window, inside, page.cursor)
        if follow is None:
            self.finished += 1
        else:
            self.waiting.extend(follow)
        self._save()
        return [r for r in inside if r["id"] not in window.skip]

    def _follow(
        self, window: Window, records: list[dict], cursor: str | None
    ) -> list[Window] | None:
        """What is left of `window` after a page of `records` (those inside it): None when
        it is done, else the window continued from the page's `cursor`, or split in pieces
        when dense and workers idle."""
        if cursor is None:
            return None
        if not records:
            return [replace(window, cursor=cursor)]
        stamps = [self.lister.stamp(r) for r in records]
        last = stamps[-1]
        edge = window.hi - 1 if self.lister.descending else window.lo
        skip = _tail(window, records, stamps, last == edge)
        if self.lister.descending:
            rest, covered = (window.lo, last), window.hi - last
            continued = Window(window.lo, last + 1, cursor, skip)
        else:
            rest, covered = (last + 1, window.hi), last - window.lo + 1
            continued = Window(last, window.hi, cursor, skip)
        pieces = self._pieces(rest, covered)
        if pieces < 2:
            return [continued]
        return [Window(last, last + 1, None, skip), *_cut(rest, pieces)]

    def _pieces(self, rest: tuple[int, int], covered: int) -> int:
        """How many windows the seconds not yet reached deserve: one per idle worker (and
        the one just freed), each worth MIN_PAGES_PER_PIECE pages at the density of the
        page just read, no more than one per second; fewer than 2 means no split."""
        if self._stopping():
            return 0
        seconds = rest[1] - rest[0]
        pages_left = seconds / max(covered, 1)
        free = self.workers - len(self.running) - len(self.waiting)
        return min(free, seconds, int(pages_left // MIN_PAGES_PER_PIECE))

    def _save(self) -> None:
        self.state[STATE_KEY] = [w.to_state() for w in (*self.running.values(), *self.waiting)]

    def _close(self) -> None:
        pending = len(self.running) + len(self.waiting)
        if pending:
            log.info("%s: checkpoint, %d windows pending", self.lister.name, pending)
        else:
            self.state.pop(STATE_KEY, None)

    def windows(self) -> str:
        """The windows' count, for the resource's progress line."""
        return (
            f"windows {self.finished:,} done, {len(self.running):,} in flight, "
            f"{len(self.waiting):,} waiting"
        )


def _tail(window: Window, records: list[dict], stamps: list[int], at_edge: bool) -> frozenset:
    """The ids handed over in the last record's second: the page's there, and the
    window's `skip` when the page ended in the window's edge second. A window of one
    second keeps its own `skip`: it is never split, and its cursor skips the rest."""
    if window.hi - window.lo == 1:
        return window.skip
    last = stamps[-1]
    tail = frozenset(r["id"] for r, s in zip(records, stamps, strict=True) if s == last)
    return tail | window.skip if at_edge else tail


def _cut(rest: tuple[int, int], pieces: int) -> list[Window]:
    """[lo, hi) in `pieces` windows of (nearly) equal seconds."""
    lo, hi = rest
    bounds = [lo + (hi - lo) * i // pieces for i in range(pieces + 1)]
    return [Window(a, b) for a, b in pairwise(bounds) if a < b]
