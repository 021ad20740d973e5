"""The fast path against real marts and the sandbox: the Python matcher gives dbt's
episodes and subscriptions for every session of the write-back scenario; a pause and a
cancel applied live through the official SDKs within seconds, from the serving copy of
the marts; then the scheduled run imports the journal and sends none of them again (the
sandbox's request log is the witness)."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from orchestration.serving import publish
from tests.integration.test_writebacks import SYSTEMS, executed_writes, ledger, write_log
from tests.writeback_pipeline import live_catalog
from writebacks.catalog import load_catalog
from writebacks.fastpath import FastPath, serving_marts
from writebacks.journal import Journal
from writebacks.matching import Episode, episode_of, match_subscription
from writebacks.runner import run_writebacks
from writebacks.systems import writer_for
from writebacks.systems.base import Action

pytestmark = pytest.mark.integration


def records(database: Path, query: str) -> list[dict]:
    """Rows as dicts (not read-only: dbt-duckdb may still hold the file in this process)."""
    with duckdb.connect(str(database)) as db:
        cursor = db.execute(query)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_the_python_matcher_gives_dbts_episode_and_subscription_for_every_session(
    writeback_warehouse,
):
    _, database = writeback_warehouse
    sessions = records(
        database,
        "select s.session_id, s.billing_system, s.billing_id, s.started_at, e.episode_id, "
        "e.first_landed_at, e.subscription_id from marts.fct_exit_sessions s "
        "join marts.fct_exit_episodes e using (episode_id)",
    )
    subscriptions: dict[str, list[dict]] = defaultdict(list)
    for sub in records(database, "select * from marts.dim_subscriptions"):
        subscriptions[sub["billing_system"]].append(sub)
    visits: dict[tuple, list] = defaultdict(list)
    for s in sessions:
        visits[(s["billing_system"], s["billing_id"])].append((s["started_at"], s["session_id"]))
    by_customer = 0
    for s in sessions:
        key = (s["billing_system"], s["billing_id"])
        episode = episode_of(s["session_id"], s["started_at"], visits[key])
        assert episode == Episode(s["episode_id"], s["first_landed_at"]), s
        found = match_subscription(subscriptions[key[0]], key[1], episode.started_at)
        assert (found and found["subscription_id"]) == s["subscription_id"], s
        by_customer += found is not None and found["subscription_id"] != key[1]
    assert len(sessions) > 300 and by_customer > 50


def _chosen(database: Path) -> list[dict]:
    """Per billing system, one accepted pause (else discount) of the marts on an active
    subscription, acted after the catalog's `since`."""
    return records(
        database,
        "select distinct on (s.billing_system) s.* from marts.fct_exit_sessions s "
        "join marts.fct_exit_episodes e using (episode_id) "
        "join marts.dim_subscriptions d on d.billing_system = s.billing_system "
        "and d.subscription_id = e.subscription_id "
        "where s.action = 'offer_accepted' and s.offer_type in ('pause', 'discount') "
        "and d.status = 'active' and s.action_at >= timestamptz '2026-03-01 00:00:00+00' "
        "order by s.billing_system, s.offer_type = 'pause' desc, s.action_at",
    )


def _untouched_stripe_subscription(database: Path) -> str:
    """An active Stripe subscription no exit session names."""
    [(subscription_id,)] = (
        duckdb.connect(str(database))
        .execute(
            "select min(subscription_id) from marts.dim_subscriptions d where billing_system = "
            "'stripe' and status = 'active' and not exists (select 1 from marts.fct_exit_sessions s "
            "where s.billing_id in (d.subscription_id, d.customer_id))"
        )
        .fetchall()
    )
    return subscription_id


def test_the_fast_path_applies_live_and_the_scheduled_run_sends_none_of_it_again(
    writeback_sandbox, tmp_path, capsys
):
    sandbox, database = writeback_sandbox
    catalog = load_catalog(live_catalog(tmp_path / "w.yml"))
    serving = tmp_path / "serving.duckdb"
    with duckdb.connect(str(database)) as con:
        publish(con, serving, "fastpath-test", "test")
    chosen = _chosen(database)
    assert {s["billing_system"] for s in chosen} == set(SYSTEMS)
    # A visit the marts have not seen: a cancel of a subscription nobody visited for.
    now = datetime.now(UTC)
    fresh = {
        "session_id": "fast-cancel-1",
        "billing_system": "stripe",
        "billing_id": _untouched_stripe_subscription(database),
        "started_at": now.isoformat(),
        "action": "canceled",
        "action_at": now.isoformat(),
        "offer_id": None,
        "offer_type": None,
    }
    state_db = tmp_path / "state.sqlite"
    fast = FastPath(state_db, catalog, serving_marts(serving), writer_for)
    started = time.monotonic()
    try:
        for session in [*chosen, fresh]:
            fast.submit(session, [])
        fast.drain(60)
    finally:
        fast.close()
    took = time.monotonic() - started
    journal = Journal(state_db)
    rows = journal.changed()
    assert {r["session_id"] for r in rows} == {s["session_id"] for s in [*chosen, fresh]}
    assert {r["status"] for r in rows} == {"applied"}, rows
    executed = executed_writes(sandbox)
    assert {r["action_id"]: 1 for r in rows} == dict(executed)
    for row in rows:  # billing says so
        writer = writer_for(row["billing_system"])
        action = Action(
            row["action_id"],
            row["billing_system"],
            row["subscription_id"],
            row["customer_id"],
            row["action_type"],
            row["parameters"],
        )
        assert writer.already_done(action, writer.read(row["subscription_id"])), row

    with duckdb.connect(str(database)) as db:
        summary = run_writebacks(db, catalog, writer_for, journal=journal)
    assert summary.imported == len(rows)
    after = ledger(database)
    assert all(after[r["action_id"]]["status"] == "applied" for r in rows)
    assert all(after[r["action_id"]]["billing_request_id"] == r["billing_request_id"] for r in rows)
    executed = executed_writes(sandbox)
    assert all(executed[r["action_id"]] == 1 for r in rows)  # the fast path's, only
    assert set(executed.values()) == {1} and len(executed) > len(rows)
    writes = len(write_log(sandbox))
    with duckdb.connect(str(database)) as db:
        again = run_writebacks(db, catalog, writer_for, journal=journal)
    assert again.imported == 0 and len(write_log(sandbox)) == writes
    with capsys.disabled():
        print(f"\nfast path: {len(rows)} actions applied live in {took:.2f} s (submit to drained)")
