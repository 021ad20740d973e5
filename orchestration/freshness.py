"""Source freshness: every load asset should have landed within a window (default two
hours, twice the hourly sync; RETENTION_FRESHNESS_HOURS), so a billing system or the
exit-session drop that stopped syncing shows as a failed check in the UI, and the
freshness sensor re-evaluates the checks without a run."""

from collections.abc import Mapping, Sequence
from datetime import timedelta

from dagster import (
    AssetChecksDefinition,
    AssetsDefinition,
    SensorDefinition,
    build_last_update_freshness_checks,
    build_sensor_for_freshness_checks,
)


def freshness_checks(
    loads: Sequence[AssetsDefinition], env: Mapping[str, str]
) -> Sequence[AssetChecksDefinition]:
    hours = float(env.get("RETENTION_FRESHNESS_HOURS", "2"))
    return build_last_update_freshness_checks(
        assets=list(loads), lower_bound_delta=timedelta(hours=hours)
    )


def freshness_sensor(checks: Sequence[AssetChecksDefinition]) -> SensorDefinition:
    return build_sensor_for_freshness_checks(freshness_checks=checks, name="load_freshness")
