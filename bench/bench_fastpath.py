"""The fast path's latency: an accepted offer POSTed to the collector until the billing
write is applied (the fast path's journal row final), with 100 ms injected API latency.

Set-up as in bench_writebacks: a generated scenario served by the sandbox in its own
process, `retention extract` and `dbt build` into a warehouse, its marts published as a
serving copy (orchestration/serving.py). Then a fresh sandbox of the same scenario with
`--latency-ms` (every request, reads and writes, waits that long) and the collector in
this process under uvicorn, its fast path live on every system. Each visit is a signed
POST /v1/sessions of an accepted pause on an active subscription, one at a time, then
a burst of them at once. Figures: the POST's answer (durable commit) and POST to applied,
p50/p95/max, per system too. The goal (issue #16): p95 under 3 s. Printed, not asserted.

Run: .venv/bin/python bench/bench_fastpath.py [--customers 2000] [--visits 60] [--latency-ms 100]
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")

import duckdb
import httpx
import uvicorn
from bench_writebacks import PORTS, build, catalog
from sandbox_process import drop_files, generate, served

from collector.app import create_app
from collector.settings import App, CollectorConfig, CollectorSettings
from orchestration.serving import publish
from webhooks.signing import sign
from writebacks.catalog import load_catalog
from writebacks.fastpath import FastPath, serving_marts
from writebacks.systems import writer_for

APP_ID = "bench"
OFFER = "pause_1m"


def subscriptions(database: Path, count: int) -> list[tuple[str, str]]:
    """(system, subscription id) of `count` active monthly subscriptions, the systems in
    turn (monthly: the project's one-month pause is whole cycles of their plans)."""
    with duckdb.connect(str(database), read_only=True) as db:
        rows = db.execute(
            "select billing_system, subscription_id from (select billing_system, "
            "subscription_id, row_number() over (partition by billing_system order by "
            "subscription_id) as n from marts.dim_subscriptions where status = 'active' "
            "and \"interval\" = 'month' and interval_count = 1) "
            "order by n, billing_system limit ?",
            [count],
        ).fetchall()
    return [(system, sub) for system, sub in rows]


class Collector:
    """The collector app under uvicorn in a thread on a free port, with `fast_path`."""

    def __init__(self, settings: CollectorSettings, fast_path: FastPath):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(create_app(settings, fast_path=fast_path), log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        self.url = "http://{}:{}".format(*self.sock.getsockname())

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def visit(client: httpx.Client, secret: bytes, n: int, system: str, sub: str) -> float:
    """One signed landing that accepts the pause at once; the POST's seconds."""
    stamp = int(time.time())
    body = {
        "session_id": f"bench-{n}",
        "app_id": APP_ID,
        "billing_system": system,
        "billing_id": sub,
        "timestamp": stamp,
        "signature": sign(secret, [APP_ID, system, sub, str(stamp)]),
        "action": "offer_accepted",
        "offer_id": OFFER,
        "offer_type": "pause",
    }
    started = time.perf_counter()
    client.post("/v1/sessions", json=body).raise_for_status()
    return time.perf_counter() - started


def quantiles(values: list[float]) -> str:
    if len(values) < 2:
        return f"n={len(values)}"
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return (
        f"p50 {statistics.median(values):6.3f} s  p95 {cuts[18]:6.3f} s  "
        f"max {max(values):6.3f} s  (n={len(values)})"
    )


def measure(collector: Collector, secret: bytes, targets, done, *, burst: bool, first: int):
    """POST each visit (one after another, each waited for; or all at once) and return
    per visit: (system, POST seconds, POST-to-applied seconds, status)."""
    sent: dict[str, tuple[str, float, float]] = {}
    with httpx.Client(base_url=collector.url, timeout=30) as client:
        for n, (system, sub) in enumerate(targets, start=first):
            started = time.perf_counter()
            ack = visit(client, secret, n, system, sub)
            sent[f"bench-{n}"] = (system, started, ack)
            while not burst and f"bench-{n}" not in done:
                time.sleep(0.002)
    deadline = time.monotonic() + 120
    while any(s not in done for s in sent) and time.monotonic() < deadline:
        time.sleep(0.01)
    return [
        (system, ack, done[s][0] - started if s in done else float("nan"), done.get(s, (0, "-"))[1])
        for s, (system, started, ack) in sent.items()
    ]


def report(title: str, results) -> None:
    """The figures, with the machine's load: on a shared machine it moves them most."""
    statuses = defaultdict(int)
    for *_, status in results:
        statuses[status] += 1
    load = ", ".join(f"{n:.1f}" for n in os.getloadavg())
    print(f"{title}: {dict(statuses)} (load average {load} on {os.cpu_count()} CPUs)")
    print(f"  POST answered      {quantiles([r[1] for r in results])}")
    print(f"  POST to applied    {quantiles([r[2] for r in results])}")
    for system in PORTS:
        mine = [r[2] for r in results if r[0] == system]
        print(f"    {system:<10}       {quantiles(mine)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--visits", type=int, default=60)
    parser.add_argument("--latency-ms", type=float, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        scenario = work / "scenario.json"
        generate(scenario, args.customers, 7)
        drop_files(scenario, work / "drop")
        with served(scenario, PORTS):
            database = build(work)
        serving = work / "serving.duckdb"
        with duckdb.connect(str(database)) as con:
            publish(con, serving, "bench", "bench_fastpath")
        targets = subscriptions(database, 2 * args.visits)
        for system, port in PORTS.items():
            os.environ[f"SOURCES__{system.upper()}__BASE_URL"] = f"http://127.0.0.1:{port}"
        secret = secrets.token_hex(32).encode()
        settings = CollectorSettings(
            config=CollectorConfig(apps={APP_ID: App(secret_env="BENCH_SECRET")}),
            state_db=work / "collector.sqlite",
            drop_folder=work / "collector-drop",
            secrets={APP_ID: secret},
        )
        done: dict[str, tuple[float, str]] = {}

        def applied(row: dict) -> None:
            done[row["session_id"]] = (time.perf_counter(), row["status"])

        live = load_catalog(catalog(work / "live.yml", "live"))
        options = [f"--latency-ms={args.latency_ms:g}"]
        with served(scenario, PORTS, options=options):
            fast = FastPath(
                settings.state_db, live, serving_marts(serving), writer_for, on_result=applied
            )
            fast.wait_ready(60)  # as `retention collector serve` does before serving
            collector = Collector(settings, fast)
            try:
                print(
                    f"{args.customers:,} customers; {args.latency_ms:g} ms per API request; "
                    "an accepted pause per visit, each on its own active subscription"
                )
                half = targets[: args.visits]
                report(
                    "one at a time", measure(collector, secret, half, done, burst=False, first=0)
                )
                rest = targets[args.visits :]
                report(
                    f"burst of {len(rest)}",
                    measure(collector, secret, rest, done, burst=True, first=len(half)),
                )
            finally:
                collector.stop()
                fast.close()


if __name__ == "__main__":
    main()
