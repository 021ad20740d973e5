"""The one home of the HMAC signature shared by the cancel page's backend, the collector
and the outgoing webhooks: hex HMAC-SHA256 over text parts joined by a newline.

Why parts joined by "\n" rather than one pre-built string: every caller names what it signs
(`[app_id, billing_system, billing_id, timestamp]` for the page, `[timestamp, body]` for a
webhook), so a signer and a verifier cannot disagree on the layout, and a part holding a
newline is refused rather than being confused with a separator.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

SEPARATOR = "\n"


def _message(parts: Sequence[str]) -> bytes:
    """The signed bytes; a part with the separator inside would make two layouts sign the
    same bytes (["a\\nb"] vs ["a", "b"]), so it is refused, naming its position."""
    if isinstance(parts, str):
        raise TypeError("parts must be a sequence of strings, not one string")
    for index, part in enumerate(parts):
        if not isinstance(part, str):
            raise TypeError(f"part {index} must be str, got {type(part).__name__}")
        if SEPARATOR in part:
            raise ValueError(f"part {index} contains a newline, which separates the parts")
    return SEPARATOR.join(parts).encode()


def sign(secret: bytes, parts: Sequence[str]) -> str:
    """Hex HMAC-SHA256 of `parts` joined by a newline, keyed by `secret`."""
    if not secret:
        raise ValueError("secret is empty: set the secret's environment variable")
    return hmac.new(secret, _message(parts), hashlib.sha256).hexdigest()


def verify(secret: bytes, parts: Sequence[str], signature: str) -> bool:
    """Whether `signature` is sign(secret, parts), compared in constant time so the time
    taken leaks nothing about how many characters matched. Malformed input is False."""
    if not secret or not isinstance(signature, str):
        return False
    try:
        expected = sign(secret, parts)
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(expected, signature.lower())
