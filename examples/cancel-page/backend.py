"""The company's side of the example cancel page: it serves the static page and renders
each visit's signed context at `/context.json`.

A real backend does the same for its logged-in customer: it knows their billing ids, so
it signs them (with the app's secret, which never reaches the browser) and the collector
refuses a visit for any other billing id. Here one customer is fixed on the command line
(the demo) or by the caller (the browser test). The context is signed when the page asks
for it, not when the link is made, so the timestamp is always inside the collector's
replay window.

Run it beside the collector (the secret in the environment variable the collector's
config names for the app):

    .venv/bin/python examples/cancel-page/backend.py --app-id demo \\
        --secret-env RETENTION_APP_DEMO_SECRET --billing-system stripe \\
        --billing-id sub_123 --collector http://127.0.0.1:8800 --port 8801
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from urllib.parse import urlencode, urlsplit

from billing_clients.systems import BILLING_SYSTEMS
from webhooks.signing import sign
from writebacks.catalog import load_catalog

PAGE = Path(__file__).resolve().parent
CONTEXT_PATH = "/context.json"
DEFAULT_OFFER = "pause_1m"


def signed_context(
    secret: bytes,
    *,
    app_id: str,
    billing_system: str,
    billing_id: str,
    collector: str,
    offer_id: str | None = None,
    offer_type: str | None = None,
    now: float | None = None,
) -> dict[str, str]:
    """What the page needs to post a visit: the signed fields (the signature covers
    app_id, billing_system, billing_id and the Unix time, webhooks.signing's rule), where
    the collector is, and which catalog offer to show."""
    timestamp = str(int(time.time() if now is None else now))
    context = {
        "app_id": app_id,
        "billing_system": billing_system,
        "billing_id": billing_id,
        "timestamp": timestamp,
        "signature": sign(secret, [app_id, billing_system, billing_id, timestamp]),
        "collector": collector,
    }
    if offer_id and offer_type:
        context |= {"offer_id": offer_id, "offer_type": offer_type}
    return context


def signed_link(page_url: str, context: dict[str, str]) -> str:
    """The page's URL with its signed context in the query, for a backend that makes
    links (a redirect, an email): good only within the collector's replay window."""
    return f"{page_url}?{urlencode(context)}"


class _PageHandler(SimpleHTTPRequestHandler):
    """The page's files, and a freshly signed context at CONTEXT_PATH."""

    def __init__(self, *args, context: Callable[[], dict[str, str]], **kwargs) -> None:
        self._context = context
        super().__init__(*args, directory=str(PAGE), **kwargs)

    def do_GET(self) -> None:
        if urlsplit(self.path).path != CONTEXT_PATH:
            super().do_GET()
            return
        body = json.dumps(self._context()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Nothing logged: a signed link carries its signature in the query string, and no
        signature is ever written to a log."""


def serve_page(
    context: Callable[[], dict[str, str]], host: str = "127.0.0.1", port: int = 0
) -> ThreadingHTTPServer:
    """The page served from a daemon thread (port 0: a free one, read it from
    `server.server_address`); stop it with `server.shutdown()`."""
    server = ThreadingHTTPServer((host, port), partial(_PageHandler, context=context))
    Thread(target=server.serve_forever, name="cancel-page", daemon=True).start()
    return server


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app-id", required=True)
    parser.add_argument(
        "--secret-env", required=True, help="the environment variable holding the app's secret"
    )
    parser.add_argument("--billing-system", required=True, choices=BILLING_SYSTEMS)
    parser.add_argument("--billing-id", required=True, help="the customer's subscription id")
    parser.add_argument("--collector", default="http://127.0.0.1:8800")
    parser.add_argument("--offer", default=DEFAULT_OFFER, help="an offer id of the catalog")
    parser.add_argument("--catalog", default=None, help="writebacks.yml (default: the project's)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8801)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    options = _arguments(argv)
    secret = os.environ.get(options.secret_env)
    if not secret:
        sys.exit(f"{options.secret_env} is not set: export the app's secret under that name")
    offer = load_catalog(options.catalog).offers.get(options.offer)
    if offer is None:
        sys.exit(f"--offer {options.offer}: no such offer in the write-back catalog")
    context = partial(
        signed_context,
        secret.encode(),
        app_id=options.app_id,
        billing_system=options.billing_system,
        billing_id=options.billing_id,
        collector=options.collector,
        offer_id=offer.offer_id,
        offer_type=offer.type,
    )
    server = serve_page(context, options.host, options.port)
    host, port = server.server_address[:2]
    print(f"cancel page for {options.billing_system} {options.billing_id}: http://{host}:{port}/")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
