"""Hypothesis strategies for exit-session drop files, with the outcome each must have.

A generated drop is a file (JSON Lines, CSV or Parquet) whose records are each either valid
per validation.md §1 or damaged in one known way, so the test knows, record by record,
whether it must land or be quarantined, and at which line (or Parquet row). Duplicate
session ids are drawn from a small pool per drop, so later rows update earlier ones.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import strategies as st

from billing_clients.systems import BILLING_SYSTEMS
from dlt_sources.exit_sessions.contract import ACTIONS, COLUMNS, OFFER_TYPES

# The `custom` limit the reader-level tests use, small so "huge" costs little to generate.
SMALL_CUSTOM_LIMIT = 512

# Damage that the contract must catch, whatever the file format.
ROW_DAMAGE = (
    "unknown_billing_system",
    "missing_required",
    "bad_time",
    "action_before_start",
    "action_without_time",
    "offer_without_type",
    "unknown_offer_type",
    "unknown_action",
    "custom_not_object",
    "huge_custom",
    "nul",
)
# Damage only a text format can carry.
TEXT_DAMAGE = ("truncated", "bad_bytes")
JSONL_DAMAGE = ("wrong_type", "not_an_object")
CSV_DAMAGE = ("extra_field",)

# Neither is stripped by the reader nor by Python: generated free text is wrapped in them.
_OPEN, _CLOSE = "<", ">"
_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=8)
_UNKNOWN_KEYS = st.sampled_from(
    ("_line", "_file", "_landed_seq", "_type_errors", "")
) | _TEXT.filter(lambda key: key not in COLUMNS)
_BAD_TIMES = (
    "last tuesday",
    "2026-02-30T00:00:00Z",
    "2026-04-02T25:00:00Z",
    "2026-04-02",
    "2026-04-02T08:00:00+25:00",
    "1712000000",
    "2026-04-02T08",
)


@dataclass
class Record:
    """One generated record: where it is, whether it must land, and what it holds."""

    line: int
    session_id: str | None
    damage: str | None
    started_at: datetime | None = None
    cancel_reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.damage is None


@dataclass
class Drop:
    """A file's name and bytes, and the records it holds. `bad_groups` are the first rows
    of Parquet row groups made unreadable: their rows are quarantined as one."""

    name: str
    data: bytes
    records: list[Record]
    bad_groups: list[tuple[int, int]] = field(default_factory=list)

    def quarantined_as_group(self, record: Record) -> int | None:
        for first, last in self.bad_groups:
            if first <= record.line <= last:
                return first
        return None


def wrapped(text: str) -> str:
    return f"{_OPEN}{text}{_CLOSE}"


@st.composite
def times(draw, utc: datetime) -> str:
    """`utc` written as the page might: "T" or space, Z, ±HH:MM, ±HHMM, ±HH or no offset
    (read as UTC), with or without fractional seconds."""
    if draw(st.booleans()):
        minutes = draw(st.integers(-14 * 4, 14 * 4)) * 15
        zone = draw(st.sampled_from(("colon", "plain", "hours" if minutes % 60 == 0 else "colon")))
    else:
        minutes, zone = 0, draw(st.sampled_from(("Z", "naive", "colon")))
    local = utc + timedelta(minutes=minutes)
    sep = draw(st.sampled_from("T "))
    fraction = f".{local.microsecond:06d}" if local.microsecond else ""
    text = local.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + fraction
    sign, rest = ("-" if minutes < 0 else "+"), abs(minutes)
    offset = {
        "Z": "Z",
        "naive": "",
        "colon": f"{sign}{rest // 60:02d}:{rest % 60:02d}",
        "plain": f"{sign}{rest // 60:02d}{rest % 60:02d}",
        "hours": f"{sign}{rest // 60:02d}",
    }[zone]
    return text + offset


_INSTANTS = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2098, 12, 31), timezones=st.just(UTC)
)


@st.composite
def rows(
    draw, ids: list[str], damages: tuple[str, ...], custom_limit: int
) -> tuple[dict, str | None]:
    """(fields as the page would send them, the damage or None). Values are Python
    objects; `custom` is a dict (a JSON object) unless damaged."""
    damage = draw(st.one_of(st.none(), st.sampled_from(damages)))
    started = draw(_INSTANTS)
    fields: dict = {
        "session_id": draw(st.sampled_from(ids)),
        "billing_system": draw(st.sampled_from(BILLING_SYSTEMS)),
        "billing_id": wrapped(draw(_TEXT)),
        "started_at": draw(times(started)),
    }
    fields["_utc"] = started
    action = draw(st.sampled_from((None, *ACTIONS)))
    if action:
        fields["action"] = action
        fields["action_at"] = draw(
            times(started + draw(st.timedeltas(timedelta(0), timedelta(days=40))))
        )
    if action == "offer_accepted" or draw(st.booleans()):
        fields["offer_type"] = draw(st.sampled_from(OFFER_TYPES))
        fields["offer_id"] = wrapped(draw(_TEXT))
    for name in ("app_id", "email", "page_id", "cancel_reason"):
        if draw(st.booleans()):
            fields[name] = wrapped(draw(_TEXT))
    if draw(st.booleans()):
        fields["custom"] = draw(
            st.dictionaries(_TEXT, _TEXT | st.integers(-(2**53), 2**53), max_size=3)
        )
    if damage in ROW_DAMAGE:
        _damage_row(draw, fields, damage, started, custom_limit)
    return fields, damage


def _damage_row(draw, fields: dict, damage: str, started: datetime, custom_limit: int) -> None:
    if damage == "unknown_billing_system":
        fields["billing_system"] = draw(st.sampled_from(("paypal", "Stripe", "STRIPE", "strípe")))
    elif damage == "missing_required":
        name = draw(st.sampled_from(("session_id", "billing_system", "billing_id", "started_at")))
        if draw(st.booleans()):
            del fields[name]
        else:
            fields[name] = draw(st.sampled_from(("", "   ", "\t")))
    elif damage == "bad_time":
        fields[draw(st.sampled_from(("started_at", "action_at")))] = draw(
            st.sampled_from(_BAD_TIMES)
        )
    elif damage == "action_before_start":
        fields["action"] = draw(st.sampled_from(ACTIONS))
        fields["offer_type"] = draw(st.sampled_from(OFFER_TYPES))
        before = draw(st.timedeltas(timedelta(seconds=1), timedelta(days=40)))
        fields["action_at"] = draw(times(started - before))
    elif damage == "action_without_time":
        fields["action"] = draw(st.sampled_from(ACTIONS))
        fields.pop("action_at", None)
    elif damage == "offer_without_type":
        fields["action"] = "offer_accepted"
        fields["action_at"] = fields["started_at"]
        fields.pop("offer_type", None)
    elif damage == "unknown_offer_type":
        fields["offer_type"] = draw(st.sampled_from(("coupon", "Pause", "free_month")))
    elif damage == "unknown_action":
        fields["action"] = draw(st.sampled_from(("cancelled", "saved", "Canceled")))
    elif damage == "custom_not_object":
        fields["custom"] = draw(
            st.sampled_from(([1, 2], "seats", 3, "{broken", '["a"]', '{"a": }'))
        )
    elif damage == "huge_custom":
        size = draw(st.integers(custom_limit, custom_limit * 3))
        fields["custom"] = {"blob": "x" * size}
    elif damage == "nul":
        name = draw(st.sampled_from(("billing_id", "cancel_reason", "session_id")))
        fields[name] = f"{fields.get(name) or 'v'}\x00{draw(_TEXT)}"


def _record(line: int, fields: dict, damage: str | None) -> Record:
    sid = fields.get("session_id")
    return Record(line, sid, damage, fields["_utc"], fields.get("cancel_reason"))


def _custom_text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


# ---------------------------------------------------------------- encodings

_ENCODINGS = ("utf-8", "utf-8-bom", "utf-16-le", "utf-16-be")
_BOM = {
    "utf-8": b"",
    "utf-8-bom": b"\xef\xbb\xbf",
    "utf-16-le": b"\xff\xfe",
    "utf-16-be": b"\xfe\xff",
}
# Bytes that are not text in the file's encoding: invalid UTF-8 (a stray byte, Latin-1
# "é", a cut multi-byte sequence), or a lone UTF-16 surrogate.
_BAD_BYTES = {
    "utf-8": (b"\xff", b"\xe9", b"\xc3"),
    "utf-16-le": (b"\x00\xd8",),
    "utf-16-be": (b"\xd8\x00",),
}


def _encode(text: str, encoding: str) -> bytes:
    return text.encode("utf-8" if encoding == "utf-8-bom" else encoding)


def _with_bad_bytes(draw, text: str, encoding: str) -> bytes:
    """`text` encoded, with undecodable bytes put just before its last `>` (billing_id is
    wrapped in `<>`) or, in a CSV file without billing_id, its first comma: the record is
    whole but for them."""
    cut = text.rindex(_CLOSE) if _CLOSE in text else text.index(",")
    bad = draw(st.sampled_from(_BAD_BYTES.get(encoding, _BAD_BYTES["utf-8"])))
    return _encode(text[:cut], encoding) + bad + _encode(text[cut:], encoding)


# ---------------------------------------------------------------- JSON Lines


@st.composite
def jsonl_drops(
    draw,
    name: str = "drop.jsonl",
    custom_limit: int = SMALL_CUSTOM_LIMIT,
    ids: list[str] | None = None,
) -> Drop:
    ids = ids or draw(id_pools())
    encoding = draw(st.sampled_from(_ENCODINGS))
    damages = ROW_DAMAGE + TEXT_DAMAGE + JSONL_DAMAGE
    newline = draw(st.sampled_from(("\n", "\r\n")))
    chunks: list[bytes] = []
    records: list[Record] = []
    for fields, damage in draw(st.lists(rows(ids, damages, custom_limit), max_size=12)):
        for _ in range(draw(st.integers(0, 1))):  # blank lines are skipped, not records
            chunks.append(_encode(draw(st.sampled_from(("", "  "))) + newline, encoding))
        line = len(chunks) + 1
        body = {k: v for k, v in fields.items() if not k.startswith("_")}
        # Keys the contract does not know are ignored, even the names of lineage columns.
        body |= draw(
            st.dictionaries(_UNKNOWN_KEYS, _TEXT | st.integers(0, 9) | st.none(), max_size=2)
        )
        if damage == "wrong_type":
            key, value = draw(
                st.sampled_from(
                    (
                        ("session_id", {"id": 1}),
                        ("session_id", ["s1"]),
                        ("billing_id", True),
                        ("billing_id", {"id": "sub_1"}),
                        ("started_at", 1712000000),
                        ("started_at", {"date": "2026-04-02"}),
                        ("action", False),
                    )
                )
            )
            body[key] = value
        text = orjson.dumps(body).decode()
        if damage == "truncated":
            text = text[: draw(st.integers(1, len(text) - 1))]
        elif damage == "not_an_object":
            text = orjson.dumps(draw(st.sampled_from(([body], "text", 3, None)))).decode()
        if damage == "bad_bytes":
            data = _with_bad_bytes(draw, text, encoding)
        else:
            data = _encode(text, encoding)
        chunks.append(data + _encode(newline, encoding))
        records.append(_record(line, fields, damage))
    if chunks and draw(st.booleans()):  # no newline at the end of the file
        chunks[-1] = chunks[-1][: -len(_encode(newline, encoding))]
    return Drop(name, _BOM[encoding] + b"".join(chunks), records)


# ---------------------------------------------------------------- CSV

_CSV_COLUMNS = [c for c in COLUMNS if c != "custom"]


@st.composite
def csv_drops(
    draw,
    name: str = "drop.csv",
    custom_limit: int = SMALL_CUSTOM_LIMIT,
    ids: list[str] | None = None,
) -> Drop:
    ids = ids or draw(id_pools())
    encoding = draw(st.sampled_from(_ENCODINGS))
    if draw(st.integers(0, 19)) == 0:  # an empty file: nothing to load, nothing wrong
        return Drop(name, _BOM[encoding], [])
    damages = ROW_DAMAGE + TEXT_DAMAGE + CSV_DAMAGE
    optional = [c for c in _CSV_COLUMNS if c in ("app_id", "email", "page_id", "offer_id")]
    dropped = draw(st.sets(st.sampled_from(optional)))
    # Without a required column every record of the file is quarantined.
    no_billing_id = draw(st.integers(0, 9)) == 0
    if no_billing_id:
        dropped.add("billing_id")
    extra = draw(st.sampled_from(((), ("utm_source",))))
    # `custom` last: a truncated record then always loses a whole field (see _truncate).
    header = [c for c in _CSV_COLUMNS if c not in dropped] + list(extra) + ["custom"]
    text = _csv_line(header)
    chunks = [_encode(text, encoding)]
    lines = 1 + _line_breaks(text)
    # A header without a required column is itself quarantined (line 1).
    records: list[Record] = [Record(1, None, "missing_column")] if no_billing_id else []
    for fields, damage in draw(st.lists(rows(ids, damages, custom_limit), max_size=12)):
        if draw(st.integers(0, 4)) == 0:  # a blank line is skipped, not a record
            chunks.append(_encode("\r\n", encoding))
            lines += 1
        values = [
            "x"
            if c == "utm_source"
            else _custom_text(fields.get(c))
            if c == "custom"
            else fields.get(c)
            for c in header
        ]
        text = _csv_line(values)
        if damage == "truncated":
            text = _truncate(draw, text)
        elif damage == "extra_field":
            text = text[:-2] + ",x\r\n"
        if damage == "bad_bytes":
            data = _with_bad_bytes(draw, text, encoding)
        else:
            data = _encode(text, encoding)
        chunks.append(data)
        damage = damage or ("missing_column" if no_billing_id else None)
        records.append(_record(lines, fields, damage))
        lines += _line_breaks(text)
    if len(chunks) > 1 and draw(st.booleans()):  # no line break at the end of the file
        chunks[-1] = chunks[-1][: -len(_encode("\r\n", encoding))]
    return Drop(name, _BOM[encoding] + b"".join(chunks), records)


def _csv_line(values: list) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()


def _line_breaks(text: str) -> int:
    """Line breaks as the reader counts them (io's rule: LF, CRLF or CR)."""
    return len(io.StringIO(text, newline="").readlines())


def _truncate(draw, text: str) -> str:
    """The record cut off before its last top-level comma, never inside quotes (an open
    quote would run on into the next records, which CSV cannot tell from a long value):
    it has fewer fields than the header, followed by a line break."""
    commas, quoted = [], False
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            commas.append(index)
    cut = draw(st.integers(1, commas[-1]))
    opened = [i for i, char in enumerate(text[:cut]) if char == '"']
    if len(opened) % 2:
        cut = opened[-1]
    return text[: max(cut, 1)] + "\r\n"


# ---------------------------------------------------------------- Parquet

_TIME_TYPES = ("text", "utc", "utc-ns", "Asia/Kolkata", "America/St_Johns", "naive")
# started_at columns of a type that is not a time: every row of the file is quarantined.
_WRONG_TIME_TYPES = ("epoch", "date")


@st.composite
def parquet_drops(
    draw,
    name: str = "drop.parquet",
    custom_limit: int = SMALL_CUSTOM_LIMIT,
    ids: list[str] | None = None,
) -> Drop:
    ids = ids or draw(id_pools())
    generated = draw(st.lists(rows(ids, ROW_DAMAGE, custom_limit), max_size=12))
    time_type = draw(st.sampled_from(_TIME_TYPES + _WRONG_TIME_TYPES))
    columns: dict[str, list] = {c: [] for c in COLUMNS}
    records = []
    for number, (fields, damage) in enumerate(generated, start=1):
        for c in COLUMNS:
            value = fields.get(c)
            columns[c].append(_custom_text(value) if c == "custom" else value)
        if time_type in _WRONG_TIME_TYPES:
            damage = damage or "started_at_type"
        records.append(_record(number, fields, damage))
    table = pa.table({c: pa.array(v, pa.string()) for c, v in columns.items()})
    if draw(st.booleans()):  # a column the contract does not read is left alone
        kind = draw(st.sampled_from(sorted(_EXTRA_COLUMNS)))
        table = table.append_column(kind, _EXTRA_COLUMNS[kind](len(generated)))
    if time_type != "text":
        table = table.set_column(
            COLUMNS.index("started_at"),
            "started_at",
            _typed_times(generated, time_type),
        )
    group_size = draw(st.integers(1, 5))
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=group_size, compression="none")
    data = sink.getvalue()
    bad_groups = []
    groups = pq.ParquetFile(io.BytesIO(data)).metadata.num_row_groups
    if groups > 1 and draw(st.booleans()):
        index = draw(st.integers(0, groups - 1))
        data = _corrupt_group(data, index)
        first = index * group_size + 1
        bad_groups.append((first, min(first + group_size - 1, len(records))))
    return Drop(name, data, records, bad_groups)


