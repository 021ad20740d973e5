"""The cohort figures Dagster shows on marts.fct_repurchase_cohorts, from a hand-made mart:
the month still running at T is marked in the table and left out of the plot, so it is not
drawn as customers who stopped paying (#11)."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from orchestration import marts_metadata

pytestmark = pytest.mark.integration

# One cohort of 10 episodes, T on 2026-03-05: January and February complete, March partial.
CELLS = [
    # cohort_month, month_offset, cohort_episodes, repurchasing, revenue, complete, days
    (date(2026, 1, 1), 0, 10, 5, 100, True, 31),
    (date(2026, 1, 1), 1, 10, 6, 120, True, 28),
    (date(2026, 1, 1), 2, 10, 1, 10, False, 4),
    (date(2026, 3, 1), 0, 4, 1, 9, False, 4),
]


@pytest.fixture
def con():
    with duckdb.connect() as con:
        con.execute("create schema marts").fetchall()
        con.execute(
            """
            create table marts.fct_repurchase_cohorts (
                cohort_month date, month_offset integer, cohort_episodes integer,
                repurchasing_episodes integer, repurchase_revenue decimal(38, 10),
                is_complete_month boolean, days_observed integer,
                validated_outcome varchar default 'saved')
            """
        ).fetchall()
        con.executemany(
            "insert into marts.fct_repurchase_cohorts (cohort_month, month_offset, "
            "cohort_episodes, repurchasing_episodes, repurchase_revenue, is_complete_month, "
            "days_observed) values (?, ?, ?, ?, ?, ?, ?)",
            CELLS,
        )
        yield con


def test_the_month_of_t_is_marked_and_left_out_of_the_plot(con, monkeypatch):
    plotted = []
    monkeypatch.setattr(marts_metadata, "_plot_markdown", lambda rows: plotted.extend(rows) or "")
    table = marts_metadata.cohort_metadata(con)["repurchase_rate_by_cohort"].value
    mark = marts_metadata.PARTIAL
    assert f"| 2026-01 | 10 | 50% | 60% | 10%{mark} |" in table
    assert f"| 2026-03 | 4 | 25%{mark} |  |  |" in table
    assert f"{mark} the month of T, still running: 4 days observed so far" in table
    assert [(row[1], float(row[2])) for row in plotted] == [(0, 10.0), (1, 12.0)]


def test_no_note_when_every_month_is_complete(con, monkeypatch):
    con.execute("delete from marts.fct_repurchase_cohorts where not is_complete_month").fetchall()
    monkeypatch.setattr(marts_metadata, "_plot_markdown", lambda rows: "")
    table = marts_metadata.cohort_metadata(con)["repurchase_rate_by_cohort"].value
    assert marts_metadata.PARTIAL not in table
