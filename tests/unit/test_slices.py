"""The sliced listing engine on a fake in-memory lister: every record exactly once, at any
page size, order, density, checkpoint and kill; splits happen where data is dense; memory
bounded by the workers; errors raised."""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise

import pytest

from dlt_sources import slices
from dlt_sources.common import Progress
from dlt_sources.slices import Page, Window, sliced_listing


@dataclass
class FakeLister:
    """A list API over records in memory: a window's records in (stamp, id) order, or its
    reverse; the cursor is the last id handed out, as Stripe's `starting_after`.

    `inclusive`: the upper bound is inclusive (an API that over-fetches the second `hi`).
    `bounds_in_cursor`: the cursor carries the bounds of the window's first request and a
    continued request uses those, not the window's (Recurly's `next` path)."""

    records: list[dict]
    page_size: int
    descending: bool
    name: str = "fake"
    requests: int = 0
    windows: set[tuple[int, int]] = field(default_factory=set)
    fail_at: int | None = None
    inclusive: bool = False
    bounds_in_cursor: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def stamp(self, record: dict) -> int:
        return record["created"]

    def page(self, window: Window) -> Page:
        with self._lock:
            self.requests += 1
            self.windows.add((window.lo, window.hi))
            if self.fail_at is not None and self.requests >= self.fail_at:
                raise ConnectionError("the fake API is down")
        lo, hi, after = window.lo, window.hi, window.cursor
        if after is not None and self.bounds_in_cursor:
            lo, hi, after = after.split(":", 2)
            lo, hi = int(lo), int(hi)
        top = hi + 1 if self.inclusive else hi
        rows = sorted(
            (r for r in self.records if lo <= r["created"] < top),
            key=lambda r: (r["created"], r["id"]),
            reverse=self.descending,
        )
        if after is not None:
            ids = [r["id"] for r in rows]
            rows = rows[ids.index(after) + 1 :]
        page = rows[: self.page_size]
        if len(rows) <= self.page_size:
            return Page(page, None)
        return Page(
            page, f"{lo}:{hi}:{page[-1]['id']}" if self.bounds_in_cursor else page[-1]["id"]
        )


def make_records(rng: random.Random, count: int, seconds: int, start: int = 1_000) -> list[dict]:
    """`count` records over `seconds` seconds: with few seconds, many share one."""
    return [{"id": f"r{i}", "created": start + rng.randrange(seconds)} for i in range(count)]


def sync_until_done(
    lister: FakeLister,
    span: tuple[int, int],
    rng: random.Random,
    workers: int,
    checkpoints: bool,
    kills: bool,
) -> Counter:
    """Runs as the runner does: each run's state is committed when it ends (as dlt commits
    it with the load); a killed run commits nothing, its pages are never loaded."""
    committed: dict = {}
    loaded: Counter = Counter()
    for _ in range(10_000):
        state = copy.deepcopy(committed)
        checkpoint = rng.choice([0, 0.0005, 0.002]) if checkpoints else None
        pages = sliced_listing(lister, state, span, workers=workers, checkpoint_seconds=checkpoint)
        kill_after = rng.randrange(6) if kills and rng.random() < 0.3 else None
        run: list[str] = []
        for number, page in enumerate(pages):
            if number == kill_after:
                pages.close()
                break
            run += [r["id"] for r in page]
        else:
            committed = state
            loaded.update(run)
            if "slices" not in state:
                return loaded
    raise AssertionError("the listing never finished")


@pytest.mark.parametrize("seed", range(60))
def test_every_record_exactly_once(seed: int) -> None:
    rng = random.Random(seed)
    count = rng.choice([0, 1, 5, 150, 600])
    seconds = rng.choice([1, 3, 20, 500, 100_000])
    records = make_records(rng, count, seconds)
    lister = FakeLister(
        records,
        page_size=rng.randint(1, 100),
        descending=rng.random() < 0.5,
        inclusive=rng.random() < 0.3,
        bounds_in_cursor=rng.random() < 0.3,
    )
    lo = 1_000 - rng.choice([0, 50_000])
    loaded = sync_until_done(
        lister,
        (lo, 1_000 + seconds + 1),
        rng,
        workers=rng.randint(1, 8),
        checkpoints=rng.random() < 0.6,
        kills=rng.random() < 0.5,
    )
    assert loaded == Counter(r["id"] for r in records)


