"""`validation_30d`: the daily 30-day validation, one partition per day.

Partition D validates the episodes that started on day D − 30 (UTC): their save window
(30 × 24 h, validation.md §2) closes during day D, so from the first billing sync after
D ends their status is final. The figures come from `marts.fct_exit_episodes`, which dbt
validates as of the latest billing sync T; they are written to
`marts.validation_30d_daily` (delete the partitions' rows, insert, one transaction), so a
rerun or a backfill replaces days instead of adding to them. The warehouse is the
`warehouse` resource's, DuckDB or Postgres: the same SQL runs on both.

Partitions start at RETENTION_VALIDATION_START (default 2024-01-01), so a new deployment
shows every day since then as missing. A backfill of any range is one run and one SQL
statement (`BackfillPolicy.single_run`): filling all of them takes seconds, from the UI
or the command line (BACKFILL_HINT), and `retention demo` fills every partition.
"""

import warnings
from datetime import UTC, date, datetime, time, timedelta

from dagster import (
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    BetaWarning,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from orchestration.marts_metadata import markdown_table, query
from orchestration.resources import Warehouse
from orchestration.settings import (
    DEFAULT_VALIDATION_START,
    DUCKDB_POOL,
    VALIDATION_START_ENV,
    save_window,
    setting,
)
from orchestration.webhooks import load_webhooks, send_validation_events, settled_episodes

SAVE_WINDOW = save_window()
TABLE = "marts.validation_30d_daily"
CREATE = f"""
create table if not exists {TABLE} (
    partition_date date not null,
    cohort_date date not null,
    billing_system varchar not null,
    validation_status varchar not null,
    validated_outcome varchar not null,
    episodes integer not null,
    saved_mrr decimal(38, 10) not null,
    lost_mrr decimal(38, 10) not null,
    validated_at timestamp with time zone not null
)
"""
# Every day of the run's range at once: an episode's cohort day is its UTC start day, and
# its partition the day 30 days later. Parameters: the cohorts' first and last instants.
INSERT = f"""
insert into {TABLE}
select
    cohort_date + {SAVE_WINDOW.days}, cohort_date, billing_system, validation_status,
    validated_outcome, count(*), sum(saved_mrr), sum(lost_mrr), max(validated_at)
from (
    select *, cast(timezone('UTC', first_landed_at) as date) as cohort_date
    from marts.fct_exit_episodes
    where first_landed_at >= ? and first_landed_at < ?
) as cohorts
group by 2, 3, 4, 5
"""
# The run's partition days, first and last.
IN_DAYS = "partition_date between ? and ?"
BACKFILL_HINT = f"""\
A missing partition is a day not validated yet (partitions start at
{VALIDATION_START_ENV}, default {DEFAULT_VALIDATION_START}). To fill them, in the UI:
Materialize, then "Missing" partitions, then Launch backfill; or on the command line:

    dagster asset materialize -m orchestration.definitions --select validation_30d \\
        --partition-range <first day>...<yesterday>

Either is one run, whatever the number of days (a single-run backfill)."""


def validation_partitions() -> DailyPartitionsDefinition:
    """Daily UTC partitions from RETENTION_VALIDATION_START (default 2024-01-01)."""
    return DailyPartitionsDefinition(
        start_date=setting(VALIDATION_START_ENV, DEFAULT_VALIDATION_START), timezone="UTC"
    )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _span(first: date, last: date) -> str:
    return first.isoformat() if first == last else f"{first}...{last}"


def _validate(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    """The partitions of the run's range (one day, or a whole backfill), in one statement."""
    keys = context.partition_key_range
    first, last = date.fromisoformat(keys.start), date.fromisoformat(keys.end)
    days = [first, last]
    cohorts = [
        _midnight(first - SAVE_WINDOW),
        _midnight(last - SAVE_WINDOW + timedelta(days=1)),
    ]
    webhooks = load_webhooks()  # a bad webhooks.yml fails the run before anything is written
    with warehouse.get_connection() as con:
        # Each statement drained (fetchall): DuckDB 2 holds a connection until it is.
        con.execute(CREATE).fetchall()
        con.execute("begin transaction").fetchall()
        con.execute(f"delete from {TABLE} where {IN_DAYS}", days).fetchall()
        con.execute(INSERT, cohorts).fetchall()
        con.execute("commit").fetchall()
        header, rows = query(
            con,
            f"""
            select validation_status, validated_outcome, cast(sum(episodes) as integer)
                       as episodes,
                   sum(saved_mrr) as saved_mrr, sum(lost_mrr) as lost_mrr
            from {TABLE} where {IN_DAYS} group by 1, 2 order by 1, 2
            """,
            days,
        )
        synced = query(con, "select max(validated_at) from marts.fct_exit_episodes")[1][0][0]
        episodes_to_send = settled_episodes(con, webhooks, cohorts)
    events = send_validation_events(context, webhooks, episodes_to_send)
    episodes = sum(r[2] for r in rows)
    # Final once T is past the end of the last day: every window of its cohort has closed.
    final = synced is not None and synced >= _midnight(last + timedelta(days=1))
    context.log.info(
        "validation_30d %s: %s episodes, final=%s", _span(first, last), episodes, final
    )
    return MaterializeResult(
        metadata={
            "cohort_date": MetadataValue.text(_span(first - SAVE_WINDOW, last - SAVE_WINDOW)),
            "episodes": MetadataValue.int(episodes),
            "by_status": MetadataValue.md(markdown_table(header, rows)),
            "validated_at": MetadataValue.text(str(synced)),
            "final": MetadataValue.bool(final),
            "table": MetadataValue.text(TABLE),
            **events,
        }
    )


# `backfill_policy` is a beta parameter of @asset, and Dagster warns about it each time the
# definitions load. It is used on purpose: it makes a backfill of any length one run, and
# `dagster asset materialize --partition-range` requires it. dagster is pinned exactly
# (requirements.lock), so a change to it comes with an upgrade the tests see. This one
# warning is silenced here, where the choice is made, and nowhere else.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Parameter `backfill_policy`", BetaWarning)
    validation_30d = asset(
        name="validation_30d",
        partitions_def=validation_partitions(),
        backfill_policy=BackfillPolicy.single_run(),
        deps=[AssetKey(["marts", "fct_exit_episodes"])],
        group_name="marts",
        kinds={"python", "duckdb"},
        pool=DUCKDB_POOL,
        description="Episodes that started 30 days before the partition's day, by validation "
        "status, as of the latest billing sync; rows in marts.validation_30d_daily.\n\n"
        + BACKFILL_HINT,
    )(_validate)
