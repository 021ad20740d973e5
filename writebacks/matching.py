"""validation.md §2 and §3 in Python, for the fast path: which episode a new exit session
belongs to, and which subscription that episode matches.

The scheduled path reads both answers from the marts (dbt's `int_exit_sessions__episode_walk`
and `int_exit_episodes__matched`); the fast path acts before the next sync, so it needs
them for a session the marts have not seen yet. These functions are the rules as dbt
applies them, over plain dicts, and a test holds them to dbt's answers on every oracle
scenario. A Recurly account *id* sent instead of the account code is not matched here
(the marts carry no second customer id): such a session waits for the scheduled path.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

SAVE_WINDOW = timedelta(days=30)  # validation.md §2's default (dbt var save_window_days)


class Episode(NamedTuple):
    """An episode as §2 opens it: the id of its first session and S, its first landing."""

    episode_id: str
    started_at: datetime


def episode_of(
    session_id: str,
    started_at: datetime,
    earlier: Iterable[tuple[datetime, str]],
    window: timedelta = SAVE_WINDOW,
) -> Episode:
    """The episode of a session, from the (started_at, session_id) visits of its billing
    id. Only visits before it (ties by session id) decide where its episode starts, so a
    visit list that also holds later or repeated visits gives the same answer."""
    this = (started_at, session_id)
    visits = sorted({v for v in earlier if v < this} | {this})
    start = visits[0]
    for visit in visits:
        if visit[0] >= start[0] + window:
            start = visit
    return Episode(start[1], start[0])


def match_subscription(
    subscriptions: Iterable[dict[str, Any]], billing_id: str, start: datetime
) -> dict[str, Any] | None:
    """§3 over one billing system's candidate subscriptions (dicts with subscription_id,
    customer_id, activated_at, ended_at, mrr): the one whose id is `billing_id`; else,
    among the subscriptions of customer `billing_id`, the one in service at `start`
    (highest mrr, then latest activated, then smallest id), else the latest activated
    before it, else the earliest activated after it; else None."""
    owned = []
    for sub in subscriptions:
        if sub["subscription_id"] == billing_id:
            return sub
        if sub["customer_id"] == billing_id:
            owned.append(sub)
    return min(owned, key=lambda sub: _rank(sub, start), default=None)


def _rank(sub: dict[str, Any], start: datetime) -> tuple:
    """The sort key of int_exit_episodes__matched's row_number(), smallest first."""
    activated = sub["activated_at"].timestamp()
    if sub["activated_at"] > start:
        return (3, 0, 0, activated, sub["subscription_id"])
    if sub["ended_at"] is None or sub["ended_at"] > start:
        mrr = sub["mrr"]
        # `mrr desc nulls last`
        return (1, mrr is None, -(mrr or Decimal(0)), -activated, sub["subscription_id"])
    return (2, 0, 0, -activated, sub["subscription_id"])
