"""The same loads into PostgreSQL (the portable destination). Skipped, with the reason,
where no server answers on 127.0.0.1:5432."""

from __future__ import annotations

import pytest

from orchestration.extract import run_extract

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_exit_sessions_load_into_postgres(postgres, tmp_path, monkeypatch):
    import psycopg2

    monkeypatch.setenv("RETENTION_WAREHOUSE", "postgres")
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.jsonl").write_text(
        '{"session_id":"s1","billing_system":"stripe","billing_id":"sub_1","started_at":"2026-04-02T08:00:00Z"}\n'
        '{"session_id":"s1","billing_system":"stripe","billing_id":"sub_1","started_at":"2026-04-02T08:00:00Z",'
        '"action":"canceled","action_at":"2026-04-02T08:05:00Z"}\n'
        '{"session_id":"s2","billing_system":"paypal","billing_id":"x","started_at":"2026-04-02T08:00:00Z"}\n'
    )
    summaries = run_extract((), exit_sessions_folder=drop, pipelines_dir=tmp_path / "pipelines")
    assert [s.error for s in summaries] == [None]
    with psycopg2.connect(postgres) as con, con.cursor() as cur:
        cur.execute("select session_id, action, action_at from raw_exit_sessions.exit_sessions")
        rows = cur.fetchall()
        cur.execute("select _line, reason from raw_exit_sessions.exit_sessions_quarantine")
        quarantine = cur.fetchall()
    assert [(r[0], r[1], r[2].isoformat()) for r in rows] == [
        ("s1", "canceled", "2026-04-02T08:05:00+00:00")
    ]
    assert quarantine == [(3, "billing_system is not one of stripe, recurly, chargebee")]
