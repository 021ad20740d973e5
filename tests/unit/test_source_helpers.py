"""The sources' shared helpers, in milliseconds and without a network (as dlt's verified
sources test theirs): one reading of an HTTP `Date` header for every source."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing_clients.retries import http_date
from dlt_sources.chargebee.helpers import server_time


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Sat, 05 Dec 2026 06:49:44 GMT", datetime(2026, 12, 5, 6, 49, 44, tzinfo=UTC)),
        (None, None),
        ("", None),
        ("yesterday", None),
    ],
)
def test_an_http_date_header_is_an_aware_time_or_none(header, expected):
    assert http_date(header) == expected


def test_chargebee_server_time_is_epoch_seconds_of_the_date_header():
    headers = {"date": "Sat, 05 Dec 2026 06:49:44 GMT"}
    assert server_time(headers) == int(datetime(2026, 12, 5, 6, 49, 44, tzinfo=UTC).timestamp())
    assert server_time({}) is None
    assert server_time(None) is None
