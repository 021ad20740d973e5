"""The session collector under uvicorn (its own process, as `retention collector serve`):

1. acknowledgement latency p50/p99 of signed landings sent open-loop (each request leaves
   at its scheduled time whatever the answers before it, latency counted from that time)
   at 100, 500 and 1,000 sessions/s over 64 kept-alive connections, and the CPU the
   collector spends per session (the figure the other processes on the machine do not
   change);
2. sessions lost across a `kill -9` under load (every acknowledged one must be in the
   published drop files after a restart: 0 expected);
3. forged and replayed requests tried, and refused, by kind.

Figures are printed; nothing is asserted. The load generator shares the machine (2 cores)
with the collector. Run: .venv/bin/python bench/bench_collector.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))  # `tests` of this project, not a dependency's

import httpx  # noqa: E402

from tests.integration.test_collector_crash import (  # noqa: E402
    APP,
    SECRET,
    Load,
    key,
    published_rows,
    signed,
    start_collector,
    stop_collector,
)
from tests.ports import free_port  # noqa: E402
from webhooks.signing import sign  # noqa: E402

ORIGIN = "https://shop.example"
CONFIG = f"allowed_origins: [{ORIGIN}]\n"
RATES = (100, 500, 1000)
CONNECTIONS = 64


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc): the collector's cost per
    session, which the other processes on the machine do not change as they change
    latency."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_request(body: dict) -> bytes:
    """A landing as the bytes of one HTTP/1.1 request (keep-alive)."""
    data = json.dumps(body).encode()
    head = (
        "POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """Send one request on a kept-alive connection; its status, the body read whole."""
    writer.write(request)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def open_loop(port: int, rate: int, seconds: float, prefix: str) -> dict:
    """Send rate × seconds landings, the i-th at start + i/rate, from CONNECTIONS workers
    with a connection each; a request whose slot came while every worker was busy leaves
    late, and its latency, counted from its slot, includes that wait. Requests are
    written on raw asyncio streams: httpx's async client cost 5 ms of CPU a request here,
    more than the collector, and on 2 shared cores the load generator became the limit."""
    count = int(rate * seconds)
    requests = [
        raw_request(signed(f"{prefix}-{i}", f"sub_{i % 997}", started_at="2026-04-02T08:00:00Z"))
        for i in range(count)
    ]
    results: list[tuple[float, int]] = []
    slots = iter(range(count))
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for index in slots:
            slot = start + index / rate
            await asyncio.sleep(max(0.0, slot - loop.time()))
            try:
                status = await exchange(reader, writer, requests[index])
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                status = 0
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            results.append((loop.time() - slot, status))
        writer.close()

    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    elapsed = loop.time() - start
    latencies = [latency * 1000 for latency, status in results if status in (200, 201)]
    return {
        "rate": rate,
        "sent": count,
        "acknowledged": len(latencies),
        "achieved_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "statuses": dict(Counter(status for _, status in results)),
    }


def lost_across_kill(folder: Path) -> dict:
    """Closed-loop load from 8 threads, kill -9 after about 2,000 acknowledgements,
    restart, stop cleanly: acknowledged rows missing from (or doubled in) the drop files."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    process = start_collector(folder, port, "kill-first.log", CONFIG)
    load = Load(base_url, threads=8, prefix="kill-").start()
    load.wait_for(2000)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    load.stop()
    process = start_collector(folder, port, "kill-second.log", CONFIG)
    stop_collector(process)
    published = Counter(key(row) for row in published_rows(folder / "drop"))
    return {
        "acknowledged": len(load.acknowledged),
        "lost": sum(1 for row in load.acknowledged if published[key(row)] == 0),
        "published_twice": sum(1 for count in published.values() if count > 1),
    }


