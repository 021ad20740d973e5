"""The collector's API in-process (FastAPI's TestClient runs the app and its lifespan):
acknowledged sessions are in the log, retries are idempotent, updates merge, and every
forged, replayed, oversized or malformed request is a 4xx naming the problem."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from collector.app import create_app
from collector.settings import CollectorConfig, CollectorSettings
from dlt_sources.exit_sessions.contract import check
from dlt_sources.exit_sessions.readers import read_file
from webhooks.signing import sign

SECRET = b"unit-test-secret-0123456789"
ORIGIN = "https://shop.test"


def settings_for(tmp_path: Path) -> CollectorSettings:
    config = CollectorConfig(apps={"shop": {"secret_env": "SHOP_SECRET"}}, allowed_origins=[ORIGIN])
    return CollectorSettings(
        config=config,
        state_db=tmp_path / "state" / "collector.sqlite",
        drop_folder=tmp_path / "drop",
        secrets={"shop": SECRET},
        publish_interval_seconds=0.05,
    )


def signed(billing_id: str = "sub_1", timestamp: int | None = None, **fields) -> dict:
    """A body signed as the company's backend signs it."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    parts = ["shop", "stripe", billing_id, str(timestamp)]
    return {
        "app_id": "shop",
        "billing_system": "stripe",
        "billing_id": billing_id,
        "timestamp": timestamp,
        "signature": sign(SECRET, parts),
        **fields,
    }


LANDING = {"session_id": "s1", "started_at": "2026-04-02T08:00:00Z"}


@pytest.fixture
def settings(tmp_path) -> CollectorSettings:
    return settings_for(tmp_path)


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def log_rows(settings: CollectorSettings) -> list[tuple]:
    with sqlite3.connect(settings.state_db) as con:
        return con.execute(
            "select session_id, action from collector_sessions order by seq"
        ).fetchall()


def problem(response) -> tuple[int, str, str]:
    [detail] = response.json()["detail"]
    return response.status_code, detail["field"], detail["problem"]


def test_a_landing_is_stored_once_and_a_retry_changes_nothing(client, settings):
    first = client.post("/v1/sessions", json=signed(**LANDING))
    again = client.post("/v1/sessions", json=signed(**LANDING))
    assert (first.status_code, first.json()["stored"]) == (201, True)
    assert (again.status_code, again.json()["stored"]) == (200, False)
    assert first.json()["session"]["started_at"] == "2026-04-02T08:00:00+00:00"
    assert log_rows(settings) == [("s1", None)]


def test_an_update_merges_into_the_full_row(client, settings):
    client.post("/v1/sessions", json=signed(**LANDING, page_id="v2"))
    update = signed(action="offer_accepted", offer_id="pause_1m", offer_type="pause")
    first = client.patch("/v1/sessions/s1", json=update)
    again = client.patch("/v1/sessions/s1", json=update)
    row = first.json()["session"]
    assert first.status_code == 200 and first.json()["stored"]
    assert again.json() == {"session": row, "stored": False}
    assert row["page_id"] == "v2" and row["offer_type"] == "pause"
    assert row["action_at"] is not None  # the receive time, as the page sent none
    assert log_rows(settings) == [("s1", None), ("s1", "offer_accepted")]


def test_a_landing_with_other_values_for_a_known_id_is_a_conflict(client):
    client.post("/v1/sessions", json=signed(**LANDING))
    response = client.post("/v1/sessions", json=signed(**LANDING, page_id="other"))
    status, field, text = problem(response)
    assert (status, field) == (409, "session_id") and "page_id" in text and "PATCH" in text


def test_an_update_of_an_unknown_session_is_not_found(client):
    assert problem(client.patch("/v1/sessions/nope", json=signed(action="deflected")))[:2] == (
        404,
        "session_id",
    )


def test_an_update_may_repeat_its_session_id_but_not_another(client):
    client.post("/v1/sessions", json=signed(**LANDING))
    same = client.patch("/v1/sessions/s1", json=signed(session_id="s1", action="deflected"))
    other = client.patch("/v1/sessions/s1", json=signed(session_id="s2", action="deflected"))
    assert same.status_code == 200 and problem(other)[:2] == (422, "session_id")


def test_nobody_updates_a_session_with_a_signature_for_another_billing_id(client):
    client.post("/v1/sessions", json=signed(**LANDING))
    response = client.patch("/v1/sessions/s1", json=signed("sub_2", action="canceled"))
    assert problem(response)[:2] == (403, "billing_id")


