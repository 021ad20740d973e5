"""The sources' shared helpers, in milliseconds and without a network (as dlt's verified
sources test theirs): records to Arrow, the syncs row, and one reading of an HTTP `Date`
header for every source. Each system's own helpers: tests/unit/test_<system>_helpers.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from billing_clients.retries import http_date
from dlt_sources.chargebee.helpers import server_time
from dlt_sources.common import flatten, sync_row, to_arrow

# --------------------------------------------------------------------------- to_arrow


def test_nested_objects_become_double_underscore_columns_and_lists_json_text():
    record = {
        "id": "sub_1",
        "plan": {"id": "gold", "product": {"name": "Gold"}},
        "items": [{"id": "si_1", "quantity": 2}],
        "metadata": {},
    }
    assert flatten(record) == {
        "id": "sub_1",
        "plan__id": "gold",
        "plan__product__name": "Gold",
        "items": '[{"id":"si_1","quantity":2}]',
        "metadata": None,  # an empty object: nothing to name a column after
    }


def test_to_arrow_gives_one_flat_table_with_extra_columns_on_every_row():
    table = to_arrow(
        [{"id": "a", "plan": {"amount": 100}}, {"id": "b", "plan": {"amount": 250}}],
        extra={"_page_seq": 3},
    )
    assert table.column_names == ["id", "plan__amount", "_page_seq"]
    assert table.column("plan__amount").to_pylist() == [100, 250]
    assert table.column("_page_seq").to_pylist() == [3, 3]
    assert json.loads(to_arrow([{"id": "a", "tags": ["x", "y"]}]).column("tags")[0].as_py()) == [
        "x",
        "y",
    ]


def test_text_is_string_not_large_string_and_the_key_is_not_null():
    # dlt fills a column a page lacks as `string`: pages of one table must agree
    table = to_arrow([{"code": "c1", "name": "Gold"}], key="code")
    assert table.schema.field("name").type == pa.string()
    assert not table.schema.field("code").nullable
    assert table.schema.field("name").nullable


def test_columns_null_on_every_row_are_left_for_a_later_page_to_type():
    table = to_arrow([{"id": "a", "canceled_at": None}, {"id": "b", "canceled_at": None}])
    assert table.column_names == ["id"]


def test_a_field_some_records_lack_is_null_there():
    table = to_arrow([{"id": "a", "trial_end": 5}, {"id": "b"}])
    assert table.column("trial_end").to_pylist() == [5, None]


def test_mixed_whole_and_fractional_numbers_are_one_column():
    table = to_arrow([{"id": "a", "amount": 1}, {"id": "b", "amount": 1.5}])
    assert table.column("amount").to_pylist() == [1.0, 1.5]


# --------------------------------------------------------------------------- syncs


def test_the_syncs_row_keeps_the_api_s_clock_or_flags_the_local_one():
    at = datetime(2026, 12, 5, 6, 49, 44, tzinfo=UTC)
    assert sync_row(at) == {"synced_at": at, "clock": "api"}
    local = sync_row(None)
    assert local["clock"] == "local" and local["synced_at"].tzinfo is not None


# --------------------------------------------------------------------------- clock


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
