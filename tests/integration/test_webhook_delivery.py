"""Webhook delivery over real HTTP to a local receiver (tests/webhook_receiver.py) that
fails 30% of requests or answers after the sender gave up: every event arrives at least
once with a valid signature, the receiver dedupes repeats by event id, two processes
delivering one outbox never send an event twice while it is leased, and a delivering
process killed with SIGKILL loses nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.webhook_receiver import Receiver, receiving
from webhooks.config import WebhooksConfig, load_config
from webhooks.events import event_id
from webhooks.outbox import Deliverer, Outbox

pytestmark = pytest.mark.integration
SECRET = "whsec_integration"
ACTIONS = (None, "canceled", "offer_accepted", "deflected")


def config(tmp_path: Path, url: str, **delivery: float) -> WebhooksConfig:
    document = {
        "endpoints": {"crm": {"url": url, "secret_env": "CRM_SECRET", "events": ["*"]}},
        "delivery": {
            "initial_backoff_seconds": 0.01,
            "max_backoff_seconds": 0.2,
            "max_attempts": 100,
            **delivery,
        },
    }
    path = tmp_path / "webhooks.yml"
    path.write_text(yaml.safe_dump(document))
    return load_config(path, env={"CRM_SECRET": SECRET})


def emit_sessions(outbox: Outbox, count: int, threads: int = 3) -> set[str]:
    """`count` session rows emitted from several threads, as the collector's dispatcher
    and a Dagster step would; their event ids."""
    rows = [
        {
            "session_id": f"s{i}",
            "billing_system": "stripe",
            "billing_id": f"sub_{i}",
            "action": ACTIONS[i % 4],
        }
        for i in range(count)
    ]

    def emit(part: list[dict]) -> None:
        for row in part:
            outbox.emit_session(row)

    workers = [threading.Thread(target=emit, args=(rows[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    types = {
        None: "started",
        "canceled": "canceled",
        "offer_accepted": "offer_accepted",
        "deflected": "deflected",
    }
    return {event_id(f"exit_session.{types[r['action']]}", r["session_id"]) for r in rows}


def wait_until_delivered(outbox: Outbox, timeout: float = 120) -> None:
    """Until no row is pending (a bound so a bug fails the test instead of hanging it)."""
    deadline = time.monotonic() + timeout
    while any(state == "pending" for _, state in outbox.counts()):
        assert time.monotonic() < deadline, f"still pending: {outbox.counts()}"
        time.sleep(0.05)


def test_every_event_arrives_signed_through_a_receiver_failing_30_percent(tmp_path: Path) -> None:
    with receiving(Receiver(SECRET.encode(), fail_rate=0.3)) as receiver:
        outbox = Outbox(tmp_path / "state.sqlite", config(tmp_path, receiver.url))
        deliverer = Deliverer(outbox, poll_seconds=0.05).start()
        emitted = emit_sessions(outbox, 300)
        wait_until_delivered(outbox)
        deliverer.stop()
        outbox.close()
    assert receiver.unique_ids() == emitted  # every event, at least once
    assert receiver.refused == []  # every request's signature and timestamp checked out
    assert receiver.failed > 0
    assert outbox.dead_letters() == []
    totals = deliverer.totals
    assert totals.attempts == len(receiver.accepted) + receiver.failed
    assert totals.delivered == len(receiver.accepted)


def test_an_answer_after_the_timeout_is_sent_again_and_the_receiver_dedupes(tmp_path: Path) -> None:
    slow = Receiver(SECRET.encode(), slow_rate=0.3, slow_seconds=1.0)
    with receiving(slow) as receiver:
        outbox = Outbox(
            tmp_path / "state.sqlite", config(tmp_path, receiver.url, timeout_seconds=0.3)
        )
        emitted = emit_sessions(outbox, 40)
        while any(state == "pending" for _, state in outbox.counts()):
            outbox.deliver_pending()
            time.sleep(0.05)
        outbox.close()
    ids = [e["id"] for e in receiver.accepted]
    assert set(ids) == emitted
    assert len(ids) > len(emitted)  # some arrived twice: at least once, not exactly once
    first: dict[str, dict] = {}
    for event in receiver.accepted:  # a repeat is the same event: dedupe by id is safe
        kept = first.setdefault(event["id"], event)
        assert {k: v for k, v in event.items() if k != "received_at"} == {
            k: v for k, v in kept.items() if k != "received_at"
        }


def test_two_processes_delivering_one_outbox_send_each_event_once(tmp_path: Path) -> None:
    with receiving(Receiver(SECRET.encode())) as receiver:
        cfg = config(tmp_path, receiver.url)
        collector = Outbox(tmp_path / "state.sqlite", cfg)  # e.g. the collector's thread
        dagster = Outbox(tmp_path / "state.sqlite", cfg)  # e.g. a Dagster step
        deliverers = [Deliverer(o, poll_seconds=0.01).start() for o in (collector, dagster)]
        emitted = emit_sessions(collector, 200)
        wait_until_delivered(collector)
        for deliverer in deliverers:
            deliverer.stop()
    ids = [e["id"] for e in receiver.accepted]
    assert sorted(ids) == sorted(emitted)  # each once: a leased row is nobody else's
    assert all(d.totals.delivered > 0 for d in deliverers)  # both took part


def test_the_commands_show_and_redeliver_dead_letters(tmp_path: Path, monkeypatch) -> None:
    from click.testing import CliRunner

    from orchestration.webhooks_cli import webhooks

    with receiving(Receiver(SECRET.encode(), fail_rate=1.0)) as receiver:
        cfg = config(tmp_path, receiver.url, max_attempts=1)
        outbox = Outbox(tmp_path / "state.sqlite", cfg)
        emitted = emit_sessions(outbox, 3)
        monkeypatch.setenv("CRM_SECRET", SECRET)
        options = ["--config", str(cfg.path), "--state-db", str(outbox.state_db)]
        runner = CliRunner()
        assert "dead 3" in runner.invoke(webhooks, ["deliver", *options]).output
        listing = runner.invoke(webhooks, ["dead-letters", *options]).output
        assert "3 dead letter(s)" in listing and "HTTP 500" in listing
        receiver.fail_rate = 0.0
        one = sorted(emitted)[0]
        assert (
            "1 event(s) back in the outbox; delivered 1"
            in runner.invoke(webhooks, ["redeliver", *options, one]).output
        )
        assert (
            "2 event(s) back in the outbox; delivered 2"
            in runner.invoke(webhooks, ["redeliver", *options]).output
        )
    assert receiver.unique_ids() == emitted


DELIVERER_PROCESS = """
import sys, time
from webhooks.config import load_config
from webhooks.outbox import Deliverer, Outbox
Deliverer(Outbox(sys.argv[1], load_config()), poll_seconds=0.05).start()
time.sleep(600)
"""


def test_a_deliverer_killed_mid_delivery_loses_nothing(tmp_path: Path, monkeypatch) -> None:
    """kill -9 of a delivering process mid-way: what it had claimed waits out its lease,
    then another process delivers it with the rest; every event arrives."""
    import os
    import signal
    import subprocess
    import sys

    from orchestration.settings import PROJECT_DIR

    slow = Receiver(SECRET.encode(), slow_rate=0.5, slow_seconds=0.15)
    with receiving(slow) as receiver:
        cfg = config(tmp_path, receiver.url, timeout_seconds=0.2, concurrency=2)
        state = tmp_path / "state.sqlite"
        emitted = emit_sessions(Outbox(state, cfg), 300)
        monkeypatch.setenv("RETENTION_WEBHOOKS", str(cfg.path))
        monkeypatch.setenv("CRM_SECRET", SECRET)
        process = subprocess.Popen(
            [sys.executable, "-c", DELIVERER_PROCESS, str(state)], cwd=PROJECT_DIR, env=os.environ
        )
        deadline = time.monotonic() + 60
        while len(receiver.unique_ids()) < 50:
            assert time.monotonic() < deadline and process.poll() is None, "no delivery"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        cut = len(receiver.unique_ids())
        assert cut < len(emitted)  # killed mid-way, not after the end
        survivor = Outbox(state, cfg)
        wait = Deliverer(survivor, poll_seconds=0.1).start()
        wait_until_delivered(survivor, timeout=120)
        wait.stop()
    assert receiver.unique_ids() == emitted
    assert survivor.dead_letters() == []
