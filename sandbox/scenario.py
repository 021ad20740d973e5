"""The neutral scenario format (shared/spec/scenario.md) as a declared, validated schema.

A scenario states billing facts once, in one vocabulary; the emulators render it as each
API's native objects. Because tests compare the marts against these facts, a scenario
that breaks a rule is refused whole, with every problem named as
``section[index] (id).field: reason``, rather than served half-right.

The schema below is the single source of truth: `load_scenario` validates against it and
`describe_schema` prints it (``retention sandbox schema``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from sandbox.billing import plan_in_currency, subscription_currency

BILLING_SYSTEMS = ("stripe", "recurly", "chargebee")
INTERVALS = ("day", "week", "month", "year")
COUPON_DURATIONS = ("once", "repeating", "forever")
# An invoice's life, in neutral words each API spells its own way (draft: not yet issued;
# open: issued, not yet due; past_due: due and unpaid; uncollectible: given up on).
INVOICE_STATUSES = ("draft", "open", "past_due", "paid", "uncollectible", "void")
INVOICE_KINDS = ("charge", "credit")
DUNNING_STATES = ("past_due", "unpaid")
ACTIONS = ("canceled", "offer_accepted", "deflected")
OFFER_TYPES = ("pause", "discount", "extension", "plan_change", "custom")
PLAN_KINDS = ("plan", "addon", "charge")
USAGE_TYPES = ("licensed", "metered")
PRICING_MODELS = ("per_unit", "flat_fee", "package", "tiered", "volume", "stairstep")
TIER_MODELS = ("tiered", "volume", "stairstep")
# What each billing system can sell (its API has no way to say the rest): Stripe has
# prices only (a second price on a subscription is another item), no flat fee or
# stairstep; Recurly's plans are priced per unit and its add-ons fixed (per unit) or by
# tiers; one-time charges are not subscription items there.
SYSTEM_PRICING = {
    "stripe": {"plan": ("per_unit", "package", "tiered", "volume")},
    "recurly": {"plan": ("per_unit",), "addon": ("per_unit", "tiered", "volume", "stairstep")},
    "chargebee": {kind: PRICING_MODELS for kind in PLAN_KINDS},
}
CATALOG_KEY = "chargebee_product_catalog"  # optional top-level field: the Chargebee site's
CATALOGS = ("1.0", "2.0")  # Product Catalog version

# ISO 4217 minor-unit exponents that differ from 2, as Stripe's API uses them (Stripe's
# zero-decimal and three-decimal lists) and Recurly's decimals follow.
ZERO_DECIMAL_CURRENCIES = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
THREE_DECIMAL_CURRENCIES = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])
# Chargebee documents its own list: only these are sent in major units; every other
# currency, three-decimal ones included, in hundredths ("Currencies", API v2 reference).
CHARGEBEE_ZERO_DECIMAL_CURRENCIES = frozenset(["JPY", "KRW", "XAF", "XOF"])
_MONEY_RE = re.compile(r"^-?\d+(\.\d+)?$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


def currency_exponent(currency: str, system: str | None = None) -> int:
    """Decimal places of a currency's minor unit in `system`'s API amounts: ISO/Stripe
    JPY 0, USD 2, KWD 3; Chargebee 0 for its four zero-decimal currencies, else 2."""
    if system == "chargebee":
        return 0 if currency in CHARGEBEE_ZERO_DECIMAL_CURRENCIES else 2
    if currency in ZERO_DECIMAL_CURRENCIES:
        return 0
    return 3 if currency in THREE_DECIMAL_CURRENCIES else 2


def to_minor_units(amount: Decimal, currency: str, system: str | None = None) -> int:
    """Major-unit decimal to the integer minor units Stripe (default) or `system` sends."""
    return int((amount * (10 ** currency_exponent(currency, system))).to_integral_value())


class ScenarioError(ValueError):
    """A scenario broke the format; `problems` lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = "\n  ".join(problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"scenario refused, {len(problems)} problem(s):\n  {shown}{more}")


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Field:
    """One field of a section: its kind decides parsing, `required` whether null is allowed."""

    name: str
    kind: str  # id | ids | text | ts | money | money_map | decimal | int | currency | enum | json | tiers | items
    required: bool = False
    doc: str = ""
    choices: tuple[str, ...] = ()
    default: Any = None  # the value of an optional field left out


def _f(
    name: str, kind: str, doc: str, required: bool = False, choices=(), default: Any = None
) -> Field:
    return Field(name, kind, required, doc, tuple(choices), default)


_SYSTEM = _f("billing_system", "enum", "stripe, recurly or chargebee", True, BILLING_SYSTEMS)