# Columns of types polars cannot cast to text, or nested ones, that a page's export may add.
_EXTRA_COLUMNS = {
    "utm": lambda n: pa.array([{"source": "ads"}] * n, pa.struct([("source", pa.string())])),
    "time_on_page": lambda n: pa.array([timedelta(seconds=5)] * n, pa.duration("us")),
    "prices": lambda n: pa.array([[Decimal("1.50")]] * n, pa.list_(pa.decimal128(5, 2))),
    "labels": lambda n: pa.array([[("k", "v")]] * n, pa.map_(pa.string(), pa.string())),
}


def _typed_times(generated: list[tuple[dict, str | None]], time_type: str) -> pa.Array:
    """started_at as a Parquet timestamp column: valid times as the instant (in the
    column's zone, or naive UTC), anything else null (a typed column cannot hold bad text)."""
    instants = [
        fields["_utc"] if _is_time(fields.get("started_at")) else None for fields, _ in generated
    ]
    aware = pa.array(instants, pa.timestamp("us", tz="UTC"))
    if time_type == "naive":
        return aware.cast(pa.timestamp("us"))
    if time_type == "epoch":
        return pa.array([i and int(i.timestamp()) for i in instants], pa.int64())
    if time_type == "date":
        return pa.array([i and i.date() for i in instants], pa.date32())
    if time_type == "utc-ns":
        return aware.cast(pa.timestamp("ns", tz="UTC"))
    zone = "UTC" if time_type == "utc" else time_type
    return aware.cast(pa.timestamp("us", tz=zone))


