"""The exit-session contract of validation.md §1, checked column-wise with polars.

Rows arrive as text (whatever the file format) with their file and line; `check` splits
them into typed good rows and quarantine rows that carry every reason the row broke the
contract, so one bad row never stops a load and nothing good is dropped.
"""

from __future__ import annotations

import polars as pl

from billing_clients.systems import BILLING_SYSTEMS

ACTIONS = ("canceled", "offer_accepted", "deflected")
OFFER_TYPES = ("pause", "discount", "extension", "plan_change", "custom")
TEXT_COLUMNS = (
    "session_id",
    "app_id",
    "billing_system",
    "billing_id",
    "email",
    "action",
    "offer_id",
    "offer_type",
    "page_id",
    "cancel_reason",
    "custom",
)
TIME_COLUMNS = ("started_at", "action_at")
COLUMNS = (*TEXT_COLUMNS[:5], "started_at", "action", "action_at", *TEXT_COLUMNS[6:])
LINEAGE = ("_file", "_line", "_landed_seq")
# Column a reader fills with why a row's values had the wrong type (JSON object in a text
# field, ...), before everything became text; null when nothing was wrong.
TYPE_ERRORS = "_type_errors"
REQUIRED = ("session_id", "billing_system", "billing_id", "started_at")
# The page's free-form `custom` JSON beyond this size is quarantined, not loaded: a
# warehouse column is no place for megabytes a page sent by mistake.
MAX_CUSTOM_BYTES = 64 * 1024

# RFC 3339 date-times, with "T" or a space between date and time (both are in RFC 3339
# section 5.6's note), with or without an offset.
_WITH_ZONE = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")
_NAIVE = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f")


def parse_time(column: str) -> pl.Expr:
    """ISO-8601 with an offset, converted to UTC; a time without offset is read as UTC
    (validation.md: times are UTC). Anything else is null, and reported as unparseable."""
    text = pl.col(column).str.strip_chars()
    return pl.coalesce(
        *(
            text.str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC")
            for f in _WITH_ZONE
        ),
        *(
            text.str.to_datetime(f, strict=False, time_unit="us").dt.replace_time_zone("UTC")
            for f in _NAIVE
        ),
    ).alias(column)


def normalise(frame: pl.DataFrame) -> pl.DataFrame:
    """Every contract column present as trimmed text; empty strings are nulls (an empty
    action means the visitor closed the page)."""
    missing = [
        pl.lit(None, dtype=pl.String).alias(c)
        for c in (*COLUMNS, TYPE_ERRORS)
        if c not in frame.columns
    ]
    frame = frame.with_columns(missing)
    return frame.select(
        *(pl.col(c).cast(pl.String).str.strip_chars().replace("", None).alias(c) for c in COLUMNS),
        pl.col(TYPE_ERRORS).cast(pl.String).replace("", None),
        *LINEAGE,
    )


def _reasons(max_custom_bytes: int) -> pl.Expr:
    checks: list[tuple[pl.Expr, str]] = [
        (pl.col(c).is_null(), f"{c} is required") for c in REQUIRED
    ]
    checks += [
        (
            pl.col("billing_system").is_not_null()
            & ~pl.col("billing_system").is_in(BILLING_SYSTEMS),
            "billing_system is not one of " + ", ".join(BILLING_SYSTEMS),
        ),
        (
            pl.col("action").is_not_null() & ~pl.col("action").is_in(ACTIONS),
            "action is not one of " + ", ".join(ACTIONS) + " or empty",
        ),
        (
            pl.col("offer_type").is_not_null() & ~pl.col("offer_type").is_in(OFFER_TYPES),
            "offer_type is not one of " + ", ".join(OFFER_TYPES),
        ),
        (
            (pl.col("action") == "offer_accepted") & pl.col("offer_type").is_null(),
            "offer_type is required when action is offer_accepted",
        ),
        (
            pl.col("started_at").is_not_null() & pl.col("_started").is_null(),
            "started_at is not a timestamp",
        ),
        (
            pl.col("action_at").is_not_null() & pl.col("_action").is_null(),
            "action_at is not a timestamp",
        ),
        (
            pl.col("action").is_not_null() & pl.col("action_at").is_null(),
            "action_at is required when action is set",
        ),
        (pl.col("_action") < pl.col("_started"), "action_at is before started_at"),
        (
            # json_path_match is null where the text is not JSON (one value, nothing after).
            pl.col("custom").is_not_null()
            & (
                ~pl.col("custom").str.starts_with("{")
                | pl.col("custom").str.json_path_match("$").is_null()
            ),
            "custom is not a JSON object",
        ),
        (
            pl.any_horizontal(pl.col(list(COLUMNS)).str.contains("\x00", literal=True)),
            "a value contains a NUL character (U+0000)",
        ),
        (
            pl.col("custom").str.len_bytes() > max_custom_bytes,
            f"custom is over {max_custom_bytes} bytes (SOURCES__EXIT_SESSIONS__MAX_CUSTOM_BYTES)",
        ),
    ]
    return pl.concat_str(
        [
            pl.col(TYPE_ERRORS),
            *(pl.when(cond.fill_null(False)).then(pl.lit(reason)) for cond, reason in checks),
        ],
        separator="; ",
        ignore_nulls=True,
    )


def check(
    frame: pl.DataFrame, max_custom_bytes: int = MAX_CUSTOM_BYTES
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(good rows typed per the contract, quarantine rows with `reason` and the raw row)."""
    frame = normalise(frame)
    checked = frame.with_columns(
        parse_time("started_at").alias("_started"), parse_time("action_at").alias("_action")
    ).with_columns(reason=_reasons(max_custom_bytes))
    bad = checked.filter(pl.col("reason") != "")
    good = (
        checked.filter(pl.col("reason") == "")
        .with_columns(started_at=pl.col("_started"), action_at=pl.col("_action"))
        .select(*COLUMNS, *LINEAGE)
    )
    quarantine = bad.select(
        *LINEAGE,
        "reason",
        pl.struct(*COLUMNS).struct.json_encode().alias("raw"),
    )
    return good, quarantine


def latest_per_session(good: pl.DataFrame) -> pl.DataFrame:
    """One row per session_id: the one landed last (files in landing order, then line),
    so a page's later update of a visit wins and identical repeats change nothing."""
    return good.unique(subset="session_id", keep="last", maintain_order=True)
