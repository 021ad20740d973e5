"""The events the webhooks send: their headers, their types (one list, which webhooks.yml is checked
against), their deterministic ids, and how a session row or a validated episode becomes
one event.

Why deterministic ids: the collector dispatches each session row at least once (again
after a restart) and a validation partition may be rerun or backfilled; the same fact
always yields the same event id, so the outbox enqueues it once per endpoint and a
receiver that saw it can drop a repeat by id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

# The request's headers (the body is the event: {id, type, created, data}).
EVENT_ID_HEADER = "Retention-Event-Id"
TIMESTAMP_HEADER = "Retention-Timestamp"
SIGNATURE_HEADER = "Retention-Signature"
SESSION_PREFIX = "exit_session."
VALIDATION_PREFIX = "validation."
# What a visitor did on the page (validation.md §1's actions; no action yet = started).
SESSION_EVENTS = {
    None: "exit_session.started",
    "canceled": "exit_session.canceled",
    "offer_accepted": "exit_session.offer_accepted",
    "deflected": "exit_session.deflected",
}
# validation.md §4's statuses (dbt: fct_exit_episodes.validation_status accepted values;
# tests/unit/test_webhook_events.py keeps the two lists equal).
VALIDATION_STATUSES = (
    "valid_save",
    "invalid_save",
    "expired_pre_session",
    "canceled_pre_session",
    "activated_post_session",
    "no_match",
    "valid_cancel",
)
EVENT_TYPES = (
    *SESSION_EVENTS.values(),
    *(VALIDATION_PREFIX + status for status in VALIDATION_STATUSES),
)
# Keys of a session row that are never forwarded: the page's proof of identity, and
# lineage columns (leading underscore) that mean nothing to a receiver.
NOT_FORWARDED = frozenset({"signature", "timestamp"})
# The columns of marts.fct_exit_episodes a validation event carries.
EPISODE_FIELDS = (
    "episode_id",
    "billing_system",
    "billing_id",
    "subscription_id",
    "customer_id",
    "first_landed_at",
    "save_event_at",
    "page_outcome",
    "save_type",
    "offer_id",
    "offer_type",
    "validation_status",
    "validated_outcome",
    "mrr",
    "saved_mrr",
    "lost_mrr",
    "validated_at",
)


def event_id(event_type: str, key: str) -> str:
    """`evt_` + 24 hex digits of SHA-256 over the type and the fact's key (a session id,
    an episode id): the same fact of the same type always has the same id."""
    return "evt_" + hashlib.sha256(f"{event_type}|{key}".encode()).hexdigest()[:24]


def plain(value: Any) -> Any:
    """`value` as JSON can carry it: times as ISO-8601 (UTC as the warehouse gives them),
    decimals as text so no money is rounded by a float."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def session_event(row: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(type, id, data) of a session row: the full session as the collector stored it."""
    action = row.get("action") or None
    if action not in SESSION_EVENTS:
        known = ", ".join(a for a in SESSION_EVENTS if a)
        raise ValueError(f"session action {action!r} is not one of {known} (or empty)")
    session_id = row.get("session_id")
    if not session_id:
        raise ValueError("session row has no session_id: it cannot be given an event id")
    event_type = SESSION_EVENTS[action]
    data = {
        k: plain(v) for k, v in row.items() if k not in NOT_FORWARDED and not str(k).startswith("_")
    }
    return event_type, event_id(event_type, str(session_id)), data


def validation_event(episode: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(type, id, data) of a validated episode: `validation.<status>` with its ids,
    billing ids, outcome and revenue. A rerun gives the same id; a changed status, a new
    event (its type is in the id)."""
    status = episode["validation_status"]
    if status not in VALIDATION_STATUSES:
        raise ValueError(
            f"validation_status {status!r} is not one of {', '.join(VALIDATION_STATUSES)}"
        )
    event_type = VALIDATION_PREFIX + status
    data = {name: plain(episode.get(name)) for name in EPISODE_FIELDS}
    return event_type, event_id(event_type, str(episode["episode_id"])), data


def matches(pattern: str, event_type: str) -> bool:
    """Whether a subscription pattern of webhooks.yml takes `event_type`: the exact type,
    `<family>.*`, or `*`."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def known_pattern(pattern: str) -> bool:
    """Whether `pattern` takes at least one event type (a typo takes none)."""
    return any(matches(pattern, t) for t in EVENT_TYPES)
