"""What the marts assets show in Dagster: episodes by status, the retention summary per
billing system, and the repurchase cohorts as a table and a plot.

Read from the warehouse right after dbt has finished building (DuckDB's lock is free
then), and attached to the marts' materialisations, so each run's figures stay in the
asset's history beside the run that produced them. The SQL runs on DuckDB and Postgres
alike (`Warehouse.get_connection`): groups by position, never `group by all`, and every
ratio of integers over an explicit decimal (Postgres divides integers as integers).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from decimal import Decimal
from itertools import accumulate
from typing import Any, Protocol

from dagster import AssetKey, MetadataValue

MAX_OFFSETS = 12  # month offsets shown in the cohort table (the plot shows them all)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-style markdown table, numbers right-aligned."""

    def cell(value: Any) -> str:
        if value is None:
            return "–"
        if isinstance(value, float | Decimal):
            return f"{value:,.2f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    align = [
        "---:" if rows and isinstance(rows[0][i], int | float | Decimal) else "---"
        for i in range(len(header))
    ]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class Connection(Protocol):
    """What the figures need of a warehouse connection: DuckDB's, or
    `orchestration.resources.PostgresConnection`."""

    def execute(self, sql: str, params: Any = None) -> Any: ...


def query(con: Connection, sql: str, params: object = None) -> tuple[list[str], list[tuple]]:
    """Column names and every row. Fetched to the end: DuckDB 2 keeps a connection busy
    until a result is drained (`fetchone` leaves it so)."""
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return names, cursor.fetchall()


def episodes_metadata(con: Connection) -> dict[str, Any]:
    """Episodes by validation status and validated outcome, and the validation time."""
    header, rows = query(
        con,
        """
        select validation_status, validated_outcome, count(*) as episodes,
               sum(saved_mrr) as saved_mrr, sum(lost_mrr) as lost_mrr
        from marts.fct_exit_episodes group by 1, 2 order by 1, 2
        """,
    )
    validated_at = query(con, "select max(validated_at) from marts.fct_exit_episodes")[1][0][0]
    return {
        "episodes_by_status": MetadataValue.md(markdown_table(header, rows)),
        "episodes": MetadataValue.int(sum(r[2] for r in rows)),
        "validated_at": MetadataValue.text(str(validated_at)),
    }


SUMMARY_SQL = """
select billing_system,
       sum(episodes) as episodes, sum(saves) as saves, sum(valid_saves) as valid_saves,
       sum(invalid_saves) as invalid_saves, sum(cancels) as cancels,
       sum(unknowns) as unknowns, sum(pending) as pending,
       cast(sum(valid_saves) as decimal(38, 10))
           / nullif(sum(valid_saves) + sum(cancels), 0) as save_rate,
       sum(saved_mrr) as saved_mrr, sum(lost_mrr) as lost_mrr
from marts.rpt_retention_summary
group by grouping sets ((billing_system), ())
order by billing_system nulls last
"""


def summary_metadata(con: Connection) -> dict[str, Any]:
    """The summary per billing system and in total; the totals also as numbers, so the
    asset page plots save rate and saved/lost MRR across runs."""
    header, rows = query(con, SUMMARY_SQL)
    rows = [(r[0] or "all", *r[1:]) for r in rows]
    total = dict(zip(header, rows[-1], strict=True)) if rows else {}
    return {
        "summary": MetadataValue.md(markdown_table(header, rows)),
        "save_rate": MetadataValue.float(float(total.get("save_rate") or 0)),
        "saved_mrr": MetadataValue.float(float(total.get("saved_mrr") or 0)),
        "lost_mrr": MetadataValue.float(float(total.get("lost_mrr") or 0)),
    }


PARTIAL = "†"  # marks a cohort cell of the month still running at T (no markdown meaning)


def cohort_metadata(con: Connection) -> dict[str, Any]:
    """Repurchase rate per cohort month and month offset, and a plot of the cumulative
    repurchase revenue per episode by validated outcome: do saved customers keep paying?

    The cells of the month of T (is_complete_month false) hold a few days of payments:
    the table marks them, and the plot leaves them out, so a month still running is not
    read as customers who stopped paying."""
    _, rates = query(
        con,
        """
        select cohort_month, month_offset,
               cast(sum(repurchasing_episodes) as decimal(38, 10)) / sum(cohort_episodes)
                   as rate,
               sum(cohort_episodes) as episodes,
               bool_and(is_complete_month) as complete, max(days_observed) as days
        from marts.fct_repurchase_cohorts group by 1, 2 order by 1, 2
        """,
    )
    months = sorted({r[0] for r in rates})
    offsets = list(range(min(MAX_OFFSETS, 1 + max((r[1] for r in rates), default=-1))))
    by_cell = {(r[0], r[1]): f"{r[2]:.0%}" + ("" if r[4] else PARTIAL) for r in rates}
    size = {r[0]: r[3] for r in rates if r[1] == 0}
    header = ["cohort", "episodes", *(f"m{k}" for k in offsets)]
    table = [
        (f"{month:%Y-%m}", int(size.get(month, 0)), *(by_cell.get((month, k), "") for k in offsets))
        for month in months
    ]
    days = max((r[5] for r in rates if not r[4]), default=None)
    note = (
        f"\n\n{PARTIAL} the month of T, still running: {days} days observed so far, "
        "not comparable with a whole month."
        if days is not None
        else ""
    )
    # Revenue per episode in each month offset, over the cohorts whose month at that
    # offset has ended, summed up the offsets: a curve that never drops as younger
    # cohorts leave the average, and no partial month at its end.
    _, monthly = query(
        con,
        """
        select validated_outcome, month_offset,
               sum(repurchase_revenue) / sum(cohort_episodes) as revenue_per_episode
        from marts.fct_repurchase_cohorts where is_complete_month
        group by 1, 2 order by 1, 2
        """,
    )
    return {
        "repurchase_rate_by_cohort": MetadataValue.md(
            "Share of each cohort's episodes with a paid invoice in month m after the first "
            "landing.\n\n" + markdown_table(header, table) + note
        ),
        "cumulative_revenue_plot": MetadataValue.md(_plot_markdown(monthly)),
        "cohort_months": MetadataValue.int(len(months)),
    }


def _plot_markdown(monthly: list[tuple]) -> str:
    """The cumulative curves as a PNG line plot, embedded as a markdown image (Dagster
    renders data URIs)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to memory
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.6), dpi=100)
    for outcome in sorted({row[0] for row in monthly}):
        offsets = [row[1] for row in monthly if row[0] == outcome]
        revenue = list(accumulate(float(row[2]) for row in monthly if row[0] == outcome))
        axes.plot(offsets, revenue, marker="o", label=outcome)
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_xlabel("months since the first landing (whole months only)")
    axes.set_ylabel("cumulative revenue / episode (USD)")
    axes.set_title("Repurchase after the cancel page, by validated outcome")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"![cumulative repurchase revenue per episode](data:image/png;base64,{encoded})"


MARTS_METADATA: dict[AssetKey, Callable[[Connection], dict[str, Any]]] = {
    AssetKey(["marts", "fct_exit_episodes"]): episodes_metadata,
    AssetKey(["marts", "rpt_retention_summary"]): summary_metadata,
    AssetKey(["marts", "fct_repurchase_cohorts"]): cohort_metadata,
}
