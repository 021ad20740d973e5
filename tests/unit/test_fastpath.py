"""The fast path (writebacks.fastpath) over minimal marts and the fake billing writer of
the runner's tests: matching, modes and `since`, the journal, and the scheduled run that
imports it and sends nothing twice."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import pytest

from orchestration.writebacks_cli import fast_path_journal, open_fast_path
from tests.unit.test_writeback_runner import (
    AT,
    POLICY,
    FakeWriter,
    Transient,
    Warehouse,
    catalog_maker,
)
from writebacks.derive import action_id, derive_actions
from writebacks.fastpath import FastPath, serving_marts
from writebacks.journal import Journal
from writebacks.runner import run_writebacks


@pytest.fixture
def make_catalog(tmp_path):
    return catalog_maker(tmp_path)


@pytest.fixture
def marts() -> Warehouse:
    return Warehouse()


@pytest.fixture
def billing() -> FakeWriter:
    return FakeWriter()


@pytest.fixture
def fast(tmp_path, marts, billing):
    """`fast(catalog)`: a FastPath on the marts and the fake writer, its results kept."""
    built: list[FastPath] = []

    def make(catalog) -> FastPath:
        results: list[dict] = []
        path = FastPath(
            tmp_path / "state.sqlite",
            catalog,
            lambda: contextlib.closing(marts.db.cursor()),
            lambda system: billing,
            policy=POLICY,
            on_result=results.append,
        )
        path.results = results
        built.append(path)
        return path

    yield make
    for path in built:
        path.close()


def visit(session_id: str, action: str, billing_id: str = "sub_1", **fields: Any) -> dict:
    """A session as the collector hands it over: landed a minute before acting."""
    return {
        "session_id": session_id,
        "billing_system": "stripe",
        "billing_id": billing_id,
        "started_at": (AT - timedelta(minutes=1)).isoformat(),
        "action": action,
        "action_at": AT.isoformat(),
        "offer_id": None,
        "offer_type": None,
        **fields,
    }


def pause(session_id: str = "s1", **fields: Any) -> dict:
    return visit(session_id, "offer_accepted", offer_id="pause_2m", offer_type="pause", **fields)


def submit(path: FastPath, session: dict, earlier: list | None = None) -> list[dict]:
    path.submit(session, earlier or [])
    path.drain(10)
    return path.results


def journal(tmp_path) -> dict[str, dict]:
    return {r["action_id"]: r for r in Journal(tmp_path / "state.sqlite").changed()}


def test_an_accepted_offer_is_applied_once_with_the_scheduled_paths_action_id(
    fast, make_catalog, marts, billing, tmp_path
):
    marts.subscription("sub_1")
    path = fast(make_catalog())
    [result] = submit(path, pause())
    assert result["status"] == "applied" and result["attempts"] == 1
    assert result["billing_request_id"] == "req_1"
    assert result["parameters"]["resumes_at"] == (AT + timedelta(days=61)).isoformat()
    assert billing.sends() == ["sub_1"]
    # Submitted again (a collector replaying after a restart): nothing sent, nothing read.
    calls = len(billing.calls)
    submit(path, pause())
    assert len(billing.calls) == calls and billing.sends() == ["sub_1"]
    # The sync brings the session into the marts: the scheduled run imports the journal
    # and sees its own action done.
    wanted = marts.accepted("s1", "pause_2m")
    assert wanted == result["action_id"]
    summary = run_writebacks(
        marts.db, make_catalog(), lambda s: billing, policy=POLICY, journal=path.journal
    )
    assert summary.imported == 1 and billing.sends() == ["sub_1"]
    assert marts.ledger()[wanted]["status"] == "applied"
    assert marts.ledger()[wanted]["billing_request_id"] == "req_1"
    assert (
        run_writebacks(marts.db, make_catalog(), lambda s: billing, journal=path.journal).imported
        == 0
    )


def test_the_same_actions_as_derive_for_a_cancel_of_every_subscription_of_the_customer(
    fast, make_catalog, marts, billing
):
    marts.subscription("sub_1")
    marts.subscription("sub_2", activated_at=AT - timedelta(days=3), mrr="50")
    marts.subscription("sub_old", ended_at=AT - timedelta(days=30))
    marts.subscription("sub_other", customer="cus_2")
    catalog = make_catalog(stripe={"cancel": {"when": "period_end", "scope": "customer"}})
    results = submit(fast(catalog), visit("s1", "canceled", billing_id="cus_1"))
    assert sorted(billing.sends()) == ["sub_1", "sub_2"]
    marts.canceled("s1", subscription="sub_2", billing_id="cus_1")
    assert {(r["action_id"], r["subscription_id"]) for r in results} == {
        (a.action_id, a.subscription_id) for a in derive_actions(marts.db, catalog)
    }


def test_the_episode_start_comes_from_the_earlier_visits(fast, make_catalog, marts, billing):
    """In service ten days ago: only sub_1; now sub_2 too, with more MRR."""
    marts.subscription("sub_1", mrr="10")
    marts.subscription("sub_2", activated_at=AT - timedelta(days=2), mrr="50")
    path = fast(make_catalog())
    submit(path, pause("s1", billing_id="cus_1"))
    assert billing.sends() == ["sub_2"]
    submit(path, pause("s2", billing_id="cus_1"), earlier=[AT - timedelta(days=10)])
    assert billing.sends() == ["sub_2", "sub_1"]
    # ... or from a visit the marts already have: same episode, same subscription.
    marts.canceled("s0", subscription="sub_1", billing_id="cus_1", action_at=AT - timedelta(days=9))
    submit(path, pause("s3", billing_id="cus_1"))
    assert billing.sends()[-1] == "sub_1"
    assert path.results[-1]["episode_id"] == "s0"


def test_times_in_z_or_without_an_offset_are_utc(fast, make_catalog, marts, billing):
    marts.subscription("sub_1")
    session = pause(started_at="2026-06-01T11:59:00", action_at="2026-06-01T12:00:00Z")
    [result] = submit(fast(make_catalog()), session)
    assert result["status"] == "applied" and result["action_at"] == AT


def test_dry_run_records_the_request_and_sends_nothing(fast, make_catalog, marts, billing):
    marts.subscription("sub_1")
    [result] = submit(fast(make_catalog(mode="dry_run")), pause())
    assert billing.calls == []
    assert result["status"] == "dry_run" and result["request"]["method"] == "POST"


@pytest.mark.parametrize(
    "stripe",
    [{"mode": "off"}, {"since": (AT + timedelta(seconds=1)).isoformat()}],
    ids=["off", "before-since"],
)
def test_a_system_off_or_an_action_before_since_writes_nothing(
    fast, make_catalog, marts, billing, tmp_path, stripe
):
    marts.subscription("sub_1")
    assert submit(fast(make_catalog(stripe=stripe)), pause()) == []
    assert billing.calls == [] and journal(tmp_path) == {}


def test_unmatched_writes_nothing_and_the_scheduled_run_applies_it_after_the_sync(
    fast, make_catalog, marts, billing, tmp_path
):
    path = fast(make_catalog())
    assert submit(path, pause(billing_id="sub_new")) == []
    assert billing.calls == [] and journal(tmp_path) == {}
    marts.subscription("sub_new")
    marts.accepted("s1", "pause_2m", subscription="sub_new")
    summary = run_writebacks(
        marts.db, make_catalog(), lambda s: billing, policy=POLICY, journal=path.journal
    )
    assert summary.imported == 0 and billing.sends() == ["sub_new"]


def test_not_asking_for_anything_is_not_queued(fast, make_catalog, marts, billing, tmp_path):
    marts.subscription("sub_1")
    path = fast(make_catalog())
    assert submit(path, visit("s1", "deflected")) == [] and submit(path, visit("s2", "")) == []
    assert billing.calls == []


def test_an_interrupted_attempt_is_read_back_by_the_scheduled_run(
    fast, make_catalog, marts, billing, tmp_path
):
    """Retries run out after the write got through: pending in the journal with
    attempts; the scheduled run, before the sync, reads billing and confirms it."""
    marts.subscription("sub_1")
    billing.script("sub_1", errors=[Transient("dropped")] * 9)
    [result] = submit(fast(make_catalog()), pause())
    assert result["status"] == "pending" and result["attempts"] == 3
    billing.subscriptions["sub_1"].holds.add("pause")  # one of them landed
    summary = run_writebacks(
        marts.db,
        make_catalog(),
        lambda s: billing,
        policy=POLICY,
        journal=Journal(tmp_path / "state.sqlite"),
    )
    assert summary.imported == 1
    row = marts.ledger()[result["action_id"]]
    assert row["status"] == "applied" and row["reason"].startswith("confirmed by reading back")
    assert billing.sends().count("sub_1") == 3  # the fast path's; nothing more


def test_a_pending_action_ahead_of_the_sync_is_sent_by_the_scheduled_run_not_superseded(
    fast, make_catalog, marts, billing, tmp_path
):
    marts.subscription("sub_1")
    billing.script("sub_1", errors=[Transient("503")] * 3)
    [result] = submit(fast(make_catalog()), pause())
    assert result["status"] == "pending"
    run_writebacks(
        marts.db,
        make_catalog(),
        lambda s: billing,
        policy=POLICY,
        journal=Journal(tmp_path / "state.sqlite"),
    )
    assert marts.ledger()[result["action_id"]]["status"] == "applied"
    assert result["action_id"] == action_id("s1", "offer_accepted", "sub_1")


def test_a_failed_callback_does_not_undo_the_action(fast, make_catalog, marts, billing):
    marts.subscription("sub_1")
    path = fast(make_catalog())
    path.on_result = lambda row: 1 / 0
    path.submit(pause(), [])
    path.drain(10)
    assert path.journal.row(action_id("s1", "offer_accepted", "sub_1"))["status"] == "applied"


# --------------------------------------------------------------------------- wiring


def test_workers_build_their_writers_before_the_first_click(tmp_path, make_catalog, marts):
    """Ready once every lane has tried; a lane whose client could not be built (no key
    yet) builds it on the next click."""
    marts.subscription("sub_1")
    built: list[str] = []
    broken = True

    def writers(system: str) -> FakeWriter:
        built.append(system)
        if broken:
            raise RuntimeError(f"no {system} key")
        return FakeWriter()

    path = FastPath(
        tmp_path / "state.sqlite",
        make_catalog(),
        lambda: contextlib.closing(marts.db.cursor()),
        writers,
        policy=POLICY,
        lanes=2,
    )
    try:
        assert path.wait_ready(10)
        assert sorted(built) == sorted(["chargebee", "recurly", "stripe"] * 2)
        broken = False
        path.submit(pause(), [])
        path.drain(10)
        assert path.journal.row(action_id("s1", "offer_accepted", "sub_1"))["status"] == "applied"
    finally:
        path.close()


def test_the_scheduled_run_opens_no_state_database_where_no_collector_ran(tmp_path):
    missing = tmp_path / ".collector" / "collector.sqlite"
    with fast_path_journal(missing) as journal:
        assert journal is None
    assert not missing.parent.exists()
    Journal(tmp_path / "state.sqlite").close()
    with fast_path_journal(tmp_path / "state.sqlite") as journal:
        assert journal is not None and journal.changed() == []


@pytest.mark.parametrize("mode", ["off", "dry_run"])
def test_the_collectors_fast_path_reads_the_serving_copy(tmp_path, monkeypatch, mode):
    """`retention collector serve`'s factory: none when every system is off, else one on
    the serving copy (RETENTION_SERVING_PATH) and the collector's state database."""
    from collector.settings import CollectorConfig, CollectorSettings

    catalog = catalog_maker(tmp_path)(mode=mode)
    marts = Warehouse()
    marts.subscription("sub_1")
    serving = tmp_path / "serving.duckdb"
    marts.db.execute(f"attach '{serving}' as serving_copy")
    marts.db.execute("copy from database memory to serving_copy")
    marts.db.execute("detach serving_copy")
    monkeypatch.setenv("RETENTION_WRITEBACKS", str(catalog.path))
    monkeypatch.setenv("RETENTION_WAREHOUSE", "duckdb")
    monkeypatch.setenv("RETENTION_SERVING_PATH", str(serving))
    settings = CollectorSettings(
        config=CollectorConfig(apps={"a": {"secret_env": "A_SECRET"}}),
        state_db=tmp_path / "state.sqlite",
        drop_folder=tmp_path / "drop",
        secrets={},
    )
    with open_fast_path(settings) as fast:
        if mode == "off":
            assert fast is None
            return
        [result] = fast.apply(pause(), [], writer=FakeWriter)
    assert result["status"] == "dry_run" and result["subscription_id"] == "sub_1"
    assert Journal(settings.state_db).row(result["action_id"])["status"] == "dry_run"