def forged_requests(base_url: str) -> list[tuple[str, int, int, Counter]]:
    """(kind, tried, refused, statuses) for each kind of bad request, 20 of each."""
    now = int(time.time())

    def honest(session_id: str, billing_id: str = "sub_victim", at: int = now) -> dict:
        parts = [APP, "stripe", billing_id, str(at)]
        return {
            "app_id": APP,
            "billing_system": "stripe",
            "billing_id": billing_id,
            "timestamp": str(at),
            "signature": sign(SECRET.encode(), parts),
            "session_id": session_id,
        }

    def wrong_signature(i):
        return {"json": {**honest(f"f1-{i}"), "signature": os.urandom(32).hex()}}

    def someone_elses(i):  # signed for the visitor's own subscription, sent for another
        return {"json": {**honest(f"f2-{i}", "sub_mine"), "billing_id": f"sub_other_{i}"}}

    def stale(i):
        return {"json": honest(f"f3-{i}", at=now - 301)}

    def from_the_future(i):
        return {"json": honest(f"f4-{i}", at=now + 3600)}

    def unknown_app(i):
        return {"json": {**honest(f"f5-{i}"), "app_id": "someone-else"}}

    def oversized(i):
        return {"json": {**honest(f"f6-{i}"), "custom": {"x": "y" * 20_000}}}

    def oversized_chunked(i):
        return {"content": iter([b" " * 4096] * 5), "headers": {"content-type": "application/json"}}

    def malformed_json(i):
        return {"content": b'{"session_id": "f8-', "headers": {"content-type": "application/json"}}

    def disallowed_origin(i):
        return {"json": honest(f"f9-{i}"), "headers": {"origin": "https://evil.example"}}

    kinds = [
        wrong_signature,
        someone_elses,
        stale,
        from_the_future,
        unknown_app,
        oversized,
        oversized_chunked,
        malformed_json,
        disallowed_origin,
    ]
    results = []
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for kind in kinds:
            statuses = Counter(
                client.post("/v1/sessions", **kind(i)).status_code for i in range(20)
            )
            refused = sum(n for status, n in statuses.items() if 400 <= status < 500)
            results.append((kind.__name__.replace("_", " "), 20, refused, statuses))
        # A captured landing replayed as is: acknowledged, nothing new stored.
        body = honest("f11")
        client.post("/v1/sessions", json=body)
        replays = [client.post("/v1/sessions", json=body).json().get("stored") for _ in range(20)]
        results.append(
            ("replayed landing (same content)", 20, replays.count(False), Counter(replays))
        )
        # The visitor's own signature (sub_mine) on an update of somebody else's session.
        client.post("/v1/sessions", json=honest("victim-session", "sub_victim"))
        mine = {**honest("victim-session", "sub_mine"), "action": "canceled"}
        statuses = Counter(
            client.patch("/v1/sessions/victim-session", json=mine).status_code for _ in range(20)
        )
        refused = sum(n for status, n in statuses.items() if 400 <= status < 500)
        results.append(("update of another's session", 20, refused, statuses))
    return results


def git_commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True
    ).stdout.strip()


def main(seconds: float) -> None:
    print(f"# bench_collector (commit {git_commit()}, {os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "latency"
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        process = start_collector(folder, port, "latency.log", CONFIG)
        try:
            asyncio.run(open_loop(port, 50, 2, "warmup"))
            print(f"\n## Acknowledgement latency, open loop, {seconds:g} s per rate")
            print(f"load average before: {os.getloadavg()[0]:.1f}")
            print(
                "| rate/s | sent | acknowledged | achieved/s | p50 ms | p99 ms | max ms |"
                " collector CPU ms/session | load generator CPU ms/session | statuses |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|")
            for rate in RATES:
                cpu, client_cpu = cpu_seconds(process.pid), time.process_time()
                r = asyncio.run(open_loop(port, rate, seconds, f"r{rate}"))
                per_session = (cpu_seconds(process.pid) - cpu) * 1000 / r["sent"]
                client_ms = (time.process_time() - client_cpu) * 1000 / r["sent"]
                print(
                    f"| {r['rate']} | {r['sent']} | {r['acknowledged']} | "
                    f"{r['achieved_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                    f"{r['max_ms']:.1f} | {per_session:.2f} | {client_ms:.2f} | {r['statuses']} |"
                )
            print(f"load average after: {os.getloadavg()[0]:.1f}")
            print("\n## Forged and replayed requests")
            print("| kind | tried | refused | statuses |")
            print("|---|---|---|---|")
            for kind, tried, refused, statuses in forged_requests(base_url):
                print(f"| {kind} | {tried} | {refused} | {dict(statuses)} |")
        finally:
            stop_collector(process)
        print("\n## kill -9 under load")
        lost = lost_across_kill(Path(tmp) / "kill")
        print(
            f"acknowledged before the kill: {lost['acknowledged']}, lost: {lost['lost']}, "
            f"published twice: {lost['published_twice']}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="per rate")
    main(parser.parse_args().seconds)
