"""Jobs and schedules.

- `billing_sync`: every billing system and the exit sessions, then every model
  downstream; hourly by default (`RETENTION_SYNC_CRON`, UTC). A failed load fails its
  assets and the dbt step, which depends on every load, does not start: no model is
  rebuilt from a half-refreshed warehouse, and the marts keep the last good state.
- `exit_sessions_load`: the exit sessions, then the models, then the billing write-backs
  (and the ledger mart); run by the drop-folder sensor.
- `billing_writebacks_job`: the write-backs alone (and the ledger mart);
  hourly at half past by default (`RETENTION_WRITEBACKS_CRON`), after the sync, so exit
  sessions read from a table (no sensor) are written back too; and by hand (e.g.
  `retry_failed: true` after a fix). The sync job itself stays loads-then-models: with
  the write-backs in it, Dagster splits the dbt step in three around them.
- `validation_30d_daily`: one `validation_30d` partition; daily at 00:30 UTC for the day
  that just ended (after the midnight sync), and the job backfills run.
"""

import os
from collections.abc import Mapping

from dagster import (
    AssetSelection,
    JobDefinition,
    ScheduleDefinition,
    build_schedule_from_partitioned_job,
    define_asset_job,
)

from orchestration.loads import EXIT_SESSIONS
from orchestration.models import dbt_models
from orchestration.serving import serving_selection
from orchestration.settings import (
    DEFAULT_SYNC_CRON,
    DEFAULT_WRITEBACKS_CRON,
    SYNC_CRON_ENV,
    WRITEBACKS_CRON_ENV,
    billing_systems_in_use,
    setting,
)
from orchestration.validation import validation_30d
from orchestration.writebacks import LEDGER_MART, WRITEBACKS

VALIDATION = AssetSelection.assets(validation_30d)


def _loads_then_models(*groups: str) -> AssetSelection:
    """The load assets of `groups`, then every dbt model and seed (one dbt step after the
    loads): the marts read billing and exit-session tables together, and the seeds
    (fx_rates) hang off no load, so "the models downstream" is all of them."""
    return AssetSelection.groups(*groups).materializable() | AssetSelection.assets(dbt_models())


def _then_serving(selection: AssetSelection) -> AssetSelection:
    """`selection`, then the publish of the marts to the serving file."""
    return selection | serving_selection()


def billing_sync_job() -> JobDefinition:
    return define_asset_job(
        "billing_sync",
        selection=_then_serving(_loads_then_models(*billing_systems_in_use(), EXIT_SESSIONS)),
        description="Sync every billing system in use and the exit sessions, then rebuild the "
        "models.",
    )


def exit_sessions_job() -> JobDefinition:
    return define_asset_job(
        "exit_sessions_load",
        selection=_then_serving(_loads_then_models(EXIT_SESSIONS) | WRITEBACKS),
        description="Load new exit-session files, rebuild the models, apply the write-backs.",
    )


def validation_job() -> JobDefinition:
    return define_asset_job(
        "validation_30d_daily",
        selection=_then_serving(VALIDATION),
        description="Validate the episodes whose 30-day save window closed on the day.",
    )


def writebacks_job() -> JobDefinition:
    return define_asset_job(
        "billing_writebacks_job",
        selection=_then_serving(WRITEBACKS | AssetSelection.assets(LEDGER_MART)),
        description="Apply pending billing write-backs (retry failed ones with "
        "retry_failed: true), then refresh fct_billing_writebacks.",
    )


def build_schedules(
    sync: JobDefinition,
    validation: JobDefinition,
    writebacks: JobDefinition,
    env: Mapping[str, str] = os.environ,
) -> list[ScheduleDefinition]:
    """All stopped until switched on (in the UI or `dagster schedule start`): a code
    location that starts syncing (or writing to billing) the moment it loads would
    surprise whoever opens it."""
    return [
        ScheduleDefinition(
            name="billing_sync_schedule",
            job=sync,
            cron_schedule=setting(SYNC_CRON_ENV, DEFAULT_SYNC_CRON, env),
            execution_timezone="UTC",
        ),
        ScheduleDefinition(
            name="billing_writebacks_schedule",
            job=writebacks,
            cron_schedule=setting(WRITEBACKS_CRON_ENV, DEFAULT_WRITEBACKS_CRON, env),
            execution_timezone="UTC",
        ),
        build_schedule_from_partitioned_job(
            validation, name="validation_30d_schedule", hour_of_day=0, minute_of_hour=30
        ),
    ]
