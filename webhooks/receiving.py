"""How a receiver checks a delivered event, for Python receivers (and our tests): the
signature over the timestamp and the raw body, the timestamp's freshness, and the event
id of the header against the body's.

Why a freshness window: the signature covers the timestamp, so a request captured and
replayed later fails the window; retries are signed again with their own timestamp, so
they pass. Receivers still dedupe by event id: delivery is at least once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from webhooks.events import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from webhooks.signing import verify

DEFAULT_TOLERANCE_SECONDS = 300


class InvalidWebhook(ValueError):
    """The request is not a valid event; the message says why (never the signature)."""


def read_event(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """The event of a request (`{id, type, created, data}`) once its signature, its
    timestamp (within `tolerance_seconds` of `now`) and its id are checked."""
    named = {k.lower(): v for k, v in headers.items()}
    timestamp = named.get(TIMESTAMP_HEADER.lower(), "")
    signature = named.get(SIGNATURE_HEADER.lower())
    if not timestamp.isdigit():
        raise InvalidWebhook(f"{TIMESTAMP_HEADER} header missing or not Unix seconds")
    age = (time.time() if now is None else now) - int(timestamp)
    if abs(age) > tolerance_seconds:
        raise InvalidWebhook(
            f"{TIMESTAMP_HEADER} is {age:.0f} s from now, outside ±{tolerance_seconds:g} s "
            "(a replay, or a clock to fix)"
        )
    if not signature:
        raise InvalidWebhook(f"{SIGNATURE_HEADER} header missing")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise InvalidWebhook("body is not UTF-8") from None
    if not verify(secret, [timestamp, text], signature):
        raise InvalidWebhook(f"{SIGNATURE_HEADER} does not match the body and timestamp")
    event = json.loads(text)
    if event.get("id") != named.get(EVENT_ID_HEADER.lower()):
        raise InvalidWebhook(f"{EVENT_ID_HEADER} header differs from the body's id")
    return event
