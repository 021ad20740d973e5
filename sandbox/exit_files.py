"""Write a scenario's exit sessions as the cancel page's drop files.

A page sends a visit when it lands and again when the visitor acts, so each acted-on
visit becomes two rows with one session_id: the landing (no action) and the update. The
exit-sessions source must merge them into the scenario's final state.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl

from sandbox.scenario import SCHEMA, Scenario, format_ts

_COLUMNS = [f.name for f in SCHEMA["exit_sessions"]]
_ACTION_FIELDS = ("action", "action_at", "offer_id", "offer_type", "cancel_reason")


def session_rows(scenario: Scenario) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(landing rows, action rows) as text columns, timestamps in ISO-8601 'Z'."""
    records = [
        {
            **{k: v for k, v in s.items() if k not in ("started_at", "action_at", "custom")},
            "started_at": format_ts(s["started_at"]),
            "action_at": format_ts(s["action_at"]) if s["action_at"] else None,
            "custom": orjson.dumps(s["custom"]).decode() if s["custom"] is not None else None,
        }
        for s in scenario.exit_sessions
    ]
    frame = pl.DataFrame(records, schema={c: pl.String for c in _COLUMNS})
    landing = frame.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in _ACTION_FIELDS)
    return landing, frame.filter(pl.col("action").is_not_null())


def write_exit_session_files(
    scenario: Scenario, folder: str | Path, fmt: str = "jsonl"
) -> list[Path]:
    """Landings in one file, actions in a later one (jsonl, csv or parquet)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    landing, actions = session_rows(scenario)
    paths = []
    for name, frame in (("01_landings", landing), ("02_actions", actions)):
        path = folder / f"{name}.{fmt}"
        {"jsonl": frame.write_ndjson, "csv": frame.write_csv, "parquet": frame.write_parquet}[fmt](
            path
        )
        paths.append(path)
    return paths
