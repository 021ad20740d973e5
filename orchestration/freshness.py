"""Load freshness: every load asset carries a freshness policy, failing when its last load
is older than a window (default two hours, twice the hourly sync;
RETENTION_FRESHNESS_HOURS), so a billing system or the exit-session drop that stopped
syncing shows as failing freshness in the UI.

Dagster's freshness daemon (on by default; `dagster dev` runs it) evaluates the policies:
no check runs and no sensor. (The older last-update freshness checks and their sensor are
superseded by these policies, and Dagster warned so every time the definitions loaded.)
"""

from collections.abc import Mapping, Sequence
from datetime import timedelta

from dagster import AssetsDefinition, FreshnessPolicy, apply_freshness_policy, map_asset_specs

FRESHNESS_HOURS_ENV = "RETENTION_FRESHNESS_HOURS"
DEFAULT_FRESHNESS_HOURS = "2"


def load_freshness_policy(env: Mapping[str, str]) -> FreshnessPolicy:
    hours = float(env.get(FRESHNESS_HOURS_ENV) or DEFAULT_FRESHNESS_HOURS)
    return FreshnessPolicy.time_window(fail_window=timedelta(hours=hours))


def with_freshness(
    loads: Sequence[AssetsDefinition], env: Mapping[str, str]
) -> list[AssetsDefinition]:
    """The load assets, each of their tables with the load freshness policy."""
    policy = load_freshness_policy(env)
    return list(map_asset_specs(lambda spec: apply_freshness_policy(spec, policy), loads))
