"""Which write-backs the cancel page asked for: actions derived from the marts.

One action per exit session whose action is `canceled` or `offer_accepted` (an accepted
`custom` offer has no billing action), for the subscription the episode matched
(validation.md §3), or — for cancels with `scope: customer` — for every subscription of
that customer in service when the visitor acted. Only sessions of billing systems whose
mode is not `off`, acted at or after that system's `since`, are considered: enabling
write-backs never replays history.

Parameters are resolved here, once, into absolute values (a pause's resume time, an
extension's new term end) from the later of the visitor's action and the billing sync
the marts were built from, so every retry sends the same request.

The action id is a hash of (session, action, subscription): the same session always
yields the same ids, which is what lets a re-run recognise work it has already done.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
from dateutil.relativedelta import relativedelta

from writebacks.catalog import Catalog
from writebacks.ledger import LedgerRow

_SESSIONS = """
select s.session_id, s.episode_id, s.billing_system, s.billing_id, s.action, s.action_at,
       s.offer_id, s.offer_type, e.subscription_id, e.customer_id, e.validated_at
from marts.fct_exit_sessions s
left join marts.fct_exit_episodes e on e.episode_id = s.episode_id
where s.action in ('canceled', 'offer_accepted')
order by s.action_at, s.session_id
"""
_SUBSCRIPTIONS = """
select billing_system, subscription_id, customer_id, currency, activated_at, ended_at,
       current_period_end
from marts.dim_subscriptions
"""
_STEP = {"day": "days", "week": "weeks", "month": "months"}


def action_id(session_id: str, action: str, subscription_id: str | None) -> str:
    digest = hashlib.sha256(f"{session_id}|{action}|{subscription_id or ''}".encode())
    return "wb_" + digest.hexdigest()[:24]


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def _records(db: duckdb.DuckDBPyConnection, query: str) -> list[dict[str, Any]]:
    cursor = db.execute(query)
    names = [d[0] for d in cursor.description]
    return [
        {n: _utc(v) if isinstance(v, datetime) else v for n, v in zip(names, row, strict=True)}
        for row in cursor.fetchall()
    ]


def sessions_in_marts(db: duckdb.DuckDBPyConnection) -> set[str]:
    """Every exit session the marts know, whatever it asks and the catalog says."""
    rows = db.execute("select session_id from marts.fct_exit_sessions").fetchall()
    return {session_id for (session_id,) in rows}


def derive_actions(db: duckdb.DuckDBPyConnection, catalog: Catalog) -> list[LedgerRow]:
    """Every action the eligible exit sessions ask for, resolved against the catalog."""
    subscriptions = {
        (s["billing_system"], s["subscription_id"]): s for s in _records(db, _SUBSCRIPTIONS)
    }
    by_customer: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for sub in subscriptions.values():
        by_customer[(sub["billing_system"], sub["customer_id"])].append(sub)
    rows: list[LedgerRow] = []
    for session in _records(db, _SESSIONS):
        system = session["billing_system"]
        matched = subscriptions.get((system, session["subscription_id"]))
        owned = by_customer.get((system, session["customer_id"]), [])
        rows.extend(session_actions(session, matched, owned, catalog))
    return rows


def session_actions(
    session: dict[str, Any], matched: dict | None, owned: list[dict], catalog: Catalog
) -> list[LedgerRow]:
    """The actions one exit session asks for: the one place both the scheduled path and
    the fast path (writebacks.fastpath) turn a session into ledger rows.

    `session`: its fields (session_id, billing_system, billing_id, action, action_at,
    offer_id, offer_type) with its episode's (episode_id, customer_id, validated_at);
    `matched`: the subscription its episode matched (§3), or None; `owned`: that
    customer's subscriptions (for cancels with `scope: customer`). Nothing when the
    system's mode is `off` or the action is before its `since`."""
    settings = catalog.systems.get(session["billing_system"])
    if settings is None or not settings.enabled_for(session["action_at"]):
        return []
    if session["action"] == "canceled" and settings.cancel["scope"] == "customer":
        targets = _in_service(owned, matched, session["action_at"])
    else:
        targets = [matched]
    return [
        row
        for target in targets or [None]
        if (row := _row(session, target, catalog, settings.mode)) is not None
    ]


