"""`validation_30d`: the daily 30-day validation, one partition per day.

Partition D validates the episodes that started on day D − 30 (UTC): their save window
(30 × 24 h, validation.md §2) closes during day D, so from the first billing sync after
D ends their status is final. The figures come from `marts.fct_exit_episodes`, which dbt
validates as of the latest billing sync T; they are written to
`marts.validation_30d_daily` (delete the partition's rows, insert, one transaction), so a
rerun or a backfill replaces a day instead of adding to it.
"""

from datetime import UTC, date, datetime, time, timedelta

from dagster import (
    AssetExecutionContext,
    AssetKey,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)
from dagster_duckdb import DuckDBResource

from orchestration.marts_metadata import markdown_table, query
from orchestration.settings import (
    DEFAULT_VALIDATION_START,
    DUCKDB_POOL,
    VALIDATION_START_ENV,
    setting,
)

SAVE_WINDOW = timedelta(days=30)
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
INSERT = f"""
insert into {TABLE}
select
    $partition_date, $cohort_date, billing_system, validation_status, validated_outcome,
    count(*), sum(saved_mrr), sum(lost_mrr), max(validated_at)
from marts.fct_exit_episodes
where first_landed_at >= $cohort_start and first_landed_at < $cohort_end
group by all
"""


def validation_partitions() -> DailyPartitionsDefinition:
    """Daily UTC partitions from RETENTION_VALIDATION_START (default 2024-01-01)."""
    return DailyPartitionsDefinition(
        start_date=setting(VALIDATION_START_ENV, DEFAULT_VALIDATION_START), timezone="UTC"
    )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


@asset(
    partitions_def=validation_partitions(),
    deps=[AssetKey(["marts", "fct_exit_episodes"])],
    group_name="marts",
    kinds={"python", "duckdb"},
    pool=DUCKDB_POOL,
)
def validation_30d(context: AssetExecutionContext, duckdb: DuckDBResource) -> MaterializeResult:
    """Episodes that started 30 days before the partition's day, by validation status,
    as of the latest billing sync; rows in marts.validation_30d_daily."""
    day = date.fromisoformat(context.partition_key)
    cohort = day - SAVE_WINDOW
    params = {
        "partition_date": day,
        "cohort_date": cohort,
        "cohort_start": _midnight(cohort),
        "cohort_end": _midnight(cohort + timedelta(days=1)),
    }
    with duckdb.get_connection() as con:
        # Each statement drained (fetchall): DuckDB 2 holds a connection until it is.
        con.execute(CREATE).fetchall()
        con.execute("begin transaction").fetchall()
        con.execute(f"delete from {TABLE} where partition_date = ?", [day]).fetchall()
        con.execute(INSERT, params).fetchall()
        con.execute("commit").fetchall()
        header, rows = query(
            con,
            f"""
            select validation_status, validated_outcome, sum(episodes)::integer as episodes,
                   sum(saved_mrr) as saved_mrr, sum(lost_mrr) as lost_mrr
            from {TABLE} where partition_date = $day group by all order by 1, 2
            """,
            {"day": day},
        )
        synced = query(con, "select max(validated_at) from marts.fct_exit_episodes")[1][0][0]
    episodes = sum(r[2] for r in rows)
    # Final once T is past the end of day D: every window of the cohort has closed.
    final = synced is not None and synced >= _midnight(day + timedelta(days=1))
    context.log.info(
        "validation_30d %s: %s episodes from %s, final=%s", day, episodes, cohort, final
    )
    return MaterializeResult(
        metadata={
            "cohort_date": MetadataValue.text(cohort.isoformat()),
            "episodes": MetadataValue.int(episodes),
            "by_status": MetadataValue.md(markdown_table(header, rows)),
            "validated_at": MetadataValue.text(str(synced)),
            "final": MetadataValue.bool(final),
            "table": MetadataValue.text(TABLE),
        }
    )
