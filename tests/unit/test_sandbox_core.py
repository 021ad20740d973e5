"""The emulators' shared plumbing: auth, idempotency, faults, rate limit, log, clock.

A minimal emulator defined here exercises the base class over real HTTP, so these
behaviours are pinned down once for all three APIs.
"""

from __future__ import annotations

import base64
import http.client
from collections import deque
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from sandbox.clock import Clock
from sandbox.network import Budget, RateLimits
from sandbox.scenario import validate_scenario
from sandbox.server import (
    DEFAULT_API_KEY,
    ApiError,
    Emulator,
    FaultConfig,
    Response,
    RunningServer,
    decode_nested,
)
from sandbox.store import SystemStore

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}


class CounterEmulator(Emulator):
    """One write (bump a customer's counter) and one read."""

    name = "counter"
    idempotency_header = "Idempotency-Key"
    replay_header = "Idempotent-Replayed"

    def register_routes(self) -> None:
        self.route("GET", r"/customers/(?P<ident>[^/]+)", self.read)
        self.route("POST", r"/customers/(?P<ident>[^/]+)/bump", self.bump)

    def _customer(self, ident: str) -> dict:
        customer = self.store.get("customers", ident)
        if customer is None:
            raise self.not_found("customer", ident)
        return customer

    def read(self, request, ident):
        customer = self._customer(ident)
        return {"id": ident, "bumps": customer.get("bumps", 0)}

    def bump(self, request, ident):
        customer = self._customer(ident)
        customer["bumps"] = customer.get("bumps", 0) + int(request.params.get("by", 1))
        self.store.touch("customers", customer)
        return {"id": ident, "bumps": customer["bumps"]}

    def render_error(self, error: ApiError) -> Response:
        return Response(error.status, {"error": {"code": error.code, "message": error.message}})


@pytest.fixture
def server():
    doc = {
        "as_of": "2026-06-30T00:00:00Z",
        "reporting_currency": "USD",
        "fx_rates": {"USD": "1"},
        "customers": [
            {"billing_system": "stripe", "customer_id": "c1", "created_at": "2026-01-01T00:00:00Z"}
        ],
    }
    scenario = validate_scenario(doc)
    running = RunningServer(CounterEmulator(SystemStore(scenario, "stripe", Clock(AS_OF, True))))
    yield running
    running.stop()


def call(server, method, path, headers=AUTH, body=None):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    hdrs = dict(headers)
    if body is not None:
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=body, headers=hdrs)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.headers), orjson.loads(data) if data else None


def test_auth_accepts_bearer_and_basic_and_refuses_others(server):
    assert call(server, "GET", "/customers/c1")[0] == 200
    basic = {"Authorization": "Basic " + base64.b64encode(f"{DEFAULT_API_KEY}:".encode()).decode()}
    assert call(server, "GET", "/customers/c1", headers=basic)[0] == 200
    status, _, body = call(server, "GET", "/customers/c1", headers={"Authorization": "Bearer sk_x"})
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert call(server, "GET", "/customers/c1", headers={})[0] == 401


def test_unknown_ids_paths_and_methods(server):
    assert call(server, "GET", "/customers/nope")[0] == 404
    assert call(server, "GET", "/nowhere")[0] == 404
    assert call(server, "DELETE", "/customers/c1")[0] == 405


def test_idempotency_replays_first_response_without_applying_again(server):
    key = {**AUTH, "Idempotency-Key": "k-1"}
    first = call(server, "POST", "/customers/c1/bump", key, body="by=2")
    second = call(server, "POST", "/customers/c1/bump", key, body="by=2")
    assert first[2] == second[2] == {"id": "c1", "bumps": 2}
    assert second[1].get("Idempotent-Replayed") == "true"
    assert call(server, "GET", "/customers/c1")[2]["bumps"] == 2
    other = call(server, "POST", "/customers/c1/bump", key, body="by=5")
    assert other[0] == 400 and other[2]["error"]["code"] == "idempotency_error"
    fresh = call(server, "POST", "/customers/c1/bump", {**AUTH, "Idempotency-Key": "k-2"}, "by=1")
    assert fresh[2]["bumps"] == 3


