"""A webhook receiver on a free local port, for tests, the bench and the end-to-end test:
it checks each request with `webhooks.receiving.read_event` (a bad one gets 400), fails
a share of good ones on purpose (500, or an answer slower than the sender's timeout after
keeping the event, so the sender retries one the receiver already has), and keeps what
it accepted, so a test can count deliveries and dedupe by event id."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from webhooks.receiving import InvalidWebhook, read_event


@dataclass
class Receiver:
    secret: bytes
    fail_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    seed: int = 16
    accepted: list[dict[str, Any]] = field(default_factory=list)
    failed: int = 0
    refused: list[str] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        """The status to answer; an accepted event is kept before a slow answer."""
        try:
            event = read_event(self.secret, headers, body)
        except (InvalidWebhook, ValueError) as exc:
            with self._lock:
                self.refused.append(str(exc))
            return 400
        with self._lock:
            roll = self._random.random()
            if roll < self.fail_rate:
                self.failed += 1
                return 500
            self.accepted.append({**event, "received_at": time.time()})
        if roll < self.fail_rate + self.slow_rate:
            time.sleep(self.slow_seconds)
        return 204

    def unique_ids(self) -> set[str]:
        with self._lock:
            return {e["id"] for e in self.accepted}


@contextmanager
def receiving(receiver: Receiver) -> Iterator[Receiver]:
    """`receiver` served on 127.0.0.1 at a free port (its `url`) until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a sender reuses its connections

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = receiver.handle(dict(self.headers.items()), body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:  # quiet test output
            pass

    class Server(ThreadingHTTPServer):
        # The default backlog (5) drops connections beyond it: their SYN retried a
        # second later, which a bench would read as the sender's latency.
        request_queue_size = 128

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
