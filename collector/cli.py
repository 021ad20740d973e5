"""`retention collector serve`: the collector under uvicorn, with the webhook outbox of
webhooks.yml (and its delivery thread) and, when the caller wires one, the write-back
fast path. The fast path needs the orchestration's catalog and marts readers, which this
package may not import: `retention_cli` passes a factory for it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import uvicorn

from collector.app import create_app
from collector.dispatch import FastPath
from collector.settings import CollectorSettings, ConfigError, load_settings
from webhooks.config import WebhooksConfigError, load_config
from webhooks.outbox import Deliverer, Outbox

FastPathFactory = Callable[[CollectorSettings], contextlib.AbstractContextManager[FastPath | None]]


@contextlib.contextmanager
def webhook_outbox(settings: CollectorSettings) -> Iterator[Outbox | None]:
    """The outbox of webhooks.yml (`RETENTION_WEBHOOKS`) with its delivery thread, or
    None when no endpoint is configured."""
    try:
        config = load_config()
    except WebhooksConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not config.endpoints:
        yield None
        return
    outbox = Outbox(settings.state_db, config)
    deliverer = Deliverer(outbox).start()
    try:
        yield outbox
    finally:
        deliverer.stop()


def collector_command(fast_path_factory: FastPathFactory | None = None) -> click.Group:
    """The `collector` command group; `fast_path_factory` opens the fast path, if any."""

    @click.group()
    def collector() -> None:
        """The signed session collector the cancel page posts to."""

    @collector.command()
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=8800, show_default=True, type=int)
    @click.option(
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        help="collector.yml (default: $RETENTION_COLLECTOR_CONFIG, else the project's collector.yml)",
    )
    def serve(host: str, port: int, config: Path | None) -> None:
        """Serve the collector: POST/PATCH /v1/sessions, GET /healthz, /docs."""
        try:
            settings = load_settings(config)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        fast_paths = fast_path_factory(settings) if fast_path_factory else None
        with webhook_outbox(settings) as outbox, fast_paths or contextlib.nullcontext() as fast:
            app = create_app(settings, fast_path=fast, outbox=outbox)
            uvicorn.run(app, host=host, port=port, log_level="info")

    return collector
