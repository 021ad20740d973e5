"""Extraction throughput per billing system, beside the limit of fetching the same pages.

For each system: a full load (dlt pipeline into DuckDB, pacing off) and an incremental
load after 1% of subscriptions changed through the SDK, in records per second; and the
raw speed of fetching every page of the same endpoints with the same SDK page fetcher the
source uses, with no Arrow and no dlt (the limit). Ratio = pipeline rate / fetch rate.

The sandbox runs in its own process (`retention sandbox serve`), as in the demo.
Run: .venv/bin/python bench/bench_extract.py [--customers 20000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt
from sandbox_process import generate, served

from billing_clients.retries import RateLimiter
from billing_clients.sdk import chargebee_client, recurly_client, stripe_client
from dlt_sources.chargebee import chargebee_source
from dlt_sources.chargebee.helpers import ENDPOINTS, ChargebeeLister
from dlt_sources.recurly import recurly_source
from dlt_sources.recurly.helpers import RecurlyLister, Settings
from dlt_sources.stripe import stripe_source
from dlt_sources.stripe.helpers import StripeApi
from sandbox.server import DEFAULT_API_KEY as KEY

PORTS = {"stripe": 12311, "recurly": 12312, "chargebee": 12313}
URL = {system: f"http://127.0.0.1:{port}" for system, port in PORTS.items()}
STRIPE_PATHS = ["customers", "subscriptions", "prices", "products", "coupons", "invoices"]
RECURLY_PATHS = ["/accounts", "/subscriptions", "/plans", "/coupons", "/invoices"]


def fetch_stripe() -> int:
    api = StripeApi(stripe_client(KEY, URL["stripe"]), RateLimiter(None))
    total = 0
    for name in STRIPE_PATHS:
        params = {"status": "all"} if name == "subscriptions" else {}
        total += sum(len(page) for page in api.pages(f"/v1/{name}", params))
    return total


def fetch_recurly() -> int:
    lister = RecurlyLister(Settings(api_key=KEY, base_url=URL["recurly"]))
    params = {"limit": 200, "sort": "updated_at", "order": "asc"}
    return sum(len(page) for path in RECURLY_PATHS for page in lister.pages(path, params, path))


def fetch_chargebee() -> int:
    lister = ChargebeeLister(chargebee_client(KEY, base_url=URL["chargebee"]), RateLimiter(None))
    names = [name for name in ENDPOINTS if lister.serves(name)]  # the site's catalog only
    return sum(len(page.records) for name in names for page in lister.pages(name, None))


FETCH = {"stripe": fetch_stripe, "recurly": fetch_recurly, "chargebee": fetch_chargebee}


def source(system: str):
    options = {"api_key": KEY, "base_url": URL[system], "requests_per_second": None}
    factory = {"stripe": stripe_source, "recurly": recurly_source, "chargebee": chargebee_source}
    return factory[system](**options)


def change_one_percent(system: str, ids: list[str]) -> None:
    """Cancel 1% of the system's subscriptions at period end through its SDK."""
    if system == "stripe":
        client = stripe_client(KEY, URL["stripe"])
        for ident in ids:
            client.v1.subscriptions.update(ident, params={"cancel_at_period_end": True})
    elif system == "recurly":
        client = recurly_client(KEY, URL["recurly"])
        for ident in ids:
            client.cancel_subscription(ident)
    else:
        client = chargebee_client(KEY, base_url=URL["chargebee"])
        for ident in ids:
            client.Subscription.cancel_for_items(ident, {"end_of_term": True})


def live_subscriptions(system: str, scenario, share: float) -> list[str]:
    live = [
        s["subscription_id"]
        for s in scenario.for_system("subscriptions", system)
        if s["ended_at"] is None and s["activated_at"] <= scenario.as_of
    ]
    return live[: max(1, int(len(scenario.for_system("subscriptions", system)) * share))]


def timed_load(pipeline, system: str) -> tuple[int, float]:
    started = time.perf_counter()
    pipeline.run(source(system))
    took = time.perf_counter() - started
    rows = pipeline.last_trace.last_normalize_info.row_counts
    return sum(n for table, n in rows.items() if not table.startswith("_dlt")), took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=20_000)
    args = parser.parse_args()
    from sandbox.scenario import load_scenario

    with tempfile.TemporaryDirectory() as tmp:
        scenario_path = Path(tmp) / "scenario.json"
        generate(scenario_path, args.customers, seed=9)
        scenario = load_scenario(scenario_path)
        with served(scenario_path, PORTS):
            print(
                f"extraction, {args.customers:,} customers; sandbox in its own process, pacing off"
            )
            print(
                f"{'system':<10} {'run':<22} {'records':>9} {'seconds':>8} {'records/s':>10} {'vs fetch':>9}"
            )
            for system in PORTS:
                started = time.perf_counter()
                fetched = FETCH[system]()
                fetch_rate = fetched / (time.perf_counter() - started)
                print(
                    f"{system:<10} {'fetch pages (limit)':<22} {fetched:>9,} {fetched / fetch_rate:>8.2f} {fetch_rate:>10,.0f} {'1.00':>9}"
                )
                pipeline = dlt.pipeline(
                    f"bench_{system}",
                    destination=dlt.destinations.duckdb(str(Path(tmp) / f"{system}.duckdb")),
                    dataset_name=f"raw_{system}",
                    pipelines_dir=str(Path(tmp) / "dlt"),
                )
                for label in ("full load", "incremental, 1% changed"):
                    if label.startswith("incremental"):
                        change_one_percent(system, live_subscriptions(system, scenario, 0.01))
                    records, took = timed_load(pipeline, system)
                    rate = records / took
                    print(
                        f"{system:<10} {label:<22} {records:>9,} {took:>8.2f} {rate:>10,.0f} {rate / fetch_rate:>9.2f}"
                    )


if __name__ == "__main__":
    main()
