"""Stripe's own objects through our Stripe source and staging: real shapes nobody here wrote.

Stripe generates one example of every API object for its mock server (fixtures3.json, in
../shared/specs). A tiny HTTP server answers the list and retrieve endpoints with those
objects, exactly as given; the real dlt source reads them through the official SDK, and
dbt builds the Stripe staging models over what landed. The staging rows must carry plan,
currency, quantity and periods: the fields the pinned API version moved to the items.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import dlt
import orjson
import pytest

from billing_clients.retries import RetryPolicy
from dlt_sources.stripe import stripe_source
from tests.warehouse import rows

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "specs" / "stripe-fixtures3.json"
# The list endpoints the source reads, and the fixture object each one serves.
SERVED = {
    "customers": "customer",
    "subscriptions": "subscription",
    "prices": "price",
    "products": "product",
    "coupons": "coupon",
    "invoices": "invoice",
    "events": "event",
}


def fixture_objects() -> dict[str, dict]:
    if not FIXTURES.exists():
        pytest.skip(f"Stripe's fixtures3.json not found at {FIXTURES} (../shared/specs)")
    resources = orjson.loads(FIXTURES.read_bytes())["resources"]
    return {endpoint: resources[name] for endpoint, name in SERVED.items()}


class FixtureHandler(BaseHTTPRequestHandler):
    """GET /v1/<list> answers a one-object list page; GET /v1/<list>/<id> the object."""

    objects: ClassVar[dict[str, dict]] = {}

    def do_GET(self) -> None:
        parts = urlsplit(self.path).path.strip("/").split("/")
        obj = self.objects.get(parts[1]) if len(parts) >= 2 and parts[0] == "v1" else None
        if obj is not None and len(parts) == 2:
            page = {"object": "list", "data": [obj], "has_more": False, "url": f"/v1/{parts[1]}"}
            self._answer(200, page)
        elif obj is not None and len(parts) == 3 and parts[2] == obj["id"]:
            self._answer(200, obj)
        else:
            error = {"type": "invalid_request_error", "message": f"Unrecognized {self.path}"}
            self._answer(404, {"error": error})

    def _answer(self, status: int, body: dict) -> None:
        data = orjson.dumps(body)
        self.send_response(status)  # also sends Date: the source's clock
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # quiet
        return


@pytest.fixture
def fixture_server() -> Iterator[tuple[str, dict[str, dict]]]:
    objects = fixture_objects()
    handler = type("Handler", (FixtureHandler,), {"objects": objects})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", objects
    server.shutdown()
    server.server_close()


def test_stripe_fixture_objects_load_through_source_and_staging(fixture_server, tmp_path, dbt):
    url, objects = fixture_server
    database = tmp_path / "warehouse.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="stripe_fixtures",
        pipelines_dir=str(tmp_path / "dlt"),
        destination=dlt.destinations.duckdb(str(database)),
        dataset_name="raw_stripe",
    )
    source = stripe_source(
        api_key="sk_test_fixtures",
        base_url=url,
        requests_per_second=None,
        retry_policy=RetryPolicy(max_attempts=1),
    )
    pipeline.run(source)
    dbt(database, "run", "--select", "path:models/staging/stripe")

    sub, price = objects["subscriptions"], objects["prices"]
    item = sub["items"]["data"][0]
    [staged] = rows(database, "select * from staging.stg_stripe__subscriptions")
    assert staged["subscription_id"] == sub["id"] and staged["currency"] == "USD"
    assert staged["customer_id"] == sub["customer"]
    assert staged["status"] == "canceled"  # the fixture has an ended_at
    assert int(staged["current_period_start"].timestamp()) == item["current_period_start"]
    assert int(staged["current_period_end"].timestamp()) == item["current_period_end"]
    assert staged["coupon_id"] is None  # the fixture's discounts are empty

    [staged_item] = rows(database, "select * from staging.stg_stripe__subscription_items")
    assert (staged_item["subscription_id"], staged_item["item_id"]) == (sub["id"], item["id"])
    assert (staged_item["price_id"], staged_item["product_id"]) == (
        item["price"]["id"],
        item["price"]["product"],
    )
    assert (staged_item["quantity"], staged_item["currency"]) == (item["quantity"], "USD")
    assert (staged_item["interval"], staged_item["interval_count"]) == ("month", 1)
    assert staged_item["usage_type"] == "licensed"
    # The fixture price divides quantities (transform_quantity): a package of divide_by.
    assert staged_item["pricing_model"] == "package"
    assert staged_item["package_size"] == item["price"]["transform_quantity"]["divide_by"]
    assert float(staged_item["unit_amount_local"]) == item["price"]["unit_amount"] / 100

    [plan] = rows(database, "select * from staging.stg_stripe__plans")
    assert (plan["plan_id"], plan["currency"], float(plan["unit_amount_local"])) == (
        price["id"],
        "USD",
        price["unit_amount"] / 100,
    )
    [invoice] = rows(database, "select * from staging.stg_stripe__invoices")
    parent = objects["invoices"]["parent"]["subscription_details"]["subscription"]
    assert (invoice["invoice_id"], invoice["subscription_id"]) == (
        objects["invoices"]["id"],
        parent,
    )
    for model, key in (
        ("stg_stripe__customers", "customer_id"),
        ("stg_stripe__products", "product_id"),
        ("stg_stripe__coupons", "coupon_id"),
    ):
        served = objects[model.removeprefix("stg_stripe__")]["id"]
        assert [r[key] for r in rows(database, f"select {key} from staging.{model}")] == [served]
