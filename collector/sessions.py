"""Sessions as the collector stores them: the full row of validation.md §1, checked by
the exit-sessions contract (the one home of the rule, so a row the collector accepts is a
row the load accepts) and written in one canonical form, so an identical retry is
recognised as identical."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import polars as pl

from dlt_sources.exit_sessions.contract import COLUMNS, LINEAGE, TYPE_ERRORS, check

# Fields a landing sets once and an update may not change: they are what the signature
# and the episode grouping rest on.
IDENTITY = ("session_id", "app_id", "billing_system", "billing_id", "started_at")
UPDATABLE = tuple(c for c in COLUMNS if c not in IDENTITY)
FAST_PATH_ACTIONS = ("canceled", "offer_accepted")

_SCHEMA = {
    **dict.fromkeys(COLUMNS, pl.String),
    TYPE_ERRORS: pl.String,
    "_file": pl.String,
    "_line": pl.Int64,
    "_landed_seq": pl.Int64,
}


@dataclass(frozen=True)
class Problem:
    """Why a request was refused: the field (or `body`, `signature`, ...) and what is wrong."""

    field: str
    problem: str


@dataclass
class Checked:
    """A row after the contract: the canonical row, or the problems that refuse it."""

    row: dict[str, Any] | None
    problems: list[Problem] = field(default_factory=list)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _problems(reason: str) -> list[Problem]:
    """The contract's reasons ("action_at is before started_at; ...") as field problems;
    each reason starts with the column it is about, except the few about the whole row."""
    found = []
    for text in reason.split("; "):
        name = text.split(" ", 1)[0]
        found.append(Problem(name if name in COLUMNS else "body", text))
    return found


def _canonical(good: dict[str, Any]) -> dict[str, Any]:
    row = {c: good[c] for c in COLUMNS}
    for column in ("started_at", "action_at"):
        if isinstance(row[column], datetime):
            row[column] = row[column].isoformat()
    if row["custom"] is not None:
        row["custom"] = orjson.loads(row["custom"])
    return row


def check_rows(rows: list[dict[str, Any]]) -> list[Checked]:
    """Each row through the contract at once (one polars pass for a whole group commit):
    its canonical form (times ISO 8601 in UTC, text trimmed, empty text null, `custom` an
    object) or the problems, in the order given."""
    if not rows:
        return []
    frame = pl.DataFrame(
        [
            {
                **{c: _text(row.get(c)) for c in COLUMNS},
                TYPE_ERRORS: None,
                "_file": "collector",
                "_line": index,
                "_landed_seq": index,
            }
            for index, row in enumerate(rows)
        ],
        schema=_SCHEMA,
    )
    good, bad = check(frame)
    checked = [Checked(None) for _ in rows]
    for item in good.drop(*LINEAGE[:1]).to_dicts():
        checked[item["_line"]] = Checked(_canonical(item))
    for item in bad.select("_line", "reason").to_dicts():
        checked[item["_line"]] = Checked(None, _problems(item["reason"]))
    return checked


def encode(row: dict[str, Any]) -> str:
    """A stored row as one JSON line (no newline inside: JSON escapes them)."""
    return orjson.dumps(row).decode()


def decode(text: str) -> dict[str, Any]:
    return orjson.loads(text)
