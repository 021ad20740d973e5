"""Webhooks in Dagster: the 30-day validation's events, and the outbox made visible.

- `validation_30d` reads `settled_episodes` of its partitions and `send_validation_events`:
  one `validation.<status>` event per episode whose page outcome is settled (canceled,
  or saved: its save window closed before the billing sync), emitted into the outbox of
  the state database (`RETENTION_COLLECTOR_DB`) and delivered before the step ends,
  within a time budget. A rerun or a backfill emits the same event ids, which the outbox
  keeps once per endpoint: nothing is sent twice. Nothing is read or emitted when no
  endpoint of webhooks.yml takes validation events.
- `webhook_outbox` (job `webhooks_deliver`): delivers what is due, shows the outbox per
  endpoint (pending, delivered, dead) and fails its check `no_webhook_dead_letters`
  (a warning) while any event is in the dead letters, listing them. Launch it with
  `redeliver: true` (or `event_ids`) once the receiver is fixed: the dead letters go back
  to the outbox and are sent again.
- `webhook_outbox_sensor` launches that job when events are due and no run of it is in
  flight: retries happen even where no collector (with its delivery thread) runs.

A bad webhooks.yml fails the run before anything is written, with every problem named.
"""

import time
from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSelection,
    Config,
    DagsterRunStatus,
    DefaultSensorStatus,
    Failure,
    JobDefinition,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    asset,
    define_asset_job,
    sensor,
)
from pydantic import Field

from collector.settings import collector_db
from orchestration.marts_metadata import markdown_table, query
from webhooks.config import WebhooksConfig, WebhooksConfigError, load_config
from webhooks.events import EPISODE_FIELDS, VALIDATION_PREFIX
from webhooks.outbox import DeliveryStats, Outbox, due_events

WEBHOOKS_GROUP = "webhooks"
NO_DEAD_LETTERS = "no_webhook_dead_letters"
JOB = "webhooks_deliver"
# A step delivers for at most this long; what is left waits for the next pass (the
# collector's delivery thread or the sensor's run). Shorter in validation_30d: its step
# holds the duckdb pool's one slot.
STEP_BUDGET_SECONDS = 30
VALIDATION_BUDGET_SECONDS = 10
# The episodes of the cohorts (first and last instants) whose outcome is settled.
SETTLED_EPISODES = f"""
select {", ".join(EPISODE_FIELDS)} from marts.fct_exit_episodes
where first_landed_at >= ? and first_landed_at < ? and page_outcome <> 'watch_list'
order by first_landed_at, episode_id
"""
_IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def load_webhooks() -> WebhooksConfig:
    """webhooks.yml (`RETENTION_WEBHOOKS`); a bad file fails the run, naming every problem."""
    try:
        return load_config()
    except WebhooksConfigError as exc:
        raise Failure(description=str(exc)) from None


def settled_episodes(
    con: Any, webhooks: WebhooksConfig, cohorts: Sequence[Any]
) -> list[dict[str, Any]]:
    """The cohorts' episodes whose outcome is settled, read while the step holds the
    warehouse (none when no endpoint takes validation events: nothing is read)."""
    if not webhooks.wants(VALIDATION_PREFIX):
        return []
    header, rows = query(con, SETTLED_EPISODES, list(cohorts))
    return [dict(zip(header, row, strict=True)) for row in rows]


def send_validation_events(
    context: AssetExecutionContext,
    webhooks: WebhooksConfig,
    episodes: list[dict[str, Any]],
) -> dict[str, Any]:
    """Emit one event per episode and deliver, within VALIDATION_BUDGET_SECONDS (after
    the warehouse is released); the step's metadata about them."""
    if not webhooks.wants(VALIDATION_PREFIX):
        return {}
    with Outbox(collector_db(), webhooks) as outbox:
        emitted = outbox.emit_validations(episodes)
        stats = outbox.deliver_pending(VALIDATION_BUDGET_SECONDS)
    context.log.info(
        "webhooks: %s validation event(s) emitted for %s episode(s); %s delivered, %s to retry",
        emitted,
        len(episodes),
        stats.delivered,
        stats.retry_later,
    )
    return {
        "webhook_events_emitted": MetadataValue.int(emitted),
        **_delivery_metadata(stats),
    }


