"""`retention webhooks check|deliver|dead-letters|redeliver`: webhooks.yml and the outbox
by hand (Dagster runs the same delivery as the `webhook_outbox` asset; the collector's
delivery thread runs it continuously)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from collector.settings import STATE_DB_ENV, collector_db
from webhooks.config import WebhooksConfigError, json_schema, load_config, webhooks_path
from webhooks.outbox import Outbox


def _config_option(function):
    return click.option(
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="The webhooks file (default: $RETENTION_WEBHOOKS, else webhooks.yml).",
    )(function)


def _state_db_option(function):
    return click.option(
        "--state-db",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"The state database holding the outbox (default: ${STATE_DB_ENV}, else "
        ".collector/collector.sqlite).",
    )(function)


def _outbox(config: Path | None, state_db: Path | None) -> Outbox:
    try:
        loaded = load_config(config or webhooks_path())
    except WebhooksConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return Outbox(state_db or collector_db(), loaded)


@click.group(short_help="Signed webhooks out: check the file, deliver, redeliver.")
def webhooks() -> None:
    """Webhooks out: exit-session and validation events, signed, at least once."""


@webhooks.command(short_help="Validate webhooks.yml and list its endpoints.")
@_config_option
@click.option("--schema", is_flag=True, help="Print the file's JSON Schema instead.")
def check(config: Path | None, schema: bool) -> None:
    """Validate webhooks.yml (and that each secret's variable is set); list the endpoints."""
    if schema:
        click.echo(json.dumps(json_schema(), indent=2))
        return
    path = config or webhooks_path()
    try:
        loaded = load_config(path)
    except WebhooksConfigError as exc:
        raise click.ClickException(str(exc)) from None
    for endpoint in loaded.endpoints.values():
        click.echo(f"{endpoint.name:<16} {endpoint.url}  events: {', '.join(endpoint.events)}")
    click.echo(f"{path}: ok, {len(loaded.endpoints)} endpoint(s)")


@webhooks.command(short_help="Attempt every event due now, once.")
@_config_option
@_state_db_option
def deliver(config: Path | None, state_db: Path | None) -> None:
    """Attempt every event due now, once; print what happened and what the outbox holds."""
    with _outbox(config, state_db) as outbox:
        stats = outbox.deliver_pending()
        counts = outbox.counts()
    click.echo(
        f"attempts {stats.attempts}: delivered {stats.delivered}, retry later "
        f"{stats.retry_later}, dead {stats.dead}"
    )
    for (endpoint, state), count in sorted(counts.items()):
        click.echo(f"{endpoint:<16} {state:<10} {count:>8,}")


@webhooks.command("dead-letters", short_help="List the dead letters and why each died.")
@_config_option
@_state_db_option
def dead_letters(config: Path | None, state_db: Path | None) -> None:
    """List the dead letters, newest first, with why each one died."""
    with _outbox(config, state_db) as outbox:
        dead = outbox.dead_letters()
    for d in dead:
        click.echo(
            f"{d['event_id']} {d['endpoint']} {d['event_type']} attempts {d['attempts']}: "
            f"{d['reason']}; last error: {d['last_error']}"
        )
    click.echo(f"{len(dead)} dead letter(s)")


@webhooks.command(short_help="Send dead letters again (all, or the ids given).")
@_config_option
@_state_db_option
@click.argument("event_ids", nargs=-1)
def redeliver(config: Path | None, state_db: Path | None, event_ids: tuple[str, ...]) -> None:
    """Put dead letters (all, or EVENT_IDS) back in the outbox, then deliver once."""
    with _outbox(config, state_db) as outbox:
        moved = outbox.redeliver(list(event_ids) or None)
        stats = outbox.deliver_pending()
    click.echo(f"{moved} event(s) back in the outbox; delivered {stats.delivered}")