def test_no_serving_copy_yet_is_said_and_nothing_is_written(tmp_path, make_catalog, caplog):
    path = FastPath(
        tmp_path / "state.sqlite",
        make_catalog(),
        serving_marts(tmp_path / "serving.duckdb"),
        lambda system: FakeWriter(),
        policy=POLICY,
    )
    try:
        path.submit(pause(), [])
        path.drain(10)
    finally:
        path.close()
    assert "no serving copy of the marts" in caplog.text
    assert journal(tmp_path) == {}


def test_each_click_reads_the_newest_published_build(tmp_path, make_catalog, marts, billing):
    """A subscription synced after the collector started is matched as soon as the sync
    publishes its serving build, though the workers keep their connections between clicks."""
    from orchestration.serving import publish

    link = tmp_path / "serving.duckdb"
    publish(marts.db, link, "sync-1", "test")
    path = FastPath(
        tmp_path / "state.sqlite",
        make_catalog(),
        serving_marts(link),
        lambda system: billing,
        policy=POLICY,
        lanes=1,
    )
    path.results = []
    path.on_result = path.results.append
    try:
        assert submit(path, pause("s1", billing_id="sub_new")) == []
        marts.subscription("sub_new")
        publish(marts.db, link, "sync-2", "test")
        [result] = submit(path, pause("s2", billing_id="sub_new"))
    finally:
        path.close()
    assert result["status"] == "applied" and billing.sends() == ["sub_new"]