def test_request_log_has_params_key_and_status_but_no_secrets(server):
    call(
        server, "POST", "/customers/c1/bump", {**AUTH, "Idempotency-Key": "k-9"}, "by=1&api_key=s3"
    )
    entry = server.emulator.request_log[-1]
    assert entry["method"] == "POST" and entry["path"] == "/customers/c1/bump"
    assert entry["params"] == {"by": "1", "api_key": "[redacted]"}
    assert entry["idempotency_key"] == "k-9" and entry["status"] == 200
    assert entry["at"] == AS_OF.isoformat()
    assert DEFAULT_API_KEY not in orjson.dumps(server.emulator.request_log).decode()


def test_scripted_faults_429_and_5xx(server):
    server.emulator.faults = FaultConfig(script=deque(["429", "500", "503"]), retry_after=7)
    status, headers, _ = call(server, "GET", "/customers/c1")
    assert status == 429 and headers["Retry-After"] == "7"
    assert call(server, "GET", "/customers/c1")[0] == 500
    assert call(server, "GET", "/customers/c1")[0] == 503
    assert call(server, "GET", "/customers/c1")[0] == 200
    assert [e["fault"] for e in server.emulator.request_log] == ["429", "500", "503", None]


def test_dropped_connection_before_the_write_applies_nothing(server):
    server.emulator.faults = FaultConfig(script=deque(["drop"]))
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        call(server, "POST", "/customers/c1/bump", body="by=1")
    assert call(server, "GET", "/customers/c1")[2]["bumps"] == 0


def test_dropped_connection_after_the_write_keeps_the_write(server):
    server.emulator.faults = FaultConfig(script=deque(["drop_after"]))
    with pytest.raises(
        (http.client.RemoteDisconnected, http.client.IncompleteRead, ConnectionError)
    ):
        call(server, "POST", "/customers/c1/bump", body="by=1")
    assert call(server, "GET", "/customers/c1")[2]["bumps"] == 1


def test_fault_shares_are_repeatable_for_a_seed():
    def draws(seed):
        faults = FaultConfig(rate_429=0.3, rate_500=0.1, seed=seed)
        return [faults.pick("/x") for _ in range(200)]

    assert draws(5) == draws(5)
    counts = draws(5)
    assert 30 < counts.count("429") < 90 and 5 < counts.count("500") < 40


def test_faults_can_be_limited_to_paths():
    faults = FaultConfig(script=deque(["500"]), only_paths=["/bump"])
    assert faults.pick("/customers/c1") is None
    assert faults.pick("/customers/c1/bump") == "500"


def test_rate_limit_answers_429_past_the_budget(server):
    budget = Budget("site-rate", "window", 3, 60.0)
    server.emulator.rate_limits = RateLimits(lambda _key: (budget,))
    statuses = [call(server, "GET", "/customers/c1")[0] for _ in range(10)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]


def test_admin_endpoints(server):
    call(server, "GET", "/customers/c1")
    status, _, body = call(server, "GET", "/_sandbox/requests")
    assert status == 200 and body["data"][0]["path"] == "/customers/c1"
    conn = http.client.HTTPConnection(server.host, server.port)
    conn.request(
        "POST",
        "/_sandbox/faults",
        body=orjson.dumps({"script": ["503"]}),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert conn.getresponse().status == 200
    assert call(server, "GET", "/customers/c1")[0] == 503
    assert call(server, "GET", "/_sandbox/clock")[2]["now"] == AS_OF.isoformat()
    assert call(server, "GET", "/_sandbox/requests", headers={})[0] == 401


def test_running_clock_moves_and_can_be_set():
    clock = Clock(AS_OF)
    assert clock.now() >= AS_OF
    clock.advance(timedelta(days=2))
    assert clock.now() >= AS_OF + timedelta(days=2)
    frozen = Clock(AS_OF, frozen=True)
    frozen.set(AS_OF + timedelta(hours=1))
    assert frozen.now() == AS_OF + timedelta(hours=1)


def test_nested_form_decoding():
    pairs = [
        ("items[0][price]", "p"),
        ("items[0][quantity]", "2"),
        ("expand[]", "a"),
        ("expand[]", "b"),
        ("metadata[k]", "v"),
        ("created[gte]", "5"),
        ("limit", "3"),
    ]
    assert decode_nested(pairs) == {
        "items": [{"price": "p", "quantity": "2"}],
        "expand": ["a", "b"],
        "metadata": {"k": "v"},
        "created": {"gte": "5"},
        "limit": "3",
    }
