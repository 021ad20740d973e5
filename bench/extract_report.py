"""The extraction bench's figures and printout (bench_extract.py measures, this module
counts and prints): one line per run as it ends, then a summary with the systems side by
side. Stdlib only: the bench's child processes import it under the baseline's tree too."""

from __future__ import annotations

import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

# A Stripe list endpoint is counted apart from its object's (`GET /v1/invoices` and
# `GET /v1/invoices/{id}`), as the sandbox's per-endpoint budget counts them.
_ID_SEGMENT = re.compile(r"/(?=[^/]*\d)[^/]+")
# The first sync of this many subscriptions per system, for the README table.
SUBSCRIPTIONS = (10_000, 100_000, 1_000_000)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Traffic:
    """The requests one run sent, from the sandbox's request log."""

    ok: int = 0
    limited: int = 0  # answered 429
    failed: int = 0  # any other error, or dropped
    span: float = 0.0  # seconds from the first request to the last answered one
    busiest: tuple[str, int] = ("", 0)  # the endpoint sent most requests, and how many

    @classmethod
    def from_log(cls, entries: list[dict]) -> Traffic:
        statuses = Counter(e["status"] for e in entries)
        times = [e["wall_time"] for e in entries]
        endpoints = Counter(
            f"{e['method']} {_ID_SEGMENT.sub('/{id}', e['path'])}"
            for e in entries
            if 200 <= e["status"] < 400
        )
        return cls(
            ok=sum(n for status, n in statuses.items() if 200 <= status < 400),
            limited=statuses[429],
            failed=sum(n for status, n in statuses.items() if not 200 <= status < 400)
            - statuses[429],
            span=(max(times) - min(times)) if times else 0.0,
            busiest=endpoints.most_common(1)[0] if endpoints else ("", 0),
        )


@dataclass
class Run:
    system: str
    label: str  # full, incremental, fetch, before, after
    records: int
    seconds: float
    rss_mib: float  # the whole run's peak
    rss_extract_mib: float  # the peak while dlt extracted (the source listing)
    cpu_seconds: float  # the extract process's own, user + system
    rounds: int = 1
    traffic: Traffic = field(default_factory=Traffic)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        t = self.traffic
        return (
            f"{self.system:<10} {self.label:<12} {self.records:>10,} records {self.seconds:9.1f} s "
            f"{self.rate:>8,.0f} rec/s  {t.ok:>7,} requests ({t.limited:,} 429, {t.failed:,} "
            f"other errors) in {t.span:,.1f} s  cpu {self.cpu_seconds:,.1f} s  rounds {self.rounds}  "
            f"peak RSS {self.rss_mib:,.0f} MiB (extracting {self.rss_extract_mib:,.0f})"
        )


