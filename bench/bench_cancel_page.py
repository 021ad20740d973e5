"""The cancel page in a real browser, from the click to the billing write: visits in
headless Chromium, each Cancel then "Pause my subscription" on its own active Stripe
subscription, through the example page (a signed link per visit), the collector with its
fast path live and its webhooks to a local receiver (opened as `retention collector serve`
opens them) and a sandbox answering every API request after --latency-ms.

Per visit, from the click: the page showing the collector's answer, the Stripe write
answered (the sandbox's log), the webhook received (the receiver's clock); p50/p95/max.
Set-up as tests/e2e: a generated scenario extracted and modelled, its serving copy
published. Visits run one after another. Printed, not asserted.

Run: .venv/bin/python bench/bench_cancel_page.py [--customers 300] [--visits 20] [--latency-ms 100]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
# `tests` of this project, not a dependency's:
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selenium.webdriver.common.by import By

from sandbox.app import Sandbox, start_sandbox
from sandbox.network import Latency
from sandbox.scenario import validate_scenario
from tests.e2e.conftest import (
    APP_ID,
    WEBHOOK_SECRET_ENV,
    Stack,
    active_stripe_subscriptions,
    as_served,
    build_synced,
    cancel_stack,
    headless_chromium,
    live_environment,
    load_backend,
    missing_browser,
    poll,
    wait_for,
)
from tests.webhook_receiver import Receiver, receiving
from writebacks.catalog import load_catalog

ACCEPTED = "exit_session.offer_accepted"


def quantiles(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return (
        f"p50 {statistics.median(values):6.3f} s  p95 {cuts[18]:6.3f} s  "
        f"max {max(values):6.3f} s  (n={len(values)})"
    )


def stripe_write(sandbox: Sandbox, subscription: str) -> dict | None:
    """The executed write (2xx, not an idempotent replay) to `subscription`, if any yet."""
    return next(
        (
            e
            for e in list(sandbox.emulator("stripe").request_log)
            if e["method"] == "POST"
            and subscription in e["path"]
            and 200 <= e["status"] < 300
            and not e["replayed"]
        ),
        None,
    )


def visit(driver, stack: Stack, secret: bytes, subscription: str, sandbox, receiver):
    """One visit; seconds from the Accept click to (page done, write answered, webhook)."""
    backend = load_backend()
    offer = load_catalog().offers[backend.DEFAULT_OFFER]
    context = backend.signed_context(
        secret,
        app_id=APP_ID,
        billing_system="stripe",
        billing_id=subscription,
        collector=stack.collector,
        offer_id=offer.offer_id,
        offer_type=offer.type,
    )
    driver.get(backend.signed_link(stack.page, context))
    wait_for(driver, "ready")
    driver.find_element(By.ID, "cancel").click()
    driver.find_element(By.ID, "accept").click()
    clicked = time.time()
    wait_for(driver, "done")
    done = time.time()
    write = poll(lambda: stripe_write(sandbox, subscription))
    event = poll(
        lambda: next(
            (
                e
                for e in list(receiver.accepted)
                if e["type"] == ACCEPTED and e["data"]["billing_id"] == subscription
            ),
            None,
        )
    )
    if write is None or event is None:
        raise SystemExit(f"visit on {subscription}: no billing write or no webhook in 30 s")
    return done - clicked, write["wall_time"] - clicked, event["received_at"] - clicked


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--visits", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=100)
    args = parser.parse_args()
    if reason := missing_browser():
        sys.exit(reason)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as running:
        work = Path(tmp)
        synced = build_synced(work, args.customers)
        targets = active_stripe_subscriptions(synced.serving, args.visits)
        sandbox = start_sandbox(
            validate_scenario(synced.doc),
            frozen=True,
            latency={"stripe": Latency(mean_ms=args.latency_ms)},
        )
        running.callback(sandbox.stop)
        for system, url in sandbox.urls.items():
            os.environ[f"SOURCES__{system.upper()}__BASE_URL"] = url
        webhook_secret = secrets.token_hex(16)
        receiver = running.enter_context(receiving(Receiver(webhook_secret.encode())))
        os.environ[WEBHOOK_SECRET_ENV] = webhook_secret
        os.environ.update(live_environment(synced, receiver.url, work))
        secret = secrets.token_hex(32).encode()
        stack = running.enter_context(
            cancel_stack(work, secret, ("stripe", targets[0]), services=as_served)
        )
        driver = headless_chromium()
        running.callback(driver.quit)
        print(
            f"{args.customers:,} customers; {args.latency_ms:g} ms per Stripe API request; "
            f"{len(targets)} visits, one after another, each pausing its own subscription"
        )
        results = [visit(driver, stack, secret, s, sandbox, receiver) for s in targets]
        for label, column in (
            ("page done", 0),
            ("Stripe write answered", 1),
            ("webhook received", 2),
        ):
            print(f"  Accept -> {label:<22} {quantiles([r[column] for r in results])}")
        print(f"  webhook requests refused by the receiver: {len(receiver.refused)}")


if __name__ == "__main__":
    main()