SCHEMA: dict[str, tuple[Field, ...]] = {
    "plans": (
        _SYSTEM,
        _f("plan_id", "id", "Stripe price id, Recurly plan code, Chargebee item price id", True),
        _f("product_id", "id", "product (Stripe product, Chargebee item)", True),
        _f("product_name", "text", "product's display name", True),
        _f("currency", "currency", "ISO 4217 code", True),
        _f("unit_amount", "money", "price per unit per interval, major units", True),
        _f("interval", "enum", "billing interval", True, INTERVALS),
        _f("interval_count", "int", "intervals per billing period (>= 1)", True),
        _f(
            "kind",
            "enum",
            "plan (default), addon (recurring, on top of a plan) or charge (one-time)",
            False,
            PLAN_KINDS,
            "plan",
        ),
        _f(
            "usage_type",
            "enum",
            "licensed (billed on quantity, default) or metered (billed on usage: never in MRR)",
            False,
            USAGE_TYPES,
            "licensed",
        ),
        _f(
            "pricing_model",
            "enum",
            "per_unit (default), flat_fee, package, tiered (graduated), volume or stairstep; "
            "unit_amount is the unit's, the fee's or the package's price (0 with tiers)",
            False,
            PRICING_MODELS,
            "per_unit",
        ),
        _f("package_size", "int", "units per package, with pricing_model package (>= 2)"),
        _f(
            "tiers",
            "tiers",
            "with tiered/volume/stairstep: [{up_to, unit_amount, flat_amount}] ascending, "
            "the last up_to null (stairstep: each step's price is its flat_amount)",
        ),
        _f(
            "currency_options",
            "money_map",
            "Stripe and Recurly: the price in further currencies, {currency: unit_amount} "
            "(a Chargebee item price has one currency: add a plan per currency)",
        ),
        _f("archived_at", "ts", "when the plan was archived: no new sales, subscriptions go on"),
    ),
    "coupons": (
        _SYSTEM,
        _f("coupon_id", "id", "coupon id (Recurly coupon code)", True),
        _f("name", "text", "display name"),
        _f("percent_off", "decimal", "0 < percent_off <= 100; exactly one of percent/amount"),
        _f("amount_off", "money", "fixed discount, major units, with currency"),
        _f("currency", "currency", "currency of amount_off"),
        _f("duration", "enum", "how long the discount lasts", True, COUPON_DURATIONS),
        _f("duration_in_months", "int", "months, when duration is repeating"),
        _f(
            "redemption_resource",
            "enum",
            "Recurly only: account (the default, as Recurly's) or subscription level",
            False,
            ("account", "subscription"),
        ),
        _f("deleted_at", "ts", "when the coupon was deleted (expired): redemptions stay"),
    ),
    "customers": (
        _SYSTEM,
        _f("customer_id", "id", "Stripe cus_ id, Recurly account code, Chargebee id", True),
        _f("email", "text", "e-mail address"),
        _f("name", "text", "full name"),
        _f("created_at", "ts", "when the customer was created", True),
        _f(
            "coupon_id",
            "id",
            "Stripe only: a customer-level discount (applies to subscriptions without their own)",
        ),
        _f("deleted_at", "ts", "when the customer was deleted (every subscription ended by then)"),
    ),
    "subscriptions": (
        _SYSTEM,
        _f("subscription_id", "id", "native subscription id", True),
        _f("customer_id", "id", "owning customer of the same system", True),
        _f("plan_id", "id", "plan of the same system", True),
        _f("quantity", "int", "units (>= 1)", True),
        _f("currency", "currency", "the plan's currency (default) or one of its currency_options"),
        _f("coupon_id", "id", "applied coupon of the same system (the first, with several)"),
        _f("extra_coupon_ids", "ids", "further coupons applied after coupon_id, in order"),
        _f("created_at", "ts", "when the subscription was created", True),
        _f("activated_at", "ts", "start of paid or trial service", True),
        _f("trial_start", "ts", "trial start"),
        _f("trial_end", "ts", "trial end (after trial_start)"),
        _f("canceled_at", "ts", "when a cancel was requested; needs ended_at"),
        _f("ended_at", "ts", "when service ends/ended (>= activated_at)"),
        _f("paused_at", "ts", "pause start"),
        _f("resumes_at", "ts", "pause end; needs paused_at"),
        _f("dunning", "enum", "Stripe only: past_due or unpaid", False, DUNNING_STATES),
        _f(
            "items",
            "items",
            "items beyond plan_id: [{plan_id, quantity}] (add-ons, charges, metered or further "
            "prices) in the subscription's currency and, but charges, its billing period",
        ),
        _f(
            "term_cycles",
            "int",
            "Recurly and Chargebee: billing periods per term (a multi-cycle term that renews)",
        ),
        _f("pending_plan_id", "id", "a plan change scheduled for the current period's end"),
        _f("pending_quantity", "int", "the quantity of that change (default: unchanged)"),
        _f("deleted_at", "ts", "Chargebee only: the ended subscription was deleted then"),
        _f(
            "transferred_at",
            "ts",
            "Chargebee only: moved to another business entity then (status transferred; "
            "ended_at equals it)",
        ),
    ),
    "invoices": (
        _SYSTEM,
        _f("invoice_id", "id", "native invoice id (Recurly: number)", True),
        _f("customer_id", "id", "customer of the same system", True),
        _f("subscription_id", "id", "subscription of that customer"),
        _f("currency", "currency", "ISO 4217 code", True),
        _f("total", "money", "invoice total, major units (>= 0)", True),
        _f("status", "enum", "where the invoice stands", True, INVOICE_STATUSES),
        _f(
            "kind",
            "enum",
            "charge (default) or credit (Recurly only: a credit invoice, never money collected)",
            False,
            INVOICE_KINDS,
            "charge",
        ),
        _f("created_at", "ts", "when the invoice was issued", True),
        _f("paid_at", "ts", "when it was paid: set exactly when status is paid"),
    ),
    "exit_sessions": (
        _f("session_id", "id", "unique per visit", True),
        _f("app_id", "text", "cancel-flow app/site"),
        _SYSTEM,
        _f("billing_id", "id", "subscription id or customer id of that system", True),
        _f("email", "text", "visitor e-mail"),
        _f("started_at", "ts", "landing time", True),
        _f("action", "enum", "what the visitor did; null = closed the page", False, ACTIONS),
        _f("action_at", "ts", "set exactly when action is set; >= started_at"),
        _f("offer_id", "text", "accepted offer id"),
        _f("offer_type", "enum", "set with offer_accepted", False, OFFER_TYPES),
        _f("page_id", "text", "page variant shown (holdout = no offers)"),
        _f("cancel_reason", "text", "survey answer"),
        _f("custom", "json", "any extra JSON object the page sent"),
    ),
}

