"""A request whose body is cut short is never processed, on all three emulators.

httpx and urllib3 send a request's headers and its body in two writes, so a write-back
killed between them leaves the server with headers that promise a body that never comes.
A real API never acts on half a request: the connection counts as dropped, nothing is
applied, and no idempotency key is stored, so the retry with the same key and the whole
body is applied once, as a first request (not refused as a key reused with other
parameters). Raw sockets send exactly the half request an SDK would leave behind.
"""

from __future__ import annotations

import base64
import http.client
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson
import pytest

from sandbox.server import DEFAULT_API_KEY
from tests.small_scenarios import one_subscription_per_system

pytestmark = pytest.mark.integration

BASIC = "Basic " + base64.b64encode(f"{DEFAULT_API_KEY}:".encode()).decode()
RECURLY_ACCEPT = "application/vnd.recurly.v2021-02-25+json"


@dataclass(frozen=True)
class Write:
    """One write on one emulator, and how to read back whether it was applied."""

    system: str
    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    read_path: str
    applied: str  # a JSON pointer-ish path (dot-separated) whose value shows the write
    expected: object


WRITES = [
    Write(
        "stripe",
        "POST",
        "/v1/subscriptions/sub_1",
        b"cancel_at_period_end=true&metadata[reason]=truncated-body-test",
        {
            "Authorization": f"Bearer {DEFAULT_API_KEY}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Idempotency-Key": "truncated-stripe-1",
        },
        "/v1/subscriptions/sub_1",
        "cancel_at_period_end",
        True,
    ),
    Write(
        "recurly",
        "PUT",
        "/subscriptions/rsub1/cancel",
        orjson.dumps({"timeframe": "term_end"}),
        {
            "Authorization": BASIC,
            "Accept": RECURLY_ACCEPT,
            "Content-Type": "application/json",
            "Idempotency-Key": "truncated-recurly-1",
        },
        "/subscriptions/rsub1",
        "state",
        "canceled",
    ),
    Write(
        "chargebee",
        "POST",
        "/api/v2/subscriptions/cb-sub-1/change_term_end",
        b"term_ends_at=1785000000",
        {
            "Authorization": BASIC,
            "Content-Type": "application/x-www-form-urlencoded",
            "chargebee-idempotency-key": "truncated-chargebee-1",
        },
        "/api/v2/subscriptions/cb-sub-1",
        "subscription.current_term_end",
        1785000000,
    ),
]


def _send_half(url: str, write: Write) -> None:
    """Headers promising the whole body, then half of it, then the connection closes."""
    parts = urlsplit(url)
    head = [f"{write.method} {write.path} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}"]
    head += [f"{name}: {value}" for name, value in write.headers.items()]
    head.append(f"Content-Length: {len(write.body)}")
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sock.sendall(write.body[: len(write.body) // 2])
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(65536) == b"", "the server answered half a request"


def _request(url: str, method: str, path: str, headers: dict, body: bytes = b"") -> tuple:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        return response.status, orjson.loads(response.read() or b"null")
    finally:
        conn.close()


def _read(url: str, write: Write):
    headers = {k: v for k, v in write.headers.items() if k in ("Authorization", "Accept")}
    status, body = _request(url, "GET", write.read_path, headers)
    assert status == 200, body
    for key in write.applied.split("."):
        body = body.get(key)
    return body


def _wait_for_log(emulator, fault: str) -> dict:
    for _ in range(100):
        found = [entry for entry in list(emulator.request_log) if entry["fault"] == fault]
        if found:
            return found[-1]
        time.sleep(0.02)
    raise AssertionError(f"no request logged with fault {fault!r}")


@pytest.mark.parametrize("write", WRITES, ids=[w.system for w in WRITES])
def test_a_body_cut_short_is_never_applied_and_its_key_stays_free(serve_scenario, write):
    sandbox = serve_scenario(one_subscription_per_system())
    url, emulator = sandbox.urls[write.system], sandbox.emulator(write.system)
    before = _read(url, write)
    assert before != write.expected

    _send_half(url, write)

    logged = _wait_for_log(emulator, "truncated")
    assert (logged["method"], logged["path"], logged["status"]) == (write.method, write.path, 0)
    assert _read(url, write) == before, "half a request changed the subscription"

    status, body = _request(url, write.method, write.path, write.headers, write.body)
    assert 200 <= status < 300, body
    assert not emulator.request_log[-1]["replayed"], "the retry was taken for a replay"
    assert _read(url, write) == write.expected


def test_a_stalled_body_times_out_as_a_dropped_connection(serve_scenario, monkeypatch):
    """A client that sends headers and then nothing holds the connection only until the
    body timeout; the write is not applied."""
    monkeypatch.setattr("sandbox.server.BODY_TIMEOUT_SECONDS", 0.3)
    write = WRITES[0]
    sandbox = serve_scenario(one_subscription_per_system())
    url = sandbox.urls[write.system]
    parts = urlsplit(url)
    head = [f"{write.method} {write.path} HTTP/1.1", f"Host: {parts.hostname}"]
    head += [f"{name}: {value}" for name, value in write.headers.items()]
    head.append(f"Content-Length: {len(write.body)}")
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        assert sock.recv(65536) == b""  # closed by the server after the timeout
    _wait_for_log(sandbox.emulator(write.system), "truncated")
    assert _read(url, write) is False