def _is_time(text: str | None) -> bool:
    return bool(text and text.strip()) and text not in _BAD_TIMES


def _corrupt_group(data: bytes, index: int) -> bytes:
    """The first column chunk of row group `index` overwritten with 0xFF, page header
    included, so reading that group fails and the others do not."""
    column = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(index).column(0)
    start = column.dictionary_page_offset if column.has_dictionary_page else column.data_page_offset
    size = column.total_compressed_size
    return data[:start] + b"\xff" * size + data[start + size :]


# ---------------------------------------------------------------- shared


def id_pools():
    """A few session ids per drop, so rows repeat ids (later rows update earlier ones)."""
    return st.lists(
        st.text(st.characters(categories=("L", "N"), codec="utf-8"), min_size=1, max_size=6).map(
            lambda t: f"s-{t}"
        ),
        min_size=1,
        max_size=4,
        unique=True,
    )


def any_drop(name: str, ids: list[str], custom_limit: int = SMALL_CUSTOM_LIMIT):
    """A drop of any format, named `name` + its suffix, its session ids drawn from `ids`
    (one pool for several drops makes later files update earlier ones)."""
    return st.one_of(
        jsonl_drops(f"{name}.jsonl", custom_limit, ids),
        csv_drops(f"{name}.csv", custom_limit, ids),
        parquet_drops(f"{name}.parquet", custom_limit, ids),
    )


