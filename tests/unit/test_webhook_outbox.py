"""The outbox against a transport standing in for receivers (httpx.MockTransport) and a
clock the test moves: idempotent emits, signed requests, the backoff schedule, dead
letters after N attempts or max age, redelivery, and a crashed claim taken over."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from webhooks.config import Delivery, Endpoint, WebhooksConfig
from webhooks.events import event_id
from webhooks.outbox import DEAD_LETTERS, OUTBOX, Outbox, backoff, due_events
from webhooks.signing import verify

SECRET = b"whsec_unit"
DELIVERY = Delivery(
    max_attempts=3, max_age_seconds=3600, initial_backoff_seconds=1, max_backoff_seconds=60
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def config(
    *names: str, events: tuple[str, ...] = ("*",), delivery: Delivery = DELIVERY
) -> WebhooksConfig:
    return WebhooksConfig(
        None,
        {n: Endpoint(n, f"http://{n}.test/hook", events, SECRET) for n in names},
        delivery,
    )


def outbox(
    tmp_path: Path,
    answer: Callable[[httpx.Request], httpx.Response],
    cfg: WebhooksConfig | None = None,
    clock: Clock | None = None,
) -> tuple[Outbox, list[httpx.Request], Clock]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    clock = clock or Clock()
    box = Outbox(
        tmp_path / "state.sqlite",
        cfg or config("crm"),
        client=httpx.Client(transport=httpx.MockTransport(handler)),
        clock=clock,
    )
    return box, seen, clock


def ok(_: httpx.Request) -> httpx.Response:
    return httpx.Response(204)


def down(_: httpx.Request) -> httpx.Response:
    return httpx.Response(503, text="maintenance")


def rows(path: Path, table: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(f"select endpoint, event_id, attempts from {table} order by 1").fetchall()


def test_an_event_is_signed_and_sent_once_to_each_subscriber(tmp_path: Path) -> None:
    cfg = config("crm", "ops", "quiet", events=("exit_session.*",))
    cfg.endpoints["quiet"] = Endpoint("quiet", "http://quiet.test/h", ("validation.*",), SECRET)
    box, seen, clock = outbox(tmp_path, ok, cfg)
    row = {"session_id": "s1", "action": "canceled", "billing_id": "sub_1", "signature": "x"}
    assert box.emit_session(row) == 2
    assert box.emit_session(row) == 0  # a replayed dispatch adds nothing
    stats = box.deliver_pending()
    assert (stats.attempts, stats.delivered) == (2, 2)
    assert sorted(r.url.host for r in seen) == ["crm.test", "ops.test"]
    request = seen[0]
    body = request.content.decode()
    document = json.loads(body)
    expected_id = event_id("exit_session.canceled", "s1")
    assert document["id"] == request.headers["Retention-Event-Id"] == expected_id
    assert document["type"] == "exit_session.canceled"
    assert document["created"] == int(clock.now)
    assert document["data"]["billing_id"] == "sub_1" and "signature" not in document["data"]
    timestamp = request.headers["Retention-Timestamp"]
    assert verify(SECRET, [timestamp, body], request.headers["Retention-Signature"])
    assert not verify(
        SECRET, [str(int(timestamp) + 1), body], request.headers["Retention-Signature"]
    )
    assert box.deliver_pending().attempts == 0  # delivered: never again
    assert box.emit_session(row) == 0  # nor after delivery


def test_no_subscriber_no_row(tmp_path: Path) -> None:
    box, _, _ = outbox(tmp_path, ok, config("crm", events=("validation.*",)))
    assert box.emit("exit_session.canceled", {}, event_id="e1") == 0
    assert rows(box.state_db, OUTBOX) == []


def test_a_failure_is_retried_after_the_backoff_then_delivered(tmp_path: Path) -> None:
    answers = iter(
        [
            httpx.Response(500),
            httpx.Response(429, headers={"Retry-After": "30"}),
            httpx.Response(200),
        ]
    )
    box, seen, clock = outbox(tmp_path, lambda _: next(answers))
    box.emit("validation.valid_save", {"episode_id": "s1"}, event_id="e1")
    assert box.deliver_pending().retry_later == 1
    assert box.deliver_pending().attempts == 0  # not due yet
    clock.now += 1  # first backoff is exactly initial_backoff_seconds
    assert box.deliver_pending().retry_later == 1
    clock.now += 29
    assert box.deliver_pending().attempts == 0  # Retry-After: 30 is honoured
    clock.now += 1
    assert box.deliver_pending().delivered == 1
    assert len(seen) == 3
    assert len({r.content for r in seen}) == 1  # every attempt sends the same body


def test_dead_letter_after_max_attempts_then_redelivery(tmp_path: Path) -> None:
    box, _, clock = outbox(tmp_path, down)
    box.emit("exit_session.canceled", {"session_id": "s1"}, event_id="e1")
    outcomes = []
    for _ in range(DELIVERY.max_attempts):
        stats = box.deliver_pending()
        outcomes.append((stats.retry_later, stats.dead))
        clock.now += DELIVERY.max_backoff_seconds
    assert outcomes == [(1, 0), (1, 0), (0, 1)]
    assert rows(box.state_db, OUTBOX) == []
    [dead] = box.dead_letters()
    assert dead["event_id"] == "e1" and dead["attempts"] == DELIVERY.max_attempts
    assert dead["last_status"] == 503 and dead["last_error"] == "HTTP 503: maintenance"
    assert "max_attempts" in dead["reason"]
    assert box.emit("exit_session.canceled", {"session_id": "s1"}, event_id="e1") == 0
    assert box.deliver_pending().attempts == 0
    assert box.counts()[("crm", "dead")] == 1
    assert box.redeliver(["other"]) == 0
    assert box.redeliver(["e1"]) == 1
    assert rows(box.state_db, DEAD_LETTERS) == []
    assert rows(box.state_db, OUTBOX) == [("crm", "e1", 0)]
    assert box.deliver_pending().attempts == 1


def test_dead_letter_once_older_than_max_age(tmp_path: Path) -> None:
    box, seen, clock = outbox(tmp_path, down, config("crm", delivery=Delivery(max_age_seconds=100)))
    box.emit("exit_session.canceled", {}, event_id="e1")
    box.deliver_pending()
    clock.now += 101
    stats = box.deliver_pending()
    assert (stats.attempts, len(seen)) == (0, 1)
    [dead] = box.dead_letters()
    assert "older than max_age_seconds (100) after 1 attempt(s)" in dead["reason"]


def test_an_endpoint_removed_from_the_file_dead_letters_its_events(tmp_path: Path) -> None:
    first, _, clock = outbox(tmp_path, down, config("crm", "old"))
    first.emit("exit_session.canceled", {}, event_id="e1")
    box, _, _ = outbox(tmp_path, ok, config("crm"), clock)
    assert box.deliver_pending().delivered == 1
    [dead] = box.dead_letters()
    assert (dead["endpoint"], dead["reason"]) == (
        "old",
        "endpoint old is no longer in webhooks.yml",
    )


def test_a_connection_error_is_a_failed_attempt(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    box, _, _ = outbox(tmp_path, refuse)
    box.emit("exit_session.canceled", {}, event_id="e1")
    assert box.deliver_pending().retry_later == 1
    with sqlite3.connect(box.state_db) as db:
        assert db.execute(f"select last_error from {OUTBOX}").fetchone() == (
            "ConnectError: connection refused",
        )


def test_a_claim_left_by_a_crashed_process_is_taken_over_after_its_lease(tmp_path: Path) -> None:
    box, seen, clock = outbox(tmp_path, ok)
    box.emit("exit_session.canceled", {}, event_id="e1")
    assert len(box._claim()) == 1  # a process claimed it, then died before recording
    assert box.deliver_pending().attempts == 0  # leased: nobody else sends it meanwhile
    clock.now += box.lease_seconds
    stats = box.deliver_pending()
    assert (stats.delivered, len(seen)) == (1, 1)
    assert rows(box.state_db, OUTBOX) == [("crm", "e1", 2)]  # both attempts counted


@pytest.mark.parametrize("attempts", range(1, 12))
def test_the_backoff_grows_exponentially_with_full_jitter_up_to_the_cap(attempts: int) -> None:
    delivery = Delivery(initial_backoff_seconds=2, max_backoff_seconds=300)
    high = min(300, 2 * 2 ** (attempts - 1))
    delays = [backoff(attempts, delivery) for _ in range(200)]
    assert all(2 <= d <= high for d in delays)
    if high > 2:
        assert len(set(delays)) > 100  # jittered, not one fixed delay
    assert backoff(attempts, delivery, retry_after=10_000) == 300
    assert backoff(attempts, delivery, retry_after=high) == high  # at least Retry-After


def test_events_emitted_in_the_callers_transaction_commit_or_roll_back_with_it(
    tmp_path: Path,
) -> None:
    box, _, _ = outbox(tmp_path, ok)
    rows_ = [{"session_id": f"s{i}", "action": "canceled"} for i in range(3)]
    db = sqlite3.connect(box.state_db, isolation_level=None)
    db.execute("begin immediate")
    assert box.emit_sessions(rows_, db=db) == 3
    db.execute("rollback")
    assert rows(box.state_db, OUTBOX) == []
    db.execute("begin immediate")
    box.emit_sessions(rows_, db=db)
    db.execute("commit")
    db.close()
    box.wake()
    assert box.deliver_pending().delivered == 3


def test_a_pass_with_its_budget_spent_takes_no_new_claim(tmp_path: Path) -> None:
    box, seen, _ = outbox(tmp_path, ok)
    box.emit("exit_session.canceled", {}, event_id="e1")
    assert box.deliver_pending(budget_seconds=0).attempts == 0
    assert seen == []
    assert box.deliver_pending(budget_seconds=60).delivered == 1


def test_a_receiver_echoing_the_headers_leaves_no_signature_in_the_error(tmp_path: Path) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text=f"bad: {dict(request.headers)}")

    box, seen, _ = outbox(tmp_path, echo)
    box.emit("exit_session.canceled", {}, event_id="e1")
    box.deliver_pending()
    signature = seen[0].headers["Retention-Signature"]
    with sqlite3.connect(box.state_db) as db:
        [(error,)] = db.execute(f"select last_error from {OUTBOX}").fetchall()
    assert error.startswith("HTTP 400: bad:") and "[signature]" in error
    assert signature not in error


def test_delivered_events_are_kept_for_their_time_then_pruned(tmp_path: Path) -> None:
    keep = Delivery(keep_delivered_seconds=7200)
    box, seen, clock = outbox(tmp_path, ok, config("crm", delivery=keep))
    box.emit("exit_session.canceled", {}, event_id="e1")
    box.deliver_pending()
    clock.now += 7000
    box.deliver_pending()
    assert box.emit("exit_session.canceled", {}, event_id="e1") == 0  # still recognised
    clock.now += 3601  # past the time kept, and an hour after the last prune
    box.deliver_pending()
    assert rows(box.state_db, OUTBOX) == []
    assert len(seen) == 1


def test_due_events_reads_without_creating_the_state_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.sqlite"
    assert due_events(missing, 0) == 0
    assert not missing.exists()
    box, _, clock = outbox(tmp_path, down)
    box.emit("exit_session.canceled", {}, event_id="e1")
    assert due_events(box.state_db, clock.now) == 1
    box.deliver_pending()  # failed: due again only after its backoff
    assert due_events(box.state_db, clock.now) == 0
    assert due_events(box.state_db, clock.now + DELIVERY.max_backoff_seconds) == 1
