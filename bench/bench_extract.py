"""Full syncs at the APIs' rate ceilings, per billing system side by side (#14).

Parts (`--only`, repeatable; default all four):

- `latency`: the sandbox answers each request in 300 ± 100 ms and enforces each vendor's
  live rate limits; the sources run with their default pacing (the published limit less
  headroom). Per system: the full sync's time, its requests/s as a share of the limit,
  the ceiling time (requests ÷ limit), and an incremental run after 1% of subscriptions
  changed, as a share of the full time.
- `sequential`: the same network, with the sources as they were before #14 (`--baseline`
  commit: one request at a time per resource), paced at the limit. At 100,000 customers
  that takes hours, so it runs at the `--sequential-customers` sizes and the time is
  projected to `--customers` on the line through them (least squares), labelled
  "projected"; the current sources run at the same small sizes beside it, measured.
- `throughput`: the sandbox answers at once, no limits, pacing off: records/s of a full
  and an incremental load beside fetching the same pages with the same lister (no Arrow,
  no dlt), the ratio, and Stripe's objects/s.
- `rss`: the peak RSS of the extract process (not the sandbox's) of a full load at each
  `--rss-customers` size: flat with the account's size is the goal.

Every load runs in a process of its own (its peak RSS is its own); the sandbox runs in
another (`retention sandbox serve`), as in production where the APIs are elsewhere.
Requests are counted from the sandbox's request log. Progress goes to stderr; each run's
line, then the summary table, to stdout.

Run: .venv/bin/python bench/bench_extract.py [--only latency] [--customers 100000]
     [--systems stripe,recurly] [--sequential-customers 2000,5000] [--rss-customers 100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from extract_report import Report, Run, Traffic, progress
from sandbox_process import generate, served

# Both exist in the baseline's tree too, which the child processes may run under.
from billing_clients.systems import BILLING_SYSTEMS
from billing_clients.targets import SANDBOX_API_KEY

ROOT = Path(__file__).resolve().parent.parent
FIRST_PORT = 12311  # Stripe's; Recurly and Chargebee on the next two
# The commit before #14's sources: sequential paging within each resource.
BASELINE = "08e31a0"
# A live-mode key (Stripe's mode is its key's prefix); the sandbox accepts only its one key.
LIVE_KEY = "sk_live_bench"
PARTS = ("latency", "sequential", "throughput", "rss")
CHANGED_SHARE = 0.01
SEED = 9


def limit_mode(system: str, chargebee_plan: str) -> str:
    """The `billing_clients.pacing.LIMITS` mode of each system in the live runs."""
    return {"stripe": "live", "recurly": "production", "chargebee": chargebee_plan}[system]


def per_second(system: str, chargebee_plan: str) -> float:
    """The published limit in requests a second (over the vendor's own window)."""
    from billing_clients.pacing import LIMITS

    limit = LIMITS[system][limit_mode(system, chargebee_plan)]
    return limit.requests / limit.window


def network_options(latency_ms: float, jitter_ms: float, chargebee_plan: str) -> list[str]:
    """`retention sandbox serve` flags for the real network: latency and live limits."""
    return [
        f"--latency-ms={latency_ms:g}",
        f"--jitter-ms={jitter_ms:g}",
        "--rate-limits=live",
        f"--chargebee-plan={chargebee_plan}",
        f"--api-key={LIVE_KEY}",
    ]


def pacing_settings(chargebee_plan: str) -> dict[str, str]:
    """The sources' settings that say which published limit applies to the key."""
    return {
        "SOURCES__RECURLY__SITE_MODE": "production",
        "SOURCES__CHARGEBEE__PLAN": chargebee_plan,
    }


# --------------------------------------------------------------------------- child runs


class Bench:
    """One scenario served, and the child processes that load from it."""

    def __init__(
        self, work: Path, key: str, env: dict[str, str], ports: dict[str, int], code: Path = ROOT
    ):
        self.work, self.key, self.env, self.ports, self.code = work, key, env, ports, code
        self.subscriptions: dict[str, int] = {}  # per system, counted by `change`

    def url(self, system: str) -> str:
        return f"http://127.0.0.1:{self.ports[system]}"

    def child(self, spec: dict) -> dict:
        """Run one load, fetch or change in a fresh process with `self.code` first on the
        path (the current tree, or the baseline's); its JSON answer."""
        spec = {"key": self.key, "url": self.url(spec["system"]), **spec}
        env = os.environ | {"RUNTIME__DLTHUB_TELEMETRY": "false"} | self.env
        env["PYTHONPATH"] = str(self.code)
        done = subprocess.run(  # its log passes through to stderr, as progress
            [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
            cwd=self.code,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"{spec['system']} {spec['mode']} failed (its log above)")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def run(self, system: str, label: str, mode: str, options: dict | None = None) -> Run:
        """One child run, with the sandbox's count of the requests it sent."""
        clear_log(self.url(system), self.key)
        result = self.child(
            {
                "system": system,
                "mode": mode,
                "options": options or {},
                "work": str(self.work / system),
            }
        )
        run = Run(
            system,
            label,
            result["records"],
            result["seconds"],
            result["rss_mib"],
            result["rss_extract_mib"],
            result["cpu_seconds"],
            result["rounds"],
            read_traffic(self.url(system), self.key),
        )
        print(run.line(), flush=True)
        return run

    def change(self, system: str, scenario: Path) -> None:
        """Cancel 1% of the system's subscriptions at period end, through its SDK."""
        result = self.child(
            {"system": system, "mode": "change", "scenario": str(scenario), "work": ""}
        )
        self.subscriptions[system] = result["subscriptions"]
        progress(f"{system}: {result['changed']:,} subscriptions changed")


def clear_log(url: str, key: str) -> None:
    _admin(url, key, "DELETE")


def read_traffic(url: str, key: str) -> Traffic:
    return Traffic.from_log(_admin(url, key, "GET")["data"])


def _admin(url: str, key: str, method: str) -> dict:
    import urllib.request

    request = urllib.request.Request(
        f"{url}/_sandbox/requests", method=method, headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.loads(answer.read())


def baseline_tree(commit: str, dest: Path) -> Path:
    """The project's files at `commit`, unpacked into `dest` (no work tree of git's)."""
    archive = dest / "baseline.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(ROOT), "archive", commit], stdout=out, check=True)
    tree = dest / f"baseline-{commit}"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    archive.unlink()
    return tree


# --------------------------------------------------------------------------- parts


def scenario_at(work: Path, customers: int, report: Report) -> Path:
    path = work / f"scenario_{customers}.json"
    if not path.exists():
        progress(f"generating {customers:,} customers")
        report.generated[customers] = generate(path, customers, seed=SEED)
        progress(f"generated in {report.generated[customers]:.1f} s")
    return path


def sync_pair(bench: Bench, system: str, scenario: Path, options: dict | None) -> list[Run]:
    """A full load, 1% of subscriptions changed, an incremental load."""
    full = bench.run(system, "full", "load", options)
    bench.change(system, scenario)
    return [full, bench.run(system, "incremental", "load", options)]


def in_parallel(systems: list[str], work) -> list[Run]:
    """`work(system)` for every system at once, as `retention extract` runs them."""
    with ThreadPoolExecutor(len(systems)) as pool:
        return [run for runs in pool.map(work, systems) for run in runs]


def latency_part(args, work: Path, report: Report) -> None:
    scenario = scenario_at(work, args.customers, report)
    options = network_options(args.latency_ms, args.jitter_ms, args.chargebee_plan)
    with served(scenario, args.ports, options=options) as pid:
        progress(f"latency: sandbox up ({sandbox_rss(pid):,.0f} MiB)")
        bench = Bench(work / "latency", LIVE_KEY, pacing_settings(args.chargebee_plan), args.ports)
        report.latency = in_parallel(args.systems, lambda s: sync_pair(bench, s, scenario, None))
    report.subscriptions[args.customers] = bench.subscriptions


def sequential_part(args, work: Path, report: Report) -> None:
    tree = baseline_tree(args.baseline, work)
    options = network_options(args.latency_ms, args.jitter_ms, args.chargebee_plan)
    settings = pacing_settings(args.chargebee_plan)
    for customers in args.sequential_customers:
        scenario = scenario_at(work, customers, report)
        with served(scenario, args.ports, options=options):
            before = Bench(work / f"before-{customers}", LIVE_KEY, settings, args.ports, code=tree)
            after = Bench(work / f"after-{customers}", LIVE_KEY, settings, args.ports)

            def both(system: str, before=before, after=after) -> list[Run]:
                paced = {"requests_per_second": per_second(system, args.chargebee_plan)}
                return [
                    before.run(system, "before", "load", paced),
                    after.run(system, "after", "load", None),
                ]

            report.sequential[customers] = in_parallel(args.systems, both)


def throughput_part(args, work: Path, report: Report) -> None:
    scenario = scenario_at(work, args.customers, report)
    with served(scenario, args.ports) as pid:
        progress(f"throughput: sandbox up ({sandbox_rss(pid):,.0f} MiB)")
        bench = Bench(work / "throughput", SANDBOX_API_KEY, {}, args.ports)
        unpaced = {"requests_per_second": None}
        for system in args.systems:  # one at a time: each has the machine to itself
            report.throughput.append(bench.run(system, "fetch", "fetch", unpaced))
            report.throughput.extend(sync_pair(bench, system, scenario, unpaced))
    report.subscriptions[args.customers] = bench.subscriptions
    report.rss.setdefault(args.customers, []).extend(
        run for run in report.throughput if run.label == "full"
    )


def rss_part(args, work: Path, report: Report) -> None:
    for customers in args.rss_customers:
        if customers in report.rss:
            continue
        scenario = scenario_at(work, customers, report)
        with served(scenario, args.ports, timeout=3600) as pid:
            progress(f"rss: {customers:,} customers served ({sandbox_rss(pid):,.0f} MiB)")
            bench = Bench(work / f"rss-{customers}", SANDBOX_API_KEY, {}, args.ports)
            report.rss[customers] = [
                bench.run(system, "full", "load", {"requests_per_second": None})
                for system in args.systems
            ]
        scenario.unlink()


def sandbox_rss(pid: int) -> float:
    """The sandbox process's resident memory now, MiB (it holds the scenario)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --------------------------------------------------------------------------- in the child


def child_main(spec: dict) -> dict:
    """One load, fetch or change, run in this (child) process; figures as a dict. The
    clock starts once the code is imported (a slow import on a busy machine is no part of
    a sync's rate)."""
    import importlib
    import logging

    logging.basicConfig(format=f"  {spec['system']} %(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("retention").setLevel(logging.INFO)  # the sources' progress, not the SDKs'
    if spec["mode"] == "change":
        return change_subscriptions(spec)
    # A load also imports sqlalchemy (dlt parses the DuckDB credentials with its make_url)
    # and pyarrow.parquet, which fetch-only never imports: imported before the clock, so
    # neither side is charged a one-off import.
    for module in (
        "dlt",
        "dlt.destinations",
        "duckdb",
        "dlt.common.libs.sql_alchemy_compat",
        "pyarrow.parquet",
        f"dlt_sources.{spec['system']}",
    ):
        importlib.import_module(module)
    peaks = PhasePeaks()
    started, cpu = time.perf_counter(), cpu_seconds()
    if spec["mode"] == "fetch":
        peaks.phase = "extract"
        records, rounds = fetch(spec), 1
    else:
        records, rounds = load(spec, peaks)
    return {
        "records": records,
        "rounds": rounds,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": cpu_seconds() - cpu,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_extract_mib": peaks.peaks.get("extract", 0.0),
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class PhasePeaks:
    """The process's peak resident memory in each dlt step (extract, normalize, load),
    sampled every 0.1 s by a thread: `ru_maxrss` is one peak for the whole process, and
    the load step (DuckDB merging into the warehouse) is no part of what extraction keeps."""

    def __init__(self) -> None:
        self.phase, self.peaks = "start", {}
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        status = Path("/proc/self/status")
        while True:
            line = next(x for x in status.read_text().splitlines() if x.startswith("VmRSS:"))
            mib = int(line.split()[1]) / 1024
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), mib)
            time.sleep(0.1)


def load(spec: dict, peaks: PhasePeaks) -> tuple[int, int]:
    """A dlt pipeline run of the system's source, in checkpointed rounds until no full
    listing is pending, as `retention extract` runs them: (records loaded, rounds)."""
    import importlib
    import logging

    import dlt

    system, work = spec["system"], Path(spec["work"])
    factory = getattr(importlib.import_module(f"dlt_sources.{system}"), f"{system}_source")
    pipeline = dlt.pipeline(
        f"bench_{system}",
        destination=dlt.destinations.duckdb(str(work / "warehouse.duckdb")),
        dataset_name=f"raw_{system}",
        pipelines_dir=str(work / "dlt"),
    )

    def one_round() -> int:
        peaks.phase = "extract"
        pipeline.extract(factory(api_key=spec["key"], base_url=spec["url"], **spec["options"]))
        peaks.phase = "normalize"
        rows = pipeline.normalize().row_counts
        peaks.phase = "load"
        pipeline.load(raise_on_failed_jobs=True)
        return sum(n for table, n in rows.items() if not table.startswith("_dlt"))

    try:
        from orchestration.checkpoints import run_rounds, unfinished_listings
    except ImportError:  # the baseline's sources list everything in one run
        return one_round(), 1
    counts = run_rounds(
        one_round, lambda: unfinished_listings(pipeline.state), logging.getLogger("bench")
    )
    return sum(counts), len(counts)


# The functions the sources turn a page into an Arrow table with: replaced by the page
# itself when only fetching.
ARROW_MAKERS = ("to_arrow", "page_table")


def fetch(spec: dict) -> int:
    """The records the source fetches, without dlt and without Arrow: the source's own
    generators (the same requests, workers, pacing and SDK page fetchers) iterated
    directly, which skips dlt's extract, normalize and load, with the functions that turn
    a page into an Arrow table (`ARROW_MAKERS`) giving back the page instead."""
    import importlib
    import pkgutil

    import pyarrow as pa

    system = spec["system"]
    package = importlib.import_module(f"dlt_sources.{system}")
    names = [info.name for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}.")]
    for module in [package, *map(importlib.import_module, names)]:
        for name in ARROW_MAKERS:
            if hasattr(module, name):
                setattr(module, name, lambda records, *_, **__: list(records))
    factory = getattr(package, f"{system}_source")
    records = 0
    for item in factory(api_key=spec["key"], base_url=spec["url"], **spec["options"]):
        if isinstance(item, pa.Table):
            raise SystemExit(
                f"dlt_sources.{system} made an Arrow table while only fetching: add the "
                "function it makes one with to ARROW_MAKERS"
            )
        records += 1
    return records


def change_subscriptions(spec: dict) -> dict:
    """Cancel 1% of the system's live subscriptions at period end through its SDK, a few
    at a time, retrying 429s as the sources do (the live limits count writes too)."""
    from billing_clients.retries import with_retries
    from sandbox.scenario import load_scenario

    system, url, key = spec["system"], spec["url"], spec["key"]
    scenario = load_scenario(Path(spec["scenario"]))
    every = scenario.for_system("subscriptions", system)
    # Not those with a plan change scheduled: Stripe manages them by a subscription
    # schedule and refuses a cancellation set on the subscription itself.
    live = [
        s["subscription_id"]
        for s in every
        if s["ended_at"] is None
        and s["activated_at"] <= scenario.as_of
        and s.get("pending_plan_id") is None
    ][: max(1, int(len(every) * CHANGED_SHARE))]
    cancel, classifier = canceller(system, url, key)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: with_retries(lambda: cancel(i), classifier, f"cancel {i}"), live))
    return {"changed": len(live), "subscriptions": len(every)}


def canceller(system: str, url: str, key: str):
    """(cancel one subscription at period end by id, the SDK's retry classifier)."""
    from billing_clients import chargebee, recurly, stripe
    from billing_clients.sdk import chargebee_client, recurly_client, stripe_client

    if system == "stripe":
        client = stripe_client(key, url)
        update = client.v1.subscriptions.update
        return lambda i: update(i, params={"cancel_at_period_end": True}), stripe.CLASSIFIER
    if system == "recurly":  # a Recurly client holds one connection: one per thread
        local = threading.local()

        def cancel(ident: str) -> None:
            if not hasattr(local, "client"):
                local.client = recurly_client(key, url)
            local.client.cancel_subscription(ident)

        return cancel, recurly.CLASSIFIER
    client = chargebee_client(key, base_url=url)
    return (
        lambda i: client.Subscription.cancel_for_items(i, {"end_of_term": True}),
        chargebee.CLASSIFIER,
    )


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=PARTS, help="run only these parts")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--systems", default=",".join(BILLING_SYSTEMS))
    parser.add_argument(
        "--sequential-customers",
        default="2000,5000",
        help="sizes the sequential part measures; the projection is the line through them",
    )
    parser.add_argument("--rss-customers", default="100000,1000000")
    parser.add_argument("--latency-ms", type=float, default=300)
    parser.add_argument("--jitter-ms", type=float, default=100)
    parser.add_argument(
        "--chargebee-plan",
        default="performance",
        help="the live site's plan whose limit the sandbox enforces and the source paces at",
    )
    parser.add_argument("--baseline", default=BASELINE, help="the commit of the 'before' sources")
    parser.add_argument(
        "--port", type=int, default=FIRST_PORT, help="Stripe's port; the next two for the others"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_main(json.loads(args.child))))
        return
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.ports = {system: args.port + i for i, system in enumerate(BILLING_SYSTEMS)}
    if unknown := set(args.systems) - set(BILLING_SYSTEMS):
        parser.error(f"--systems: unknown {', '.join(sorted(unknown))}; use {BILLING_SYSTEMS}")
    args.rss_customers = [int(n) for n in args.rss_customers.split(",") if n]
    args.sequential_customers = [int(n) for n in args.sequential_customers.split(",") if n]
    report = Report(
        args.systems,
        args.customers,
        {s: per_second(s, args.chargebee_plan) for s in args.systems},
        commit(),
        f"{args.latency_ms:g} ± {args.jitter_ms:g} ms, live limits "
        f"(Chargebee {args.chargebee_plan} plan)",
    )
    parts = {
        "latency": latency_part,
        "sequential": sequential_part,
        "throughput": throughput_part,
        "rss": rss_part,
    }
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        for name, part in parts.items():
            if name in (args.only or PARTS):
                started = time.perf_counter()
                progress(f"== {name}")
                part(args, Path(tmp), report)
                progress(f"== {name} done in {time.perf_counter() - started:,.0f} s")
    report.print()


def commit() -> str:
    """The code measured: the last commit (short hash and time)."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %cd", "--date=format:%H:%M"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


if __name__ == "__main__":
    main()
