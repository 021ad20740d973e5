"""The fast path's journal imported into the ledger, on DuckDB and on Postgres: new rows
come in as the journal has them, a pending ledger row takes the journal's newer state,
a finished one is never overwritten, and each change is imported once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import duckdb
import psycopg2
import pytest

from orchestration.resources import PostgresConnection
from writebacks.journal import Journal
from writebacks.ledger import Ledger, LedgerRow

pytestmark = pytest.mark.integration

AT = datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.fixture(params=["duckdb", "postgres"])
def ledger(request) -> Iterator[Ledger]:
    if request.param == "duckdb":
        yield Ledger(duckdb.connect())
        return
    from tests.conftest import scratch_database

    with scratch_database() as url:
        connection = PostgresConnection(psycopg2.connect(url))
        yield Ledger(connection)
        connection.close()


def row(name: str, status: str = "pending") -> LedgerRow:
    return LedgerRow(
        action_id=f"wb_{name}",
        episode_id=f"ep_{name}",
        session_id=f"s_{name}",
        billing_system="stripe",
        subscription_id=f"sub_{name}",
        customer_id="cus_1",
        action_type="pause",
        offer_id="pause_1m",
        action_at=AT,
        mode="live",
        parameters={"resumes_at": f"2026-07-01T12:00:00+00:00#{name}"},
        status=status,
    )


def statuses(ledger: Ledger) -> dict[str, tuple]:
    return {r.action_id: (r.status, r.attempts, r.parameters) for r in ledger.rows()}


def test_journal_rows_merge_into_the_ledger(ledger, tmp_path):
    journal = Journal(tmp_path / "state.sqlite")
    # In the ledger before: one pending (the scheduled run derived it first), one applied.
    ledger.insert([row("both"), row("done", status="pending")])
    ledger.finish("wb_done", "applied", billing_request_id="req_scheduled")
    for name in ("new", "both", "done", "interrupted"):
        journal.record(row(name))
    journal.start_attempt("wb_new", {"method": "POST"})
    journal.finish("wb_new", "applied", billing_request_id="req_fast")
    journal.start_attempt("wb_both", {"method": "POST"})
    journal.finish("wb_both", "applied", billing_request_id="req_fast_2")
    journal.finish("wb_done", "skipped", reason="already true in billing: paused")
    journal.start_attempt("wb_interrupted", {"method": "POST"})

    assert ledger.import_rows(journal.changed()) == 4
    journal.mark_imported(journal.changed())
    got = statuses(ledger)
    assert got["wb_new"][:2] == ("applied", 1)
    assert got["wb_both"][:2] == ("applied", 1)
    assert got["wb_done"][:2] == ("applied", 0)  # finished in the ledger: left alone
    assert got["wb_interrupted"][:2] == ("pending", 1)  # read back before any resend
    assert got["wb_new"][2] == row("new").parameters
    by_id = {r.action_id: r for r in ledger.rows()}
    assert by_id["wb_interrupted"].request == {"method": "POST"}
    assert journal.changed() == []

    # The interrupted one finishes later: imported again, once.
    journal.finish("wb_interrupted", "applied", billing_request_id="req_late")
    assert [r["action_id"] for r in journal.changed()] == ["wb_interrupted"]
    ledger.import_rows(journal.changed())
    journal.mark_imported(journal.changed())
    assert statuses(ledger)["wb_interrupted"][:2] == ("applied", 1)
    assert journal.changed() == []


def test_finished_imported_rows_are_pruned_and_nothing_else(ledger, tmp_path):
    journal = Journal(tmp_path / "state.sqlite")
    for name in ("old_done", "old_pending", "old_unimported", "recent_done"):
        journal.record(row(name))
    for name in ("old_done", "old_unimported", "recent_done"):
        journal.finish(f"wb_{name}", "applied")
    imported = [r for r in journal.changed() if r["action_id"] != "wb_old_unimported"]
    ledger.import_rows(imported)
    journal.mark_imported(imported)
    # Three of them last changed 40 days ago.
    journal.db.execute(
        "update fastpath_journal set updated_at = ?, imported_at = case when imported_at "
        "is null then null else ? end where action_id like 'wb_old%'",
        ["2026-10-01T00:00:00+00:00"] * 2,
    )
    assert journal.prune(datetime(2026, 11, 1, tzinfo=UTC)) == 1
    assert journal.session_ids() == {"s_old_pending", "s_old_unimported", "s_recent_done"}
    assert statuses(ledger)["wb_old_done"][0] == "applied"  # the ledger keeps it
