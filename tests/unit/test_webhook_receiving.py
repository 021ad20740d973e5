"""What a receiver checks: a good request reads as its event; a forged signature, another
secret, a stale or future timestamp (a replay), a changed body, missing headers and an id
that differs from the body's are refused, each saying why and never echoing the signature."""

from __future__ import annotations

import json

import pytest

from webhooks.events import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from webhooks.receiving import InvalidWebhook, read_event
from webhooks.signing import sign

SECRET = b"whsec_receiver"
NOW = 1_800_000_000
BODY = json.dumps({"id": "evt_1", "type": "exit_session.canceled", "created": NOW, "data": {}})


def request(timestamp: int = NOW, body: str = BODY, secret: bytes = SECRET) -> dict[str, str]:
    return {
        EVENT_ID_HEADER: "evt_1",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, [str(timestamp), body]),
    }


def test_a_good_request_reads_as_its_event_whatever_the_header_case() -> None:
    headers = {k.lower(): v for k, v in request().items()}
    assert (
        read_event(SECRET, headers, BODY.encode(), now=NOW + 299)["type"] == "exit_session.canceled"
    )


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        (request(secret=b"other"), BODY, "does not match"),
        (request(), BODY.replace("canceled", "deflected"), "does not match"),
        (request(timestamp=NOW - 301), BODY, "outside ±300 s"),
        (request(timestamp=NOW + 301), BODY, "outside ±300 s"),
        ({**request(), TIMESTAMP_HEADER: "soon"}, BODY, "not Unix seconds"),
        ({k: v for k, v in request().items() if k != SIGNATURE_HEADER}, BODY, "header missing"),
        ({**request(), EVENT_ID_HEADER: "evt_2"}, BODY, "differs from the body's id"),
        (request(), "\xff", "does not match"),
    ],
)
def test_bad_requests_are_refused_saying_why(headers: dict, body: str, reason: str) -> None:
    with pytest.raises(InvalidWebhook, match=reason) as caught:
        read_event(SECRET, headers, body.encode(), now=NOW)
    assert sign(SECRET, [str(NOW), BODY]) not in str(caught.value)
    assert headers.get(SIGNATURE_HEADER, "no signature") not in str(caught.value)


def test_a_body_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(InvalidWebhook, match="not UTF-8"):
        read_event(SECRET, request(), b"\xff\xfe", now=NOW)