ID_FIELD = {
    "plans": "plan_id",
    "coupons": "coupon_id",
    "customers": "customer_id",
    "subscriptions": "subscription_id",
    "invoices": "invoice_id",
    "exit_sessions": "session_id",
}


def describe_schema() -> str:
    """The schema as a Markdown table per section (printed by `retention sandbox schema`)."""
    lines = [
        "Top level: as_of (timestamp, required), reporting_currency (ISO code, required),",
        "fx_rates (currency -> decimal string: reporting-currency units per 1 unit; every",
        'currency used needs one), chargebee_product_catalog (optional, "1.0" or "2.0",',
        'default "2.0": the Chargebee site\'s Product Catalog), then the sections below',
        "(arrays, may be empty).",
    ]
    for section, fields in SCHEMA.items():
        lines += [
            "",
            f"## {section}",
            "",
            "| field | kind | required | meaning |",
            "|---|---|---|---|",
        ]
        for f in fields:
            kind = f"{f.kind}: {'/'.join(f.choices)}" if f.choices else f.kind
            lines.append(f"| {f.name} | {kind} | {'yes' if f.required else 'no'} | {f.doc} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- parsing


def parse_ts(value: str) -> datetime:
    """ISO-8601 with an explicit UTC offset ('Z' or +00:00 style) to an aware UTC datetime."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("has no UTC offset (write e.g. 2026-06-30T00:00:00Z)")
    return parsed.astimezone(UTC)


def format_ts(value: datetime) -> str:
    """The scenario's own timestamp spelling: second precision, 'Z'."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_money(value: Any) -> Decimal:
    if not isinstance(value, str) or not _MONEY_RE.match(value):
        raise ValueError(f'{value!r} is not a decimal string such as "49.00"')
    return Decimal(value)


def _parse_decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a number")
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a number") from exc


def _parse_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer")
    return value


def _parse_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def _parse_id(value: Any) -> str:
    text = _parse_text(value)
    if not text.strip():
        raise ValueError("is empty")
    return text


def _parse_ts_field(value: Any) -> datetime:
    try:
        return parse_ts(_parse_text(value))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an ISO-8601 UTC timestamp: {exc}") from None


def _parse_currency(value: Any) -> str:
    if not isinstance(value, str) or not _CURRENCY_RE.match(value):
        raise ValueError(f"{value!r} is not an upper-case ISO 4217 code")
    return value


def _parse_json(value: Any) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{value!r} is not a JSON object")
    return value


def _parse_tiers(value: Any) -> list[dict]:
    """[{up_to, unit_amount, flat_amount}]: ascending inclusive bounds, the last open."""
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty array of tiers")
    tiers, above = [], 0
    for n, tier in enumerate(value, start=1):
        if not isinstance(tier, dict) or tier.keys() - {"up_to", "unit_amount", "flat_amount"}:
            raise ValueError(f"tier {n} must be an object of up_to, unit_amount, flat_amount")
        up_to = tier.get("up_to")
        last = n == len(value)
        if last != (up_to is None):
            raise ValueError(f"tier {n}: only the last tier has no up_to, and it has none")
        if up_to is not None and (_parse_int(up_to) <= above):
            raise ValueError(f"tier {n}: up_to {up_to} must be above {above}")
        tiers.append(
            {
                "up_to": up_to,
                "unit_amount": _parse_money(tier.get("unit_amount", "0")),
                "flat_amount": _parse_money(tier.get("flat_amount", "0")),
            }
        )
        above = up_to or above
    return tiers


def _parse_money_map(value: Any) -> dict[str, Decimal]:
    """{currency: "amount"}."""
    if not isinstance(value, dict) or not value:
        raise ValueError('must be a non-empty object of currency -> amount, e.g. {"EUR": "45.00"}')
    return {_parse_currency(code): _parse_money(amount) for code, amount in value.items()}


def _parse_ids(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty array of ids")
    ids = [_parse_id(v) for v in value]
    if len(set(ids)) != len(ids):
        raise ValueError("names an id twice")
    return ids


def _parse_items(value: Any) -> list[dict]:
    """[{plan_id, quantity}]: quantity defaults to 1."""
    if not isinstance(value, list):
        raise ValueError("must be an array of {plan_id, quantity}")
    items = []
    for n, item in enumerate(value, start=1):
        if not isinstance(item, dict) or item.keys() - {"plan_id", "quantity"}:
            raise ValueError(f"item {n} must be an object of plan_id and quantity")
        quantity = _parse_int(item.get("quantity", 1))
        if quantity < 1:
            raise ValueError(f"item {n}: quantity must be >= 1")
        items.append({"plan_id": _parse_id(item.get("plan_id")), "quantity": quantity})
    return items


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "id": _parse_id,
    "text": _parse_text,
    "ts": _parse_ts_field,
    "money": _parse_money,
    "decimal": _parse_decimal,
    "int": _parse_int,
    "currency": _parse_currency,
    "json": _parse_json,
    "tiers": _parse_tiers,
    "items": _parse_items,
    "money_map": _parse_money_map,
    "ids": _parse_ids,
}


# --------------------------------------------------------------------------- scenario


@dataclass
class Scenario:
    """A validated scenario: records keep the scenario's field names, with parsed values
    (aware UTC datetimes, Decimal money, int counts)."""

    as_of: datetime
    reporting_currency: str
    fx_rates: dict[str, Decimal]
    plans: list[dict] = field(default_factory=list)
    coupons: list[dict] = field(default_factory=list)
    customers: list[dict] = field(default_factory=list)
    subscriptions: list[dict] = field(default_factory=list)
    invoices: list[dict] = field(default_factory=list)
    exit_sessions: list[dict] = field(default_factory=list)
    chargebee_product_catalog: str = "2.0"

    def for_system(self, section: str, system: str) -> list[dict]:
        """The records of one section that belong to one billing system."""
        return [r for r in getattr(self, section) if r["billing_system"] == system]


class _Problems:
    """Collects problems with the object and field they concern."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, reason: str) -> None:
        self.items.append(f"{where}: {reason}")


def _where(section: str, index: int, record: dict, field_name: str | None = None) -> str:
    ident = record.get(ID_FIELD[section]) if isinstance(record, dict) else None
    system = record.get("billing_system") if isinstance(record, dict) else None
    label = f"{section}[{index}]"
    if ident is not None:
        label += f" ({system} {ident})" if system else f" ({ident})"
    return f"{label}.{field_name}" if field_name else label


def _parse_section(section: str, raw: Any, problems: _Problems) -> list[dict]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.add(section, "must be a JSON array")
        return []
    fields = SCHEMA[section]
    known = {f.name for f in fields}
    out = []
    for index, record in enumerate(raw):
        if not isinstance(record, dict):
            problems.add(f"{section}[{index}]", "must be a JSON object")
            continue
        parsed: dict[str, Any] = {}
        for name in record.keys() - known:
            problems.add(_where(section, index, record, name), "unknown field")
        for f in fields:
            value = record.get(f.name)
            if value is None:
                if f.required:
                    problems.add(_where(section, index, record, f.name), "is required")
                parsed[f.name] = f.default
                continue
            try:
                if f.kind == "enum":
                    if value not in f.choices:
                        raise ValueError(f"{value!r} is not one of {', '.join(f.choices)}")
                    parsed[f.name] = value
                else:
                    parsed[f.name] = _PARSERS[f.kind](value)
            except ValueError as exc:
                problems.add(_where(section, index, record, f.name), str(exc))
                parsed[f.name] = None
        out.append(parsed)
    return out


def _check_unique(section: str, records: list[dict], problems: _Problems) -> None:
    key_field = ID_FIELD[section]
    seen: set[tuple] = set()
    for index, r in enumerate(records):
        # Session ids are unique across systems; billing ids only within their system.
        system = None if section == "exit_sessions" else r.get("billing_system")
        key = (system, r[key_field])
        if r[key_field] is None:
            continue
        if key in seen:
            problems.add(_where(section, index, r, key_field), f"duplicate id {r[key_field]!r}")
        seen.add(key)


def _check_money_places(where: str, amount: Decimal | None, r: dict, p: _Problems):
    """An amount (of record `r`) needs no more decimals than its system's API carries
    (KWD: 3 on Stripe and Recurly, 2 on Chargebee)."""
    currency = r["currency"]
    if amount is None or currency is None:
        return
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > currency_exponent(currency, r["billing_system"]):
        p.add(where, f"{amount} has more decimals than {currency} allows")


def _index(records: Iterable[dict], key: str) -> dict[tuple[str, str], dict]:
    return {(r["billing_system"], r[key]): r for r in records if r.get(key) is not None}


def _check_order(where: Callable[[str], str], r: dict, early: str, late: str, p: _Problems):
    if r.get(early) and r.get(late) and r[late] < r[early]:
        p.add(where(late), f"is before {early}")


def _check_plans(s: Scenario, p: _Problems) -> None:
    for i, r in enumerate(s.plans):
        if r["interval_count"] is not None and r["interval_count"] < 1:
            p.add(_where("plans", i, r, "interval_count"), "must be >= 1")
        if r["unit_amount"] is not None and r["unit_amount"] < 0:
            p.add(_where("plans", i, r, "unit_amount"), "must be >= 0")
        _check_money_places(_where("plans", i, r, "unit_amount"), r["unit_amount"], r, p)
        w = lambda name, i=i, r=r: _where("plans", i, r, name)  # noqa: E731
        _check_pricing(w, r, p)
        _check_currency_options(w, r, s, p)
        _check_past(w, r, "archived_at", s.as_of, p)


def _check_currency_options(w: Callable[[str], str], r: dict, s: Scenario, p: _Problems):
    """Further currencies of one price: Stripe `currency_options`, Recurly `currencies`."""
    options = r["currency_options"]
    if not options:
        return
    if r["billing_system"] == "chargebee":
        p.add(
            w("currency_options"), "a Chargebee item price has one currency: add one per currency"
        )
    if r["tiers"] is not None:
        p.add(w("currency_options"), "are for plans without tiers")
    for code, amount in options.items():
        if code == r["currency"]:
            p.add(w(f"currency_options.{code}"), "is the plan's own currency")
        if code not in s.fx_rates:
            p.add(w(f"currency_options.{code}"), f"{code} has no rate in fx_rates")
        if amount < 0:
            p.add(w(f"currency_options.{code}"), "must be >= 0")
        _check_money_places(w(f"currency_options.{code}"), amount, {**r, "currency": code}, p)


def _check_past(w: Callable[[str], str], r: dict, name: str, as_of: datetime, p: _Problems):
    """A deletion or archiving the scenario states has happened by as_of."""
    if r.get(name) is not None and r[name] > as_of:
        p.add(w(name), "is after as_of")


def _check_pricing(w: Callable[[str], str], r: dict, p: _Problems) -> None:
    """A plan's kind and pricing model exist on its billing system, with what they need."""
    allowed = SYSTEM_PRICING[r["billing_system"]] if r["billing_system"] else {}
    if r["kind"] not in allowed:
        p.add(w("kind"), f"{r['kind']} is not sold on {r['billing_system']}")
    elif r["pricing_model"] not in allowed[r["kind"]]:
        p.add(
            w("pricing_model"),
            f"a {r['billing_system']} {r['kind']} is priced {', '.join(allowed[r['kind']])}",
        )
    tiered = r["pricing_model"] in TIER_MODELS
    if tiered != (r["tiers"] is not None):
        p.add(w("tiers"), "are required exactly with pricing_model tiered, volume or stairstep")
    if (r["pricing_model"] == "package") != (r["package_size"] is not None):
        p.add(w("package_size"), "is required exactly with pricing_model package")
    elif r["package_size"] is not None and r["package_size"] < 2:
        p.add(w("package_size"), "must be >= 2")
    if r["kind"] == "charge" and r["usage_type"] == "metered":
        p.add(w("usage_type"), "a one-time charge is not metered")
    for n, tier in enumerate(r["tiers"] or [], start=1):
        for amount in ("unit_amount", "flat_amount"):
            _check_money_places(w(f"tiers[{n}].{amount}"), tier[amount], r, p)
        if r["pricing_model"] == "stairstep" and tier["unit_amount"]:
            p.add(w(f"tiers[{n}].unit_amount"), "must be 0: a step's price is its flat_amount")
        if (
            r["billing_system"] == "recurly"
            and r["pricing_model"] != "stairstep"
            and tier["flat_amount"]
        ):
            p.add(w(f"tiers[{n}].flat_amount"), "must be 0: a Recurly tier has one per-unit price")
        if r["billing_system"] == "chargebee" and tier["unit_amount"] and tier["flat_amount"]:
            p.add(w(f"tiers[{n}]"), "a Chargebee tier has one price: per unit or flat, not both")


def _check_coupons(s: Scenario, p: _Problems) -> None:
    for i, r in enumerate(s.coupons):
        w = lambda name, i=i, r=r: _where("coupons", i, r, name)  # noqa: E731
        if (r["percent_off"] is None) == (r["amount_off"] is None):
            p.add(w("percent_off"), "exactly one of percent_off and amount_off must be set")
        if r["percent_off"] is not None and not (0 < r["percent_off"] <= 100):
            p.add(w("percent_off"), "must be in (0, 100]")
        if r["amount_off"] is not None and r["currency"] is None:
            p.add(w("currency"), "is required with amount_off")
        _check_money_places(w("amount_off"), r["amount_off"], r, p)
        if r["duration"] == "repeating" and not r["duration_in_months"]:
            p.add(w("duration_in_months"), "is required when duration is repeating")
        _check_past(w, r, "deleted_at", s.as_of, p)


def _check_customers(s: Scenario, p: _Problems) -> None:
    """A customer-level coupon is Stripe's; a deleted customer's subscriptions had ended."""
    coupons = _index(s.coupons, "coupon_id")
    ends: dict[tuple, list] = {}
    for sub in s.subscriptions:
        ends.setdefault((sub["billing_system"], sub["customer_id"]), []).append(sub["ended_at"])
    for i, r in enumerate(s.customers):
        w = lambda name, i=i, r=r: _where("customers", i, r, name)  # noqa: E731
        system = r["billing_system"]
        if r["coupon_id"] is not None:
            if system != "stripe":
                p.add(w("coupon_id"), "is Stripe only (Recurly: an account-level redemption)")
            elif (system, r["coupon_id"]) not in coupons:
                p.add(w("coupon_id"), f"unknown coupon {r['coupon_id']!r} in {system}")
        _check_past(w, r, "deleted_at", s.as_of, p)
        deleted = r["deleted_at"]
        if deleted is not None and any(
            end is None or end > deleted for end in ends.get((system, r["customer_id"]), [])
        ):
            p.add(w("deleted_at"), "every subscription of a deleted customer ends by then")


def _check_subscriptions(s: Scenario, p: _Problems) -> None:
    customers = _index(s.customers, "customer_id")
    plans = _index(s.plans, "plan_id")
    coupons = _index(s.coupons, "coupon_id")
    for i, r in enumerate(s.subscriptions):
        w = lambda name, i=i, r=r: _where("subscriptions", i, r, name)  # noqa: E731
        system = r["billing_system"]
        for ref, index, what in (
            ("customer_id", customers, "customer"),
            ("plan_id", plans, "plan"),
            ("coupon_id", coupons, "coupon"),
        ):
            if r[ref] is not None and (system, r[ref]) not in index:
                p.add(w(ref), f"unknown {what} {r[ref]!r} in {system}")
        if r["quantity"] is not None and r["quantity"] < 1:
            p.add(w("quantity"), "must be >= 1")
        _check_order(w, r, "activated_at", "ended_at", p)
        _check_order(w, r, "trial_start", "trial_end", p)
        _check_order(w, r, "canceled_at", "ended_at", p)
        _check_order(w, r, "paused_at", "resumes_at", p)
        if r["canceled_at"] and not r["ended_at"]:
            p.add(w("ended_at"), "is required when canceled_at is set (the end of service)")
        if r["resumes_at"] and not r["paused_at"]:
            p.add(w("paused_at"), "is required when resumes_at is set")
        if r["dunning"] and system != "stripe":
            p.add(w("dunning"), "is Stripe only")
        if system == "stripe" and r["activated_at"] and r["activated_at"] > s.as_of:
            p.add(w("activated_at"), "is after as_of: Stripe has no future subscriptions")
        _check_items(w, r, plans, p)
        _check_extra_coupons(w, r, coupons, p)
        _check_lifecycle(w, r, s.as_of, p)
        _check_pending(w, r, plans, p)


def _check_extra_coupons(w: Callable[[str], str], r: dict, coupons: dict, p: _Problems):
    extra = r["extra_coupon_ids"] or []
    if extra and r["coupon_id"] is None:
        p.add(w("extra_coupon_ids"), "need coupon_id (the first applied)")
    for n, coupon_id in enumerate(extra, start=1):
        if (r["billing_system"], coupon_id) not in coupons:
            p.add(w(f"extra_coupon_ids[{n}]"), f"unknown coupon {coupon_id!r}")
        elif coupon_id == r["coupon_id"]:
            p.add(w(f"extra_coupon_ids[{n}]"), "is coupon_id again")


def _check_lifecycle(w: Callable[[str], str], r: dict, as_of: datetime, p: _Problems):
    """Terms, deletion and transfer exist on some systems only, and need an end."""
    system = r["billing_system"]
    if r["term_cycles"] is not None:
        if system == "stripe":
            p.add(w("term_cycles"), "Stripe has no multi-cycle terms")
        elif r["term_cycles"] < 1:
            p.add(w("term_cycles"), "must be >= 1")
    for name in ("deleted_at", "transferred_at"):
        if r[name] is None:
            continue
        if system != "chargebee":
            p.add(w(name), "is Chargebee only")
        _check_past(w, r, name, as_of, p)
        if r["ended_at"] is None:
            p.add(w("ended_at"), f"is required with {name}")
    _check_order(w, r, "ended_at", "deleted_at", p)
    if r["transferred_at"] is not None and r["transferred_at"] != r["ended_at"]:
        p.add(w("transferred_at"), "must equal ended_at (service moved on then)")


def _check_pending(w: Callable[[str], str], r: dict, plans: dict, p: _Problems):
    """A scheduled plan change: to a licensed plan sold in the subscription's currency."""
    if r["pending_plan_id"] is None:
        if r["pending_quantity"] is not None:
            p.add(w("pending_quantity"), "needs pending_plan_id")
        return
    plan = plans.get((r["billing_system"], r["pending_plan_id"]))
    if plan is None:
        p.add(w("pending_plan_id"), f"unknown plan {r['pending_plan_id']!r}")
    elif plan["kind"] != "plan" or plan["usage_type"] != "licensed":
        p.add(w("pending_plan_id"), "is not a licensed plan")
    elif plan_in_currency(plan, subscription_currency(r, plans)) is None:
        p.add(w("pending_plan_id"), "is not sold in the subscription's currency")
    if r["pending_quantity"] is not None and r["pending_quantity"] < 1:
        p.add(w("pending_quantity"), "must be >= 1")
    if r["canceled_at"] is not None or r["ended_at"] is not None:
        p.add(w("pending_plan_id"), "a subscription that ends has no scheduled change")


def _check_items(w: Callable[[str], str], r: dict, plans: dict, p: _Problems) -> None:
    """The plan is a licensed plan; every further item is another plan of the same system
    and currency, billed on the same period unless it is a one-time charge."""
    system, main = r["billing_system"], plans.get((r["billing_system"], r["plan_id"]))
    if main is None:
        return
    if main["kind"] != "plan" or main["usage_type"] != "licensed":
        p.add(w("plan_id"), f"{r['plan_id']!r} is not a licensed plan (add it under items)")
    currency = subscription_currency(r, plans)
    if plan_in_currency(main, currency) is None:
        p.add(w("currency"), f"{r['plan_id']!r} has no price in {currency}")
    seen = {r["plan_id"]}
    for n, item in enumerate(r["items"] or [], start=1):
        plan = plans.get((system, item["plan_id"]))
        where = w(f"items[{n}].plan_id")
        if plan is None:
            p.add(where, f"unknown plan {item['plan_id']!r} in {system}")
        elif item["plan_id"] in seen:
            p.add(where, f"{item['plan_id']!r} is on the subscription twice")
        elif plan_in_currency(plan, currency) is None:
            p.add(where, f"has no price in the subscription's currency {currency}")
        elif system == "recurly" and plan["kind"] == "plan":
            p.add(where, "a Recurly subscription has one plan: further items are add-ons")
        elif plan["kind"] != "charge" and (plan["interval"], plan["interval_count"]) != (
            main["interval"],
            main["interval_count"],
        ):
            p.add(where, "bills on another period than the plan")
        seen.add(item["plan_id"])


def _check_invoices(s: Scenario, p: _Problems) -> None:
    customers = _index(s.customers, "customer_id")
    subscriptions = _index(s.subscriptions, "subscription_id")
    for i, r in enumerate(s.invoices):
        w = lambda name, i=i, r=r: _where("invoices", i, r, name)  # noqa: E731
        system = r["billing_system"]
        if r["customer_id"] is not None and (system, r["customer_id"]) not in customers:
            p.add(w("customer_id"), f"unknown customer {r['customer_id']!r} in {system}")
        if r["subscription_id"] is not None:
            sub = subscriptions.get((system, r["subscription_id"]))
            if sub is None:
                p.add(w("subscription_id"), f"unknown subscription {r['subscription_id']!r}")
            elif sub["customer_id"] != r["customer_id"]:
                p.add(w("subscription_id"), f"belongs to customer {sub['customer_id']!r}")
        if r["total"] is not None and r["total"] < 0:
            p.add(w("total"), "must be >= 0")
        _check_money_places(w("total"), r["total"], r, p)
        if (r["status"] == "paid") != (r["paid_at"] is not None):
            p.add(w("paid_at"), "must be set exactly when status is paid")
        if r["kind"] == "credit":
            if system != "recurly":
                p.add(w("kind"), "credit invoices are Recurly's (elsewhere: credit notes)")
            if r["status"] not in ("open", "paid", "void"):
                p.add(w("status"), "a credit invoice is open, paid (fully applied) or void")
        _check_order(w, r, "created_at", "paid_at", p)


def _check_exit_sessions(s: Scenario, p: _Problems) -> None:
    for i, r in enumerate(s.exit_sessions):
        w = lambda name, i=i, r=r: _where("exit_sessions", i, r, name)  # noqa: E731
        if (r["action"] is None) != (r["action_at"] is None):
            p.add(w("action_at"), "must be set exactly when action is set")
        _check_order(w, r, "started_at", "action_at", p)
        if r["action"] == "offer_accepted" and r["offer_type"] is None:
            p.add(w("offer_type"), "is required when action is offer_accepted")


def _check_currencies(s: Scenario, p: _Problems) -> None:
    for section in ("plans", "coupons", "subscriptions", "invoices"):
        for i, r in enumerate(getattr(s, section)):
            currency = r.get("currency")
            if currency is not None and currency not in s.fx_rates:
                p.add(_where(section, i, r, "currency"), f"{currency} has no rate in fx_rates")


def _parse_header(doc: dict, p: _Problems) -> tuple[datetime | None, str | None, dict]:
    as_of = currency = None
    rates: dict[str, Decimal] = {}
    try:
        as_of = _parse_ts_field(doc.get("as_of"))
    except ValueError as exc:
        p.add("as_of", str(exc))
    try:
        currency = _parse_currency(doc.get("reporting_currency"))
    except ValueError as exc:
        p.add("reporting_currency", str(exc))
    raw_rates = doc.get("fx_rates")
    if not isinstance(raw_rates, dict):
        p.add("fx_rates", "must be an object of currency -> rate")
        raw_rates = {}
    for code, rate in raw_rates.items():
        try:
            rates[_parse_currency(code)] = _parse_money(rate)
        except ValueError as exc:
            p.add(f"fx_rates.{code}", str(exc))
    if currency and rates and rates.get(currency) != Decimal(1):
        p.add(f"fx_rates.{currency}", 'the reporting currency\'s rate must be "1"')
    for key in doc.keys() - {"as_of", "reporting_currency", "fx_rates", CATALOG_KEY, *SCHEMA}:
        p.add(key, "unknown top-level field")
    return as_of, currency, rates


def _parse_catalog(doc: dict, p: _Problems) -> str:
    """The Chargebee site's Product Catalog version ("1.0" or "2.0", default "2.0")."""
    value = doc.get(CATALOG_KEY, "2.0")
    if value not in CATALOGS:
        p.add(CATALOG_KEY, f"must be one of {', '.join(CATALOGS)}")
        return "2.0"
    return value


def validate_scenario(doc: Any) -> Scenario:
    """Parse and check a scenario document; raise ScenarioError naming every problem."""
    problems = _Problems()
    if not isinstance(doc, dict):
        raise ScenarioError(["scenario: must be a JSON object"])
    as_of, currency, rates = _parse_header(doc, problems)
    sections = {name: _parse_section(name, doc.get(name), problems) for name in SCHEMA}
    for name, records in sections.items():
        _check_unique(name, records, problems)
    scenario = Scenario(
        as_of=as_of,
        reporting_currency=currency,
        fx_rates=rates,
        chargebee_product_catalog=_parse_catalog(doc, problems),
        **sections,
    )
    if as_of is not None:
        for check in (
            _check_plans,
            _check_coupons,
            _check_customers,
            _check_subscriptions,
            _check_invoices,
            _check_exit_sessions,
            _check_currencies,
        ):
            check(scenario, problems)
    if problems.items:
        raise ScenarioError(problems.items)
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; errors name the file."""
    path = Path(path)
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ScenarioError([f"{path}: no such file"]) from None
    except orjson.JSONDecodeError as exc:
        raise ScenarioError([f"{path}: not valid JSON ({exc})"]) from None
    return validate_scenario(doc)