def _in_service(owned: list[dict], matched: dict | None, at: datetime) -> list[dict]:
    """The customer's subscriptions in service when the visitor acted (the matched one
    included), so a later subscription is never canceled by an older visit."""
    live = [
        s
        for s in owned
        if s["activated_at"] <= at and (s["ended_at"] is None or s["ended_at"] > at)
    ]
    return sorted(
        {s["subscription_id"]: s for s in live + [m for m in [matched] if m]}.values(),
        key=lambda s: s["subscription_id"],
    )


def _row(session: dict, target: dict | None, catalog: Catalog, mode: str) -> LedgerRow | None:
    """The ledger row for one session and target subscription; failed with the reason
    when it cannot be resolved, None for an offer with no billing action."""
    system = session["billing_system"]
    offer = catalog.offers.get(session["offer_id"]) if session["offer_id"] else None
    if session["action"] == "canceled":
        action_type = "cancel"
    else:
        action_type = offer.type if offer else session["offer_type"]
    if action_type == "custom":
        return None
    subscription_id = target["subscription_id"] if target else None
    row = LedgerRow(
        action_id=action_id(session["session_id"], session["action"], subscription_id),
        episode_id=session["episode_id"],
        session_id=session["session_id"],
        billing_system=system,
        subscription_id=subscription_id,
        customer_id=target["customer_id"] if target else session["customer_id"],
        action_type=action_type,
        offer_id=session["offer_id"],
        action_at=session["action_at"],
        mode=mode,
    )
    if target is None:
        row.status, row.error = (
            "failed",
            (
                f"no {system} subscription matches billing id {session['billing_id']!r}: "
                f"if it is new, sync {system} and retry failed actions; otherwise the cancel "
                f"page sends an id {system} does not know (another system, or test vs live "
                "mode): fix the page's billing id"
            ),
        )
        return row
    if action_type != "cancel" and offer is None:
        row.status, row.error = (
            "failed",
            (
                f"offer {session['offer_id']!r} is not in the write-back catalog "
                f"{catalog.path}: add it under offers, then retry failed actions"
            ),
        )
        return row
    anchor = max(session["action_at"], session["validated_at"] or session["action_at"])
    parameters = offer.for_system(system) if offer else {}
    try:
        row.parameters = resolve(
            action_type, parameters, catalog.systems[system].cancel, anchor, target
        )
    except Unresolvable as exc:
        row.status, row.error = (
            "failed",
            (
                f"{exc} (offers.{session['offer_id']}.{system} in {catalog.path}): "
                "add it, then retry failed actions"
            ),
        )
    return row


class Unresolvable(ValueError):
    """The catalog has no value for this subscription (e.g. no plan in its currency)."""


def resolve(
    action_type: str, offer: dict[str, Any], cancel: dict[str, Any], anchor: datetime, target: dict
) -> dict[str, Any]:
    """Absolute parameters of one action (see the module docstring)."""
    match action_type:
        case "cancel":
            return dict(cancel)
        case "pause":
            step = relativedelta(**{_STEP[offer["interval"]]: offer["duration"]})
            return {
                "duration": offer["duration"],
                "interval": offer["interval"],
                # Only a catalog's own cycles: Recurly's writer converts the duration
                # into the plan's billing cycles otherwise.
                **({"cycles": offer["cycles"]} if offer.get("cycles") else {}),
                "resumes_at": (anchor + step).isoformat(),
            }
        case "extension":  # Stripe's period end is its items' latest (staging)
            start = max(target["current_period_end"] or anchor, anchor)
            return {**offer, "until": (start + timedelta(days=offer["days"])).isoformat()}
        case "plan_change" if isinstance(offer["plan"], dict):
            currency = target["currency"]
            if currency not in offer["plan"]:
                raise Unresolvable(f"no target plan for {currency} subscriptions")
            return {**offer, "plan": offer["plan"][currency]}
        case _:  # discount, plan_change: the system's own ids, as configured
            return dict(offer)
