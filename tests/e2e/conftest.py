"""The browser, the company's page backend, the collector under uvicorn and a synced
warehouse, for the cancel page's end-to-end tests. Everything runs in this process on free
ports, with its state in tmp."""

from __future__ import annotations

import importlib.util
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from collector.app import create_app
from collector.settings import App, CollectorConfig, CollectorSettings
from writebacks.catalog import load_catalog

PROJECT = Path(__file__).resolve().parents[2]
PAGE = PROJECT / "examples" / "cancel-page"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
APP_ID = "e2e-app"
SECRET_ENV = "RETENTION_E2E_APP_SECRET"
WEBHOOK_SECRET_ENV = "RETENTION_E2E_WEBHOOK_SECRET"


def load_backend() -> ModuleType:
    """examples/cancel-page/backend.py (a folder with a dash is no package): the same
    signing and serving code the demo runs."""
    spec = importlib.util.spec_from_file_location("cancel_page_backend", PAGE / "backend.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def missing_browser() -> str | None:
    """Why the browser tests cannot run here (what to install), or None."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(str(p))]
    if not missing:
        return None
    return (
        f"{', '.join(missing)} missing: run `make browser` as root, or "
        "`sudo apt-get install -y chromium chromium-driver`"
    )


def headless_chromium():
    """Debian's Chromium under its chromedriver, both named, so selenium never downloads a
    browser or a driver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


@pytest.fixture(scope="session")
def chrome():
    """Headless Chromium; skipped, saying what to install, where it or its driver is
    missing (`make browser` installs them as root)."""
    if reason := missing_browser():
        pytest.skip(reason)
    driver = headless_chromium()
    yield driver
    driver.quit()


def settled(driver, *states: str, timeout: float = 20) -> tuple[str, str]:
    """The page's status (state, text the visitor sees) once it reaches one of `states`
    or error, looked at every 20 ms (selenium's default, 500 ms, would round the figures)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    element = driver.find_element(By.ID, "status")
    WebDriverWait(driver, timeout, poll_frequency=0.02).until(
        lambda _: element.get_attribute("data-state") in (*states, "error")
    )
    return element.get_attribute("data-state"), element.text


def wait_for(driver, state: str) -> None:
    """The page reached `state`; an error fails with what the visitor was shown."""
    reached, text = settled(driver, state)
    assert reached == state, text


def poll(check: Callable[[], Any], timeout: float = 30, every: float = 0.02) -> Any:
    """`check()`'s first truthy answer within `timeout` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answer := check():
            return answer
        time.sleep(every)
    return None


@contextmanager
def as_served(settings: CollectorSettings) -> Iterator[tuple]:
    """The fast path and the webhook outbox (with its deliverer), opened from the
    environment by the factories `retention collector serve` uses."""
    from collector.cli import webhook_outbox
    from orchestration.writebacks_cli import open_fast_path

    with webhook_outbox(settings) as outbox, open_fast_path(settings) as fast_path:
        yield fast_path, outbox


def free_socket() -> socket.socket:
    """A listening socket on a free port, handed to uvicorn (no port race)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class Served:
    url: str
    stop: Callable[[], None]


def serve_asgi(app, sock: socket.socket) -> Served:
    """`app` under uvicorn in a thread on `sock`, its lifespan run (the collector's
    background threads start and stop with it)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the collector did not start: see its log above")
        threading.Event().wait(0.02)
    host, port = sock.getsockname()

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()

    return Served(f"http://{host}:{port}", stop)


@pytest.fixture
def app_secret(monkeypatch) -> bytes:
    secret = secrets.token_hex(32)
    monkeypatch.setenv(SECRET_ENV, secret)
    return secret.encode()


@dataclass(frozen=True)
class Stack:
    """The page (served by the example backend) and the collector it posts to."""

    page: str
    collector: str
    state_db: Path
    drop: Path


@contextmanager
def cancel_stack(
    tmp_path: Path,
    secret: bytes,
    billing: tuple[str, str],
    *,
    page_secret: bytes | None = None,
    services: Callable[[CollectorSettings], AbstractContextManager] | None = None,
) -> Iterator[Stack]:
    """The collector under uvicorn (its origin list naming the page's origin) and the page
    backend signing `billing` (system, id) with `page_secret` (default: the app's).
    `services(settings)` yields the (fast path, outbox) to hand the collector, opened with
    its settings as `retention collector serve` opens them; default neither."""
    backend = load_backend()
    offer = load_catalog().offers[backend.DEFAULT_OFFER]
    sock = free_socket()
    host, port = sock.getsockname()
    context = partial(
        backend.signed_context,
        page_secret or secret,
        app_id=APP_ID,
        billing_system=billing[0],
        billing_id=billing[1],
        collector=f"http://{host}:{port}",
        offer_id=offer.offer_id,
        offer_type=offer.type,
    )
    page = backend.serve_page(context)
    origin = "http://{}:{}".format(*page.server_address[:2])
    settings = CollectorSettings(
        config=CollectorConfig(apps={APP_ID: App(secret_env=SECRET_ENV)}, allowed_origins=[origin]),
        state_db=tmp_path / "collector.sqlite",
        drop_folder=tmp_path / "drop",
        secrets={APP_ID: secret},
        publish_interval_seconds=0.2,
    )
    with ExitStack() as running:
        running.callback(page.shutdown)
        fast_path, outbox = running.enter_context(
            services(settings) if services else nullcontext((None, None))
        )
        served = serve_asgi(create_app(settings, fast_path=fast_path, outbox=outbox), sock)
        running.callback(served.stop)
        yield Stack(origin + "/", served.url, settings.state_db, settings.drop_folder)


@dataclass(frozen=True)
class Synced:
    """A scenario's marts built once (extract + dbt) and their serving copy, which the
    fast path reads; tests serve the scenario again from a fresh sandbox."""

    doc: dict
    warehouse: Path
    serving: Path


def build_synced(root: Path, customers: int) -> Synced:
    """A generated scenario extracted and modelled into `root`, its serving copy published."""
    import duckdb

    from orchestration.dbt_project import ensure_manifest
    from orchestration.serving import publish, serving_path
    from tests.integration.test_end_to_end_marts import AS_OF
    from tests.writeback_pipeline import build_warehouse

    ensure_manifest()
    doc, warehouse = build_warehouse(root, customers, AS_OF)
    link = serving_path(warehouse, env={})
    with duckdb.connect(str(warehouse)) as con:
        publish(con, link, "e2e-sync", "e2e")
    return Synced(doc, warehouse, link)


@pytest.fixture(scope="session")
def synced(tmp_path_factory) -> Synced:
    return build_synced(tmp_path_factory.mktemp("e2e"), 40)


def active_stripe_subscriptions(serving: Path, count: int) -> list[str]:
    """`count` Stripe subscriptions in service, neither paused nor set to cancel, from the
    marts the fast path reads."""
    import duckdb

    with duckdb.connect(str(serving), read_only=True) as con:
        rows = con.execute(
            "select subscription_id from marts.dim_subscriptions where billing_system = "
            "'stripe' and status = 'active' and canceled_at is null and paused_at is null "
            "order by subscription_id limit ?",
            [count],
        ).fetchall()
    assert len(rows) == count, f"the scenario has {len(rows)} active Stripe subscriptions"
    return [subscription for (subscription,) in rows]


def live_environment(synced: Synced, receiver_url: str, folder: Path) -> dict[str, str]:
    """What `retention collector serve` reads to open its fast path and outbox: the write-
    back catalog live on every system, the synced marts, and webhooks.yml with one endpoint,
    `receiver_url`, for the session events (its secret in WEBHOOK_SECRET_ENV, set by the
    caller), retried quickly."""
    from orchestration.serving import SERVING_PATH_ENV
    from orchestration.settings import DUCKDB_PATH_ENV, WAREHOUSE_ENV
    from tests.writeback_pipeline import live_catalog
    from webhooks.config import WEBHOOKS_ENV
    from writebacks.catalog import CATALOG_ENV

    webhooks = folder / "webhooks.yml"
    webhooks.write_text(
        f"endpoints:\n  e2e:\n    url: {receiver_url}\n    secret_env: {WEBHOOK_SECRET_ENV}\n"
        "    events: ['exit_session.*']\n"
        "delivery: {initial_backoff_seconds: 0.1, max_backoff_seconds: 1}\n"
    )
    return {
        WEBHOOKS_ENV: str(webhooks),
        CATALOG_ENV: str(live_catalog(folder / "writebacks.yml")),
        WAREHOUSE_ENV: "duckdb",
        DUCKDB_PATH_ENV: str(synced.warehouse),
        SERVING_PATH_ENV: str(synced.serving),
    }