# ---------------------------------------------------------------- the outcome


def expected_winners(drops: list[Drop]) -> dict[str, tuple[str, int]]:
    """session_id → (file, line) of the row that must be loaded: the last valid row of
    that id in landing order (drops in the order given, then line), validation.md §1."""
    winners: dict[str, tuple[str, int]] = {}
    for drop in drops:
        for record in drop.records:
            if record.valid and drop.quarantined_as_group(record) is None:
                winners[record.session_id] = (drop.name, record.line)
    return winners


def assert_outcome(drops: list[Drop], loaded: list[dict], quarantine: list[dict]) -> None:
    """Every valid row lands exactly once (as the winner of its id), every invalid row is
    in quarantine with a reason, its file and its line (or its row group's first row)."""
    by_place = {(d.name, r.line): r for d in drops for r in d.records}
    winners = expected_winners(drops)
    landed = [(row["_file"], row["_line"]) for row in loaded]
    assert len(landed) == len(set(landed)), "a row landed twice"
    assert {row["session_id"]: (row["_file"], row["_line"]) for row in loaded} == winners
    assert len(loaded) == len(winners), "two rows of one session_id landed"
    for row in loaded:
        record = by_place[(row["_file"], row["_line"])]
        assert row["started_at"] == record.started_at, (record, row)
        assert row["cancel_reason"] == record.cancel_reason, (record, row)
    places = {(row["_file"], row["_line"]) for row in quarantine}
    assert len(places) == len(quarantine), "a row quarantined twice"
    assert all(row["reason"] for row in quarantine), quarantine
    expected = set()
    for drop in drops:
        for record in drop.records:
            group = drop.quarantined_as_group(record)
            if group is not None:
                expected.add((drop.name, group))
            elif not record.valid:
                expected.add((drop.name, record.line))
    assert places == expected, {
        "missing": {p: by_place[p].damage for p in expected - places if p in by_place},
        "unexpected": [row for row in quarantine if (row["_file"], row["_line"]) not in expected],
    }
