"""Webhook delivery: latency from emit to the receiver's first accept (p50/p95/p99), the
attempts per event, and events lost, against a local receiver failing a share of requests
(30% by default), with the collector's delivery thread (`Deliverer`) and the retry
settings of webhooks.yml's defaults unless told otherwise. Also what one emit costs (one
SQLite commit with fsync) against a batch.

Events are emitted open-loop in batches (as the collector's dispatcher may hand them
over) at `--rate` per second. The receiver checks every signature
(webhooks.receiving.read_event): a refused request would be counted.
Run: .venv/bin/python bench/bench_webhooks.py [--events 2000 --rate 200 --fail-rate 0.3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.webhook_receiver

from tests.webhook_receiver import Receiver, receiving
from webhooks.config import Delivery, Endpoint, WebhooksConfig
from webhooks.outbox import Deliverer, Outbox

SECRET = b"whsec_bench"
BATCH_EVERY_SECONDS = 0.05


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def emit_cost(folder: Path) -> tuple[float, float]:
    """Milliseconds per event: one emit per commit, and 1,000 in one commit."""
    config = WebhooksConfig(None, {"x": Endpoint("x", "http://127.0.0.1:9/", ("*",), SECRET)})
    outbox = Outbox(folder / "cost.sqlite", config)
    started = time.perf_counter()
    for i in range(100):
        outbox.emit_session({"session_id": f"one{i}", "action": "canceled"})
    single = (time.perf_counter() - started) / 100 * 1000
    started = time.perf_counter()
    outbox.emit_sessions({"session_id": f"many{i}", "action": "canceled"} for i in range(1000))
    batch = (time.perf_counter() - started) / 1000 * 1000
    outbox.close()
    return single, batch


def run(args: argparse.Namespace, folder: Path) -> None:
    delivery = Delivery(
        initial_backoff_seconds=args.initial_backoff,
        max_attempts=args.max_attempts,
        concurrency=args.concurrency,
    )
    receiver = Receiver(SECRET, fail_rate=args.fail_rate)
    with receiving(receiver):
        config = WebhooksConfig(
            None, {"bench": Endpoint("bench", receiver.url, ("*",), SECRET)}, delivery
        )
        outbox = Outbox(folder / "state.sqlite", config)
        deliverer = Deliverer(outbox, poll_seconds=args.poll).start()
        emitted: dict[str, float] = {}
        per_batch = max(1, round(args.rate * BATCH_EVERY_SECONDS))
        started = time.perf_counter()
        for first in range(0, args.events, per_batch):
            due = started + first / args.rate
            time.sleep(max(0.0, due - time.perf_counter()))
            rows = [
                {"session_id": f"s{i}", "action": "canceled", "billing_id": f"sub_{i}"}
                for i in range(first, min(args.events, first + per_batch))
            ]
            now = time.time()
            outbox.emit_sessions(rows)
            emitted.update({f"s{i}": now for i in range(first, first + len(rows))})
        deadline = time.monotonic() + args.wait
        while any(s == "pending" for _, s in outbox.counts()) and time.monotonic() < deadline:
            time.sleep(0.05)
        deliverer.stop()
        counts = outbox.counts()
        outbox.close()
    first_seen: dict[str, float] = {}
    for event in receiver.accepted:
        sid = event["data"]["session_id"]
        first_seen[sid] = min(first_seen.get(sid, event["received_at"]), event["received_at"])
    latencies = [first_seen[s] - emitted[s] for s in first_seen]
    lost = len(emitted) - len(first_seen)
    totals = deliverer.totals
    print(
        f"events {len(emitted)} at {args.rate:g}/s, receiver failing {args.fail_rate:.0%}, "
        f"initial backoff {args.initial_backoff:g} s, concurrency {args.concurrency}"
    )
    print(
        f"  delivery latency emit→first accept: p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p95 {percentile(latencies, 0.95) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms"
    )
    print(
        f"  attempts {totals.attempts} ({totals.attempts / len(emitted):.2f} per event), "
        f"receiver 500s {receiver.failed}, accepted {len(receiver.accepted)} "
        f"(duplicates {len(receiver.accepted) - len(first_seen)}), refused {len(receiver.refused)}"
    )
    print(f"  lost {lost}, dead letters {sum(n for (_, s), n in counts.items() if s == 'dead')}")
    print(
        f"  request time p50 {statistics.median(totals.latencies) * 1000:.1f} ms, "
        f"p95 {percentile(totals.latencies, 0.95) * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200, help="events emitted per second")
    parser.add_argument("--fail-rate", type=float, default=0.3)
    parser.add_argument("--initial-backoff", type=float, default=Delivery().initial_backoff_seconds)
    parser.add_argument("--max-attempts", type=int, default=Delivery().max_attempts)
    parser.add_argument("--concurrency", type=int, default=Delivery().concurrency)
    parser.add_argument("--poll", type=float, default=0.5, help="the Deliverer's poll seconds")
    parser.add_argument("--wait", type=float, default=300, help="longest wait for delivery")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        single, batch = emit_cost(Path(folder))
        print(
            f"emit cost: {single:.1f} ms per event one per commit, {batch:.3f} ms in a batch of 1,000"
        )
        run(args, Path(folder))


if __name__ == "__main__":
    main()
