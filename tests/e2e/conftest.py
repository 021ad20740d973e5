"""The browser, the company's page backend, the collector under uvicorn and a synced
warehouse, for the cancel page's end-to-end tests. Everything runs in this process on free
ports, with its state in tmp."""

from __future__ import annotations

import importlib.util
import secrets
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType

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


def load_backend() -> ModuleType:
    """examples/cancel-page/backend.py (a folder with a dash is no package): the same
    signing and serving code the demo runs."""
    spec = importlib.util.spec_from_file_location("cancel_page_backend", PAGE / "backend.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def chrome():
    """Headless Chromium driven by Debian's chromedriver; skipped, saying what to install,
    where either is missing (`make browser` installs them as root)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing or not shutil.which(str(CHROMEDRIVER)):
        pytest.skip(
            f"{', '.join(missing)} missing: run `make browser` as root, or "
            "`sudo apt-get install -y chromium chromium-driver`"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    yield driver
    driver.quit()


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


@pytest.fixture(scope="session")
def synced(tmp_path_factory) -> Synced:
    import duckdb

    from orchestration.dbt_project import ensure_manifest
    from orchestration.serving import publish, serving_path
    from tests.integration.test_end_to_end_marts import AS_OF
    from tests.writeback_pipeline import build_warehouse

    ensure_manifest()
    doc, warehouse = build_warehouse(tmp_path_factory.mktemp("e2e"), 40, AS_OF)
    link = serving_path(warehouse, env={})
    with duckdb.connect(str(warehouse)) as con:
        publish(con, link, "e2e-sync", "e2e")
    return Synced(doc, warehouse, link)
