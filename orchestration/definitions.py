"""The Dagster code location (`workspace.yaml`, `make ui`): loads, models, validation,
jobs, schedules, the drop-folder sensor, load freshness policies, the billing
write-backs and the serving copy of the marts, gathered from their modules.

`defs` is lazy (`@definitions`): Dagster builds the definitions when it loads the code
location, not when this module is imported. Building them reads
`dbt_project/target/manifest.json`, parsed first if missing or stale
(`orchestration.dbt_project.ensure_manifest`). `build_definitions()` reads the
environment when called, so the demo's runs (`demo/jobs.py`, a process started with the
sandbox's variables) point at its sandbox.

Every run uses the in-process executor: the steps of one run take turns, so two loads of
one run never race for DuckDB's single writer; across runs, the `duckdb` pool (limit 1,
orchestration/dagster.yaml) makes them wait for each other instead.
"""

import os
from collections.abc import Mapping

from dagster import Definitions, definitions, in_process_executor

from orchestration.freshness import with_freshness
from orchestration.jobs import (
    billing_sync_job,
    build_schedules,
    exit_sessions_job,
    validation_job,
    writebacks_job,
)
from orchestration.loads import load_assets, origin_specs
from orchestration.models import dbt_models
from orchestration.resources import build_resources
from orchestration.sensors import drop_folder_sensor
from orchestration.serving import serving_marts
from orchestration.validation import validation_30d
from orchestration.webhooks import webhook_outbox, webhook_outbox_sensor, webhooks_job
from orchestration.writebacks import billing_writebacks


def build_definitions(env: Mapping[str, str] = os.environ) -> Definitions:
    sync, exit_sessions, validation = billing_sync_job(), exit_sessions_job(), validation_job()
    writebacks = writebacks_job()
    webhooks = webhooks_job()
    loads = with_freshness(load_assets(), env)
    return Definitions(
        assets=[
            *origin_specs(),
            *loads,
            dbt_models(),
            validation_30d,
            billing_writebacks,
            serving_marts(),
            webhook_outbox,
        ],
        jobs=[sync, exit_sessions, validation, writebacks, webhooks],
        schedules=build_schedules(sync, validation, writebacks, env),
        sensors=[drop_folder_sensor(exit_sessions), webhook_outbox_sensor(webhooks)],
        resources=build_resources(env),
        executor=in_process_executor,
    )


@definitions
def defs() -> Definitions:
    """What `workspace.yaml` loads: the definitions of the process's environment."""
    return build_definitions()