# Each body is made when its test runs, not when the tests are collected: a body signed at
# collection is stale (403 timestamp) once a long run reaches it past the replay window.
@pytest.mark.parametrize(
    ("make_body", "field", "says"),
    [
        (lambda: {**signed(**LANDING), "signature": "0" * 64}, "signature", "does not match"),
        # Signed for sub_1, sent for someone else's subscription.
        (lambda: {**signed(**LANDING), "billing_id": "sub_other"}, "signature", "does not match"),
        (lambda: signed(timestamp=int(time.time()) - 301, **LANDING), "timestamp", "sign again"),
        (lambda: signed(timestamp=int(time.time()) + 3600, **LANDING), "timestamp", "sign again"),
        (lambda: {**signed(**LANDING), "app_id": "other"}, "app_id", "not configured"),
        (lambda: {k: v for k, v in signed(**LANDING).items() if k != "signature"}, "signature", ""),
        (lambda: signed(**LANDING, action=5), "action", "string"),
        (lambda: signed(**LANDING, unknown="x"), "unknown", "Extra inputs"),
        (lambda: signed(**LANDING, action="refunded"), "action", "not one of"),
        (
            lambda: signed(**LANDING, action="canceled", action_at="2026-04-01T00:00:00Z"),
            "action_at",
            "before",
        ),
        (lambda: signed(**LANDING, action="offer_accepted"), "offer_type", "required"),
        (lambda: {**signed(**LANDING), "billing_system": "paypal"}, "signature", "does not match"),
    ],
)
def test_refusals_name_the_problem(client, settings, make_body, field, says):
    response = client.post("/v1/sessions", json=make_body())
    status, named, text = problem(response)
    assert 400 <= status < 500 and named == field and says in text
    assert log_rows(settings) == []


def test_an_unsupported_billing_system_is_named_when_signed(client):
    body = signed(**LANDING)
    body["billing_system"] = "paypal"
    body["signature"] = sign(SECRET, ["shop", "paypal", "sub_1", str(body["timestamp"])])
    assert problem(client.post("/v1/sessions", json=body))[:2] == (422, "billing_system")


def test_malformed_json_is_a_400(client):
    response = client.post(
        "/v1/sessions",
        content=b'{"session_id": "s1",',
        headers={"content-type": "application/json"},
    )
    assert problem(response)[:2] == (400, "body")


def test_oversized_bodies_are_refused_announced_or_chunked(client, settings):
    big = signed(**LANDING, custom={"x": "y" * settings.config.max_body_bytes})
    assert problem(client.post("/v1/sessions", json=big))[:2] == (413, "body")

    def chunks():
        for _ in range(40):
            yield b" " * 1024

    chunked = client.post(
        "/v1/sessions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in chunked.request.headers
    assert problem(chunked)[:2] == (413, "body")


def test_cors_answers_only_the_configured_origins(client):
    allowed = client.post("/v1/sessions", json=signed(**LANDING), headers={"origin": ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    preflight = {"origin": "https://evil.test", "access-control-request-method": "POST"}
    refused = client.options("/v1/sessions", headers=preflight)
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    simple = client.post(
        "/v1/sessions", json=signed(**LANDING), headers={"origin": "https://evil.test"}
    )
    assert problem(simple)[:2] == (403, "origin")


def test_no_secret_or_signature_in_logs_or_answers(settings, caplog):
    caplog.set_level(logging.DEBUG)
    bodies = [signed(**LANDING), signed(**LANDING, action=5), {**signed(**LANDING), "app_id": "x"}]
    with TestClient(create_app(settings)) as client:
        answers = [client.post("/v1/sessions", json=body).text for body in bodies]
    for body in bodies:
        assert body["signature"] not in caplog.text and body["signature"] not in "".join(answers)
    assert SECRET.decode() not in caplog.text


def test_health_and_docs(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and {"undispatched", "unpublished"} <= set(health)
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/sessions", "/v1/sessions/{session_id}", "/healthz"} <= set(paths)
    assert client.get("/docs").status_code == 200


def test_acknowledged_sessions_reach_the_drop_folder_in_the_source_format(settings):
    with TestClient(create_app(settings)) as client:
        client.post("/v1/sessions", json=signed(**LANDING, custom={"seats": 3}))
        client.patch("/v1/sessions/s1", json=signed(action="canceled", cancel_reason="price"))
    batches = [read_file(path, path.name) for path in sorted(settings.drop_folder.iterdir())]
    rows = pl.concat([batch.rows for batch in batches], how="diagonal_relaxed")
    good, quarantine = check(rows.with_columns(_landed_seq=pl.int_range(pl.len())))
    assert quarantine.height == 0 and sum(batch.problems.height for batch in batches) == 0
    assert good["action"].to_list() == [None, "canceled"]
    assert good["custom"].to_list() == ['{"seats":3}'] * 2
