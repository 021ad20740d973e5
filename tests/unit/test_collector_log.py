"""The session log's group commit, the segment publisher's crash story and the dispatcher's
at-least-once hand-over, each on a real SQLite state file."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime

import pytest

from collector.dispatch import dispatch_once
from collector.log import (
    Landing,
    SessionLog,
    Update,
    apply,
    backlog,
    connect,
    create_tables,
    transaction,
)
from collector.segments import publish_once

AT = "2026-04-02T09:00:00+00:00"


def landing(session_id: str, started_at: str, billing_id: str = "cus_1") -> Landing:
    return Landing(
        {
            "session_id": session_id,
            "app_id": "shop",
            "billing_system": "stripe",
            "billing_id": billing_id,
            "started_at": started_at,
        }
    )


def cancel(session_id: str, billing_id: str = "cus_1") -> Update:
    identity = {"app_id": "shop", "billing_system": "stripe", "billing_id": billing_id}
    return Update(session_id, identity, {"action": "canceled"})


@pytest.fixture
def con(tmp_path):
    path = tmp_path / "collector.sqlite"
    create_tables(path)
    with closing(connect(path)) as connection:
        yield connection


def test_the_state_file_is_wal_and_fully_synchronous(con):
    assert con.execute("pragma journal_mode").fetchone() == ("wal",)
    assert con.execute("pragma synchronous").fetchone() == (2,)  # FULL


def test_one_group_applies_a_landing_and_its_update_in_order(con):
    with transaction(con):
        results = apply(con, [landing("s1", "2026-04-02T08:00:00Z"), cancel("s1")], AT)
    assert [r.status for r in results] == [201, 200]
    assert results[1].row["action"] == "canceled" and results[1].row["action_at"] == AT


def test_the_writer_thread_answers_every_request(tmp_path):
    session_log = SessionLog(tmp_path / "collector.sqlite", max_batch=8)
    session_log.start()
    futures = [session_log.submit(landing(f"s{i}", "2026-04-02T08:00:00Z")) for i in range(50)] + [
        session_log.submit(landing("s0", "2026-04-02T08:00:00Z"))
    ]
    statuses = [future.result(timeout=30).status for future in futures]
    session_log.stop()
    assert statuses == [201] * 50 + [200]


def test_a_segment_is_republished_with_the_same_name_and_bytes(con, tmp_path):
    with transaction(con):
        apply(
            con, [landing("s1", "2026-04-02T08:00:00Z"), landing("s2", "2026-04-02T08:01:00Z")], AT
        )
    folder = tmp_path / "drop"
    assert publish_once(con, folder) == 2
    [segment] = list(folder.iterdir())
    written = segment.read_bytes()
    # A crash after the rename, before the segment was marked published:
    con.execute("update collector_segments set published_at = null")
    segment.unlink()
    with transaction(con):
        apply(con, [cancel("s1")], AT)
    assert publish_once(con, folder) == 3  # the old range again, then the new row
    assert segment.read_bytes() == written
    assert len(list(folder.iterdir())) == 2
    assert not list(folder.glob("*.tmp"))


class Recorder:
    def __init__(self, fail_first: int = 0) -> None:
        self.sessions: list[tuple[str, object]] = []
        self.fail_first = fail_first

    def emit_sessions(self, rows, *, db):
        assert db.in_transaction  # enqueued with the dispatched marks, in one commit
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("state file locked")
        self.sessions += [(row["session_id"], row["action"]) for row in rows]

    def wake(self):
        self.woken = True

    def submit(self, session, earlier):
        self.sessions.append((session["session_id"], earlier))


def test_dispatch_hands_over_at_least_once_with_the_earlier_sessions(con):
    with transaction(con):
        apply(
            con,
            [
                landing("s1", "2026-03-01T08:00:00Z"),
                landing("other", "2026-03-02T08:00:00Z", billing_id="cus_2"),
                landing("s2", "2026-04-02T08:00:00Z"),
                cancel("s2"),
            ],
            AT,
        )
    outbox, fast_path = Recorder(fail_first=1), Recorder()
    with pytest.raises(RuntimeError):
        dispatch_once(con, outbox, fast_path)
    assert dispatch_once(con, outbox, fast_path) == 4
    assert dispatch_once(con, outbox, fast_path) == 0
    assert outbox.sessions == [("s1", None), ("other", None), ("s2", None), ("s2", "canceled")]
    # Submitted again after the failed round: the fast path applies a session once.
    assert fast_path.sessions == [("s2", [datetime(2026, 3, 1, 8, tzinfo=UTC)])] * 2
    assert outbox.woken


def test_a_failed_commit_answers_with_the_error(tmp_path):
    path = tmp_path / "collector.sqlite"
    session_log = SessionLog(path)
    with sqlite3.connect(path) as con:
        con.execute("drop table collector_sessions")
    session_log.start()
    future = session_log.submit(landing("s1", "2026-04-02T08:00:00Z"))
    with pytest.raises(sqlite3.OperationalError):
        future.result(timeout=30)
    session_log.stop()


def test_dispatch_enqueues_the_outboxs_events_with_its_marks_once(con, tmp_path):
    """With the real webhook outbox on the same state file: each change's event is
    enqueued once, in the transaction that marks it dispatched."""
    from webhooks.config import Endpoint, WebhooksConfig
    from webhooks.outbox import OUTBOX, Outbox

    state_db = tmp_path / "collector.sqlite"
    endpoint = Endpoint("crm", "http://127.0.0.1:9/hook", ("exit_session.*",), b"hook-secret")
    outbox = Outbox(state_db, WebhooksConfig(None, {"crm": endpoint}))
    with transaction(con):
        apply(con, [landing("s1", "2026-04-02T08:00:00Z"), cancel("s1")], AT)
    assert dispatch_once(con, outbox, None) == 2
    # Handed over again (the marks lost, say a restored state file): enqueued once.
    con.execute("update collector_sessions set dispatched_at = null")
    assert dispatch_once(con, outbox, None) == 2
    events = con.execute(f"select event_type from {OUTBOX} order by event_type").fetchall()
    assert events == [("exit_session.canceled",), ("exit_session.started",)]
    outbox.close()


def test_the_backlog_counts_what_is_not_yet_published_or_dispatched(con, tmp_path):
    with transaction(con):
        apply(con, [landing("s1", "2026-04-02T08:00:00Z"), cancel("s1")], AT)
    assert backlog(con) == {"undispatched": 2, "unpublished": 2}
    publish_once(con, tmp_path / "drop")
    dispatch_once(con, None, None)
    assert backlog(con) == {"undispatched": 0, "unpublished": 0}