def test_only_the_span_is_listed() -> None:
    records = [{"id": f"r{s}", "created": s} for s in range(100)]
    lister = FakeLister(records, page_size=7, descending=True)
    got = [r["id"] for page in sliced_listing(lister, {}, (20, 40), workers=3) for r in page]
    assert sorted(got) == sorted(f"r{s}" for s in range(20, 40))


def test_dense_windows_split_and_a_second_is_paged_not_split() -> None:
    rng = random.Random(7)
    dense = make_records(rng, 2_000, 1_000)
    tie = [{"id": f"t{i}", "created": 500} for i in range(300)]
    lister = FakeLister(dense + tie, page_size=10, descending=True)
    state: dict = {}
    got = Counter(
        r["id"] for page in sliced_listing(lister, state, (0, 2_000), workers=6) for r in page
    )
    assert got == Counter(r["id"] for r in dense + tie)
    assert len(lister.windows) > 6, "a dense listing was not split"
    assert all(hi - lo >= 1 for lo, hi in lister.windows)
    assert "slices" not in state


def test_sparse_listing_follows_its_cursor() -> None:
    """Three pages spread over the span: each page says little is left, so no split."""
    records = [{"id": f"r{i}", "created": 400_000 * i} for i in range(25)]
    lister = FakeLister(records, page_size=10, descending=False)
    list(sliced_listing(lister, {}, (0, 10_000_000), workers=4))
    assert lister.requests == 3


def test_a_slow_consumer_stops_the_requests() -> None:
    """While the consumer holds a page, the requests in flight end and no new one starts:
    at most `workers` pages wait for it, whatever the account's size."""
    records = make_records(random.Random(3), 3_000, 2_000)
    lister = FakeLister(records, page_size=5, descending=True)
    pages = sliced_listing(lister, {}, (0, 5_000), workers=4)
    for _ in range(3):
        next(pages)
    time.sleep(0.3)  # the requests in flight finish
    held = lister.requests
    time.sleep(0.3)
    assert lister.requests == held
    assert sum(1 for _ in pages) > 0
    assert lister.requests > held


def test_checkpoint_leaves_the_pending_windows_and_resumes() -> None:
    records = make_records(random.Random(5), 500, 400)
    lister = FakeLister(records, page_size=10, descending=True)
    state: dict = {}
    first = [
        r["id"]
        for p in sliced_listing(lister, state, (0, 2_000), workers=2, checkpoint_seconds=0)
        for r in p
    ]
    assert state["slices"], "a checkpoint left no pending window"
    pending = [Window.from_state(w) for w in state["slices"]]
    assert all(isinstance(w, Window) for w in pending)
    rest = [r["id"] for p in sliced_listing(lister, state, (0, 0), workers=2) for r in p]
    assert sorted(first + rest) == sorted(r["id"] for r in records)
    assert "slices" not in state


def test_an_error_in_a_request_fails_the_listing() -> None:
    records = make_records(random.Random(9), 500, 400)
    lister = FakeLister(records, page_size=10, descending=False, fail_at=4)
    with pytest.raises(ConnectionError, match="down"):
        list(sliced_listing(lister, {}, (0, 2_000), workers=3))


def test_window_state_round_trip_and_bounds() -> None:
    window = Window(5, 9, "cur", frozenset({"b", "a"}))
    assert Window.from_state(window.to_state()) == window
    assert window.to_state()["skip"] == ["a", "b"]
    with pytest.raises(ValueError, match=r"lo < hi"):
        Window(9, 9)
    with pytest.raises(ValueError, match="workers"):
        list(sliced_listing(FakeLister([], 1, True), {}, (0, 1), workers=0))


def test_cut_covers_the_range_without_gaps() -> None:
    pieces = slices._cut((10, 33), 4)
    assert pieces[0].lo == 10 and pieces[-1].hi == 33
    assert all(a.hi == b.lo for a, b in pairwise(pieces))


def test_the_listing_tells_its_windows_on_the_resources_progress_line_and_logs_none_of_its_own(
    caplog,
):
    records = make_records(random.Random(3), 300, 50)
    lister = FakeLister(records, page_size=10, descending=True)
    progress = Progress("fake")
    with caplog.at_level(logging.INFO, logger="retention.extract"):
        for page in sliced_listing(lister, {}, (1_000, 1_050), workers=3, progress=progress):
            progress.page(len(page))
        progress.done()
    lines = [r.getMessage() for r in caplog.records if "records/s" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("fake: extracted 300 records")
    assert lines[0].endswith(", 0 in flight, 0 waiting")
    assert "windows 0 done" not in lines[0]