class WebhookOutboxConfig(Config):
    """`redeliver`: every dead letter back to the outbox; `event_ids`: only these."""

    redeliver: bool = False
    event_ids: list[str] = Field(default_factory=list)


@asset(
    name="webhook_outbox",
    group_name=WEBHOOKS_GROUP,
    kinds={"python", "sqlite"},
    check_specs=[AssetCheckSpec(NO_DEAD_LETTERS, asset="webhook_outbox")],
    description="Webhooks out (webhooks.yml): delivers the events due, shows the outbox per "
    "endpoint and the dead letters; run with redeliver: true to send them again.",
)
def webhook_outbox(context: AssetExecutionContext, config: WebhookOutboxConfig):
    with Outbox(collector_db(), load_webhooks()) as outbox:
        if config.redeliver or config.event_ids:
            moved = outbox.redeliver(config.event_ids or None)
            context.log.info("webhooks: %s dead letter(s) back in the outbox", moved)
        stats = outbox.deliver_pending(STEP_BUDGET_SECONDS)
        counts = outbox.counts()
        dead = outbox.dead_letters()
    yield MaterializeResult(
        metadata={
            **_delivery_metadata(stats),
            "outbox": MetadataValue.md(
                markdown_table(
                    ["endpoint", "state", "events"],
                    [(e, s, n) for (e, s), n in sorted(counts.items())],
                )
            ),
        }
    )
    yield no_dead_letters_check(dead)


def no_dead_letters_check(dead: list[dict[str, Any]]) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=NO_DEAD_LETTERS,
        passed=not dead,
        severity=AssetCheckSeverity.WARN,
        description=(
            f"{len(dead)} webhook event(s) in the dead letters: each row says why (the "
            "receiver's last answer); fix the receiver or webhooks.yml, then run "
            f"{JOB} with redeliver: true"
            if dead
            else "no webhook dead letters"
        ),
        metadata={
            "dead_letters": len(dead),
            "events": MetadataValue.md(
                markdown_table(
                    ["endpoint", "event", "type", "attempts", "reason", "last error"],
                    [
                        (
                            d["endpoint"],
                            d["event_id"],
                            d["event_type"],
                            d["attempts"],
                            d["reason"],
                            d["last_error"],
                        )
                        for d in dead[:50]
                    ],
                )
            ),
        },
    )


def _delivery_metadata(stats: DeliveryStats) -> dict[str, Any]:
    return {
        "webhooks_delivered": MetadataValue.int(stats.delivered),
        "webhooks_retry_later": MetadataValue.int(stats.retry_later),
        "webhooks_dead": MetadataValue.int(stats.dead),
    }


def webhooks_job() -> JobDefinition:
    return define_asset_job(
        JOB,
        selection=AssetSelection.assets(webhook_outbox),
        description="Deliver the webhook events due; with redeliver: true, the dead letters too.",
    )


def webhook_outbox_sensor(job: JobDefinition) -> SensorDefinition:
    @sensor(
        name="webhook_outbox_sensor",
        job=job,
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.STOPPED,
        description="Webhook events due for an attempt (retries included): deliver them, "
        "where no collector's delivery thread runs.",
    )
    def _sensor(context: SensorEvaluationContext):
        due = due_events(collector_db(), time.time())
        if not due:
            return SkipReason("no webhook event due")
        running = context.instance.get_runs(
            filters=RunsFilter(job_name=job.name, statuses=_IN_FLIGHT), limit=1
        )
        if running:
            return SkipReason(f"{due} event(s) due; a {job.name} run is in flight")
        return RunRequest(tags={"retention/webhook_events_due": str(due)})

    return _sensor