@dataclass
class Report:
    systems: list[str]
    customers: int
    limits: dict[str, float]  # published requests/s per system
    commit: str
    network: str
    generated: dict[int, float] = field(default_factory=dict)
    latency: list[Run] = field(default_factory=list)
    sequential: dict[int, list[Run]] = field(default_factory=dict)  # per size
    throughput: list[Run] = field(default_factory=list)
    rss: dict[int, list[Run]] = field(default_factory=dict)
    subscriptions: dict[int, dict[str, int]] = field(default_factory=dict)  # per scale

    def find(self, runs: list[Run], system: str, label: str) -> Run | None:
        return next((r for r in runs if r.system == system and r.label == label), None)

    def row(self, label: str, runs: list[Run], run_label: str, cell: Callable[[Run], str]) -> None:
        cells = []
        for system in self.systems:
            run = self.find(runs, system, run_label)
            cells.append(cell(run) if run else "-")
        print(f"  {label:<46}{''.join(f'{c:>18}' for c in cells)}")

    def print(self) -> None:
        print(f"\nfirst syncs, per system side by side; code at {self.commit}")
        print(f"  {'':<46}{''.join(f'{s:>18}' for s in self.systems)}")
        self.print_latency()
        self.print_sequential()
        self.print_throughput()
        self.print_rss()
        self.print_first_sync()
        for customers, seconds in sorted(self.generated.items()):
            print(f"scenario of {customers:,} customers generated in {seconds:.1f} s")

    def print_latency(self) -> None:
        if not self.latency:
            return
        runs = self.latency
        print(f"{self.network}, {self.customers:,} customers, default pacing")
        self.row(
            "published limit, requests/s", runs, "full", lambda r: f"{self.limits[r.system]:.1f}"
        )
        self.row("full sync, s", runs, "full", lambda r: f"{r.seconds:,.1f}")
        self.row("  records", runs, "full", lambda r: f"{r.records:,}")
        self.row(
            "  requests answered (429s)",
            runs,
            "full",
            lambda r: f"{r.traffic.ok:,} ({r.traffic.limited:,})",
        )
        self.row(
            "  requests/s while listing",
            runs,
            "full",
            lambda r: f"{r.traffic.ok / r.traffic.span:,.1f}",
        )
        self.row(
            "  share of the limit (goal >= 0.85)", runs, "full", lambda r: f"{self.share(r):.2f}"
        )
        self.row(
            "  ceiling, s (requests / limit)", runs, "full", lambda r: f"{self.ceiling(r):,.1f}"
        )
        self.row(
            "  busiest endpoint, requests", runs, "full", lambda r: f"{r.traffic.busiest[1]:,}"
        )
        self.row("  checkpoint rounds", runs, "full", lambda r: f"{r.rounds}")
        self.row(
            "incremental after 1% changed, s", runs, "incremental", lambda r: f"{r.seconds:,.1f}"
        )
        self.row(
            "  share of the full sync (goal <= 0.05)",
            runs,
            "incremental",
            lambda r: f"{r.seconds / self.find(runs, r.system, 'full').seconds:.3f}",
        )
        self.row("  requests", runs, "incremental", lambda r: f"{r.traffic.ok:,}")

    def share(self, run: Run) -> float:
        return (
            run.traffic.ok / run.traffic.span / self.limits[run.system] if run.traffic.span else 0.0
        )

    def ceiling(self, run: Run) -> float:
        return run.traffic.ok / self.limits[run.system]

    def print_sequential(self) -> None:
        if not self.sequential:
            return
        print(f"{self.network}, sequential paging (before #14) beside the current sources")
        for customers, runs in sorted(self.sequential.items()):
            for label in ("before", "after"):
                self.row(
                    f"{label}, full sync at {customers:,}, s (measured)",
                    runs,
                    label,
                    lambda r: f"{r.seconds:,.1f}",
                )
                self.row(
                    "  requests (429s)",
                    runs,
                    label,
                    lambda r: f"{r.traffic.ok:,} ({r.traffic.limited:,})",
                )
        every = [run for runs in self.sequential.values() for run in runs]
        self.row(
            f"before at {self.customers:,}, min (PROJECTED)",
            every,
            "before",
            lambda r: f"{self.projected(r.system) / 60:,.0f}",
        )
        if self.latency:
            self.row(
                f"after at {self.customers:,}, min (measured above)",
                self.latency,
                "full",
                lambda r: f"{r.seconds / 60:,.1f}",
            )

    def projected(self, system: str) -> float:
        """The sequential sync's seconds at `customers` on the line through the measured
        sizes (least squares; through the origin from one size)."""
        points = [
            (customers, run.seconds)
            for customers, runs in self.sequential.items()
            if (run := self.find(runs, system, "before"))
        ]
        if len(points) == 1:
            ((n, seconds),) = points
            return seconds * self.customers / n
        slope, intercept = statistics.linear_regression(*zip(*points, strict=True))
        return intercept + slope * self.customers

    def print_throughput(self) -> None:
        if not self.throughput:
            return
        runs = self.throughput
        print(f"no latency, no limits, pacing off, {self.customers:,} customers")
        self.row(
            "fetch only (same lister, no Arrow/dlt), rec/s",
            runs,
            "fetch",
            lambda r: f"{r.rate:,.0f}",
        )
        self.row("full load, rec/s", runs, "full", lambda r: f"{r.rate:,.0f}")
        self.row("  vs fetch only (goal >= 0.8)", runs, "full", lambda r: f"{self.vs_fetch(r):.2f}")
        self.row("  records, s", runs, "full", lambda r: f"{r.records:,} {r.seconds:,.1f}")
        self.row(
            "incremental after 1% changed, s", runs, "incremental", lambda r: f"{r.seconds:,.1f}"
        )
        self.row(
            "  vs full (goal <= 0.05)",
            runs,
            "incremental",
            lambda r: f"{r.seconds / self.find(runs, r.system, 'full').seconds:.3f}",
        )
        if "stripe" in self.systems:
            full = self.find(runs, "stripe", "full")
            if full:
                print(f"  Stripe objects/s, full load (goal >= 10,000): {full.rate:,.0f}")

    def vs_fetch(self, run: Run) -> float:
        fetch = self.find(self.throughput, run.system, "fetch")
        return run.rate / fetch.rate if fetch and fetch.rate else 0.0

    def print_rss(self) -> None:
        if not self.rss:
            return
        print("peak RSS of the extract process, full load (goal: flat with size)")
        for customers, runs in sorted(self.rss.items()):
            self.row(f"{customers:,} customers: records", runs, "full", lambda r: f"{r.records:,}")
            self.row(
                "  MiB while extracting / whole run",
                runs,
                "full",
                lambda r: f"{r.rss_extract_mib:,.0f} / {r.rss_mib:,.0f}",
            )

    def print_first_sync(self) -> None:
        """The latency part's full syncs per subscription, at the README's sizes: at the
        measured pace (linear in subscriptions, start-up included) and at the ceiling
        (the requests a subscription took, at the published limit)."""
        subs = self.subscriptions.get(self.customers)
        if not self.latency or not subs:
            return
        print(f"first sync by subscriptions, PROJECTED from {self.customers:,} customers")
        self.row(
            "  measured: subscriptions, min",
            self.latency,
            "full",
            lambda r: f"{subs[r.system]:,} {r.seconds / 60:,.1f}",
        )
        for n in SUBSCRIPTIONS:
            self.row(
                f"{n:,} subscriptions: measured pace, min",
                self.latency,
                "full",
                lambda r, n=n: f"{r.seconds * n / subs[r.system] / 60:,.1f}",
            )
            self.row(
                "  at the ceiling (requests / limit), min",
                self.latency,
                "full",
                lambda r, n=n: f"{self.ceiling(r) * n / subs[r.system] / 60:,.1f}",
            )
