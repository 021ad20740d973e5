"""How fast the sandbox lists 100,000 subscriptions through each official SDK.

The sandbox runs in its own process (`retention sandbox serve`), as in the demo, so the
client and the server do not share one interpreter. For each system the script prints
the time to page through every subscription at 100 per page with the SDK, and with plain
HTTP + orjson (what the server alone costs), as records per second.

Run: .venv/bin/python bench/bench_sandbox_listing.py [--customers 85000]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import tempfile
import time
from itertools import islice
from pathlib import Path
from urllib.parse import urlencode

import orjson
from sandbox_process import generate, served

from billing_clients.sdk import chargebee_client, recurly_client, stripe_client
from sandbox.server import DEFAULT_API_KEY

KEY = DEFAULT_API_KEY
RECORDS = 100_000  # per system: the figure
PORTS = {"stripe": 12211, "recurly": 12212, "chargebee": 12213}


def sdk_stripe(url: str) -> int:
    pages = stripe_client(KEY, url).v1.subscriptions.list(params={"status": "all", "limit": 100})
    return sum(1 for _ in islice(pages.auto_paging_iter(), RECORDS))


def sdk_raw_stripe(url: str) -> int:
    """The SDK's raw_request (its auth, versioning and retries) without its object model:
    the path the Stripe dlt source takes."""
    client, count, params = stripe_client(KEY, url), 0, {"status": "all", "limit": 100}
    while count < RECORDS:
        page = orjson.loads(client.raw_request("get", "/v1/subscriptions", **params).body)
        count += len(page["data"])
        if not page["has_more"]:
            break
        params["starting_after"] = page["data"][-1]["id"]
    return count


def sdk_recurly(url: str) -> int:
    pager = recurly_client(KEY, url).list_subscriptions(params={"limit": 100})
    return sum(1 for _ in islice(pager.items(), RECORDS))


def sdk_chargebee(url: str) -> int:
    client, count, offset = chargebee_client(KEY, base_url=url), 0, None
    while True:
        params = {"limit": 100, **({"offset": offset} if offset else {})}
        result = client.Subscription.list(params)
        count += len(result.list)
        offset = result.next_offset
        if not offset or count >= RECORDS:
            return count


def _get(conn: http.client.HTTPConnection, path: str, headers: dict) -> dict:
    conn.request("GET", path, headers=headers)
    return orjson.loads(conn.getresponse().read())


def raw_http(url: str) -> int:
    """Plain HTTP paging: the server's own cost, without an SDK's object model."""
    port = int(url.rsplit(":", 1)[1])
    system = next(s for s, p in PORTS.items() if p == port)
    conn = http.client.HTTPConnection("127.0.0.1", port)
    basic = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}
    count = 0
    if system == "stripe":
        params = {"status": "all", "limit": 100}
        while True:
            page = _get(
                conn, "/v1/subscriptions?" + urlencode(params), {"Authorization": f"Bearer {KEY}"}
            )
            count += len(page["data"])
            if not page["has_more"] or count >= RECORDS:
                return count
            params["starting_after"] = page["data"][-1]["id"]
    if system == "recurly":
        path = "/subscriptions?limit=100"
        headers = {**basic, "Accept": "application/vnd.recurly.v2021-02-25"}
        while path:
            page = _get(conn, path, headers)
            count += len(page["data"])
            path = page["next"] if page["has_more"] and count < RECORDS else None
        return count
    params = {"limit": 100}
    while True:
        page = _get(conn, "/api/v2/subscriptions?" + urlencode(params), basic)
        count += len(page["list"])
        if not page.get("next_offset") or count >= RECORDS:
            return count
        params["offset"] = page["next_offset"]


SDK = {"stripe": sdk_stripe, "recurly": sdk_recurly, "chargebee": sdk_chargebee}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--customers", type=int, default=340_000, help="≥100k subscriptions in each system"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "scenario.json"
        generate(scenario, args.customers, seed=5)
        started = time.perf_counter()
        with served(scenario, PORTS):
            print(
                f"sandbox loaded {args.customers:,} customers in {time.perf_counter() - started:.1f} s"
            )
            print(f"{'system':<10} {'path':<10} {'records':>9} {'seconds':>8} {'records/s':>10}")
            for system, port in PORTS.items():
                url = f"http://127.0.0.1:{port}"
                runs = [("sdk", SDK[system], url), ("raw http", raw_http, url)]
                if system == "stripe":
                    runs.insert(1, ("sdk raw", sdk_raw_stripe, url))
                for label, run, target in runs:
                    t = time.perf_counter()
                    count = run(target)
                    took = time.perf_counter() - t
                    print(
                        f"{system:<10} {label:<10} {count:>9,} {took:>8.2f} {count / took:>10,.0f}"
                    )


if __name__ == "__main__":
    main()
