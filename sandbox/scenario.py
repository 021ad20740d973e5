"""The neutral scenario format (docs/spec/scenario.md) as pydantic models.

A scenario states billing facts once, in one vocabulary; the emulators render it as each
API's native objects. Because tests compare the marts against these facts, a scenario
that breaks a rule is refused whole, with every problem named as
``section[index] (id).field: reason``, rather than served half-right.

The models below are the single definition of the format: they parse and check each
field, and give the JSON Schema (`json_schema`, printed by ``retention sandbox schema``).
Rules that span fields or records (references, order of dates, what each billing system
can express) are a second pass over the parsed records, so that one load names every
problem at once.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, Union, get_args, get_origin

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo

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
REDEMPTION_RESOURCES = ("account", "subscription")
# What each billing system can sell (its API has no way to say the rest): Stripe has
# prices only (a second price on a subscription is another item), no flat fee or
# stairstep; Recurly's plans are priced per unit and its add-ons fixed (per unit) or by
# tiers; one-time charges are not subscription items there.
SYSTEM_PRICING = {
    "stripe": {"plan": ("per_unit", "package", "tiered", "volume")},
    "recurly": {"plan": ("per_unit",), "addon": ("per_unit", "tiered", "volume", "stairstep")},
    "chargebee": {kind: PRICING_MODELS for kind in PLAN_KINDS},
}
CATALOGS = ("1.0", "2.0")  # the Chargebee site's Product Catalog version

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


# --------------------------------------------------------------------------- field kinds


@dataclass(frozen=True)
class Kind:
    """What a field holds, as the scenario names it (the generator reads `name`: "ts"
    columns are written as timestamps), and what to say when a value is not of it.

    pydantic's own messages speak of Python types; a scenario's author reads JSON, so a
    wrong value is named in the scenario's words (`wrong`, formatted with the value as
    `input`; `blank` when a string has nothing but white space). Kinds parsed by a
    function of ours raise their own messages."""

    name: str
    wrong: str = ""
    blank: str = ""


def parse_ts(value: str) -> datetime:
    """ISO-8601 with an explicit UTC offset ('Z' or +00:00 style) to an aware UTC datetime."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("has no UTC offset (write e.g. 2026-06-30T00:00:00Z)")
    return parsed.astimezone(UTC)


def format_ts(value: datetime) -> str:
    """The scenario's own timestamp spelling: second precision, 'Z'."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_ts_field(value: Any) -> datetime:
    """Python's ISO-8601 reading (as the CLI's --as-of), not pydantic's RFC 3339 one, so
    that every timestamp a scenario could hold before still parses to the same instant."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an ISO-8601 UTC timestamp: {value!r} is not a string")
    try:
        return parse_ts(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an ISO-8601 UTC timestamp: {exc}") from None


def _parse_money(value: Any) -> Decimal:
    """Money is a decimal string, never a JSON number (a float would lose cents)."""
    if not isinstance(value, str) or not _MONEY_RE.match(value):
        raise ValueError(f'{value!r} is not a decimal string such as "49.00"')
    return Decimal(value)


def _parse_decimal(value: Any) -> Decimal:
    """A percentage may be a number or a decimal string."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a number")
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a number") from exc


def _choice(choices: tuple[str, ...]) -> Any:
    """A string from a closed list; the error lists what is allowed."""
    return Annotated[
        Literal[choices], Kind("enum", f"{{input!r}} is not one of {', '.join(choices)}")
    ]


def _unique_ids(ids: list[str]) -> list[str]:
    if len(set(ids)) != len(ids):
        raise ValueError("names an id twice")
    return ids


def _as_dicts(records: list[BaseModel]) -> list[dict]:
    """Nested records are plain dicts, as every record of a parsed scenario is."""
    return [record.__dict__ for record in records]


_NOT_A_STRING = "{input!r} is not a string"
Id = Annotated[str, StringConstraints(pattern=r"\S"), Kind("id", _NOT_A_STRING, "is empty")]
Text = Annotated[str, Kind("text", _NOT_A_STRING)]
Currency = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{3}$"),
    Kind("currency", "{input!r} is not an upper-case ISO 4217 code"),
]
Timestamp = Annotated[
    datetime,
    PlainValidator(_parse_ts_field, json_schema_input_type=datetime),
    Kind("ts"),
]
Money = Annotated[
    Decimal,
    PlainValidator(
        _parse_money,
        json_schema_input_type=Annotated[str, StringConstraints(pattern=_MONEY_RE.pattern)],
    ),
    Kind("money"),
]
Number = Annotated[
    Decimal,
    PlainValidator(_parse_decimal, json_schema_input_type=float | str),
    Kind("decimal"),
]
Count = Annotated[int, Kind("int", "{input!r} is not an integer")]
JsonObject = Annotated[dict[str, Any], Kind("json", "{input!r} is not a JSON object")]
Ids = Annotated[
    list[Id],
    Field(min_length=1),
    AfterValidator(_unique_ids),
    Kind("ids", "must be a non-empty array of ids"),
]
MoneyMap = Annotated[
    dict[Currency, Money],
    Field(min_length=1),
    Kind("money_map", 'must be a non-empty object of currency -> amount, e.g. {{"EUR": "45.00"}}'),
]
BillingSystem = _choice(BILLING_SYSTEMS)
Interval = _choice(INTERVALS)
PlanKind = _choice(PLAN_KINDS)
UsageType = _choice(USAGE_TYPES)
PricingModel = _choice(PRICING_MODELS)
CouponDuration = _choice(COUPON_DURATIONS)
RedemptionResource = _choice(REDEMPTION_RESOURCES)
DunningState = _choice(DUNNING_STATES)
InvoiceStatus = _choice(INVOICE_STATUSES)
InvoiceKind = _choice(INVOICE_KINDS)
Action = _choice(ACTIONS)
OfferType = _choice(OFFER_TYPES)
Catalog = _choice(CATALOGS)
Rates = Annotated[dict[Currency, Money], Kind("rates", "must be an object of currency -> rate")]


def _tier_bounds(tiers: list[Tier]) -> list[dict]:
    """Ascending inclusive bounds, the last tier open (no up_to)."""
    above = 0
    for n, tier in enumerate(tiers, start=1):
        if (n == len(tiers)) != (tier.up_to is None):
            raise ValueError(f"tier {n}: only the last tier has no up_to, and it has none")
        if tier.up_to is not None and tier.up_to <= above:
            raise ValueError(f"tier {n}: up_to {tier.up_to} must be above {above}")
        above = tier.up_to or above
    return _as_dicts(tiers)


# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    """Strict, as JSON is: "2" is not an integer, 49 is not money, true is not 1."""

    model_config = ConfigDict(strict=True, extra="forbid")


def _null_means_default(*names: str) -> Any:
    """A null field is a field left out (the generator writes every column, null where it
    draws nothing): these fields then take their default, never null. (A null required
    field is reported as missing; other optional fields keep null.)"""

    def default(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return cls.model_fields[info.field_name].get_default(call_default_factory=True)
        return value

    return field_validator(*names, mode="before")(default)


class _Record(_Model):
    id_field: ClassVar[str]  # unique per section (per billing system but exit sessions)


class _BillingRecord(_Record):
    billing_system: BillingSystem = Field(description="stripe, recurly or chargebee")


class Tier(_Model):
    """One tier of a tiered, volume or stairstep price."""

    up_to: Count | None = Field(None, description="inclusive upper bound; null on the last tier")
    unit_amount: Money = Field(Decimal(0), description="price per unit in this tier")
    flat_amount: Money = Field(
        Decimal(0), description="flat price of this tier (stairstep: its price)"
    )


class Item(_Model):
    """A further item on a subscription, beside its plan."""

    plan_id: Id = Field(description="a plan (add-on, charge, metered or further price)")
    quantity: Count = Field(1, ge=1, description="units")


Tiers = Annotated[
    list[Tier],
    Field(min_length=1),
    AfterValidator(_tier_bounds),
    Kind("tiers", "must be a non-empty array of tiers"),
]
Items = Annotated[
    list[Item],
    AfterValidator(_as_dicts),
    Kind("items", "must be an array of {{plan_id, quantity}}"),
]


class Plan(_BillingRecord):
    """A price: Stripe price, Recurly plan or add-on, Chargebee item price (or 1.0 plan)."""

    id_field = "plan_id"
    plan_id: Id = Field(description="Stripe price id, Recurly plan code, Chargebee item price id")
    product_id: Id = Field(description="product (Stripe product, Chargebee item)")
    product_name: Text = Field(description="product's display name")
    currency: Currency = Field(description="ISO 4217 code")
    unit_amount: Money = Field(description="price per unit per interval, major units")
    interval: Interval = Field(description="billing interval")
    interval_count: Count = Field(ge=1, description="intervals per billing period")
    kind: PlanKind | None = Field(
        "plan",
        description="plan (default), addon (recurring, on top of a plan) or charge (one-time)",
    )
    usage_type: UsageType | None = Field(
        "licensed",
        description="licensed (billed on quantity, default) or metered (billed on usage: never in MRR)",
    )
    pricing_model: PricingModel | None = Field(
        "per_unit",
        description="per_unit (default), flat_fee, package, tiered (graduated), volume or "
        "stairstep; unit_amount is the unit's, the fee's or the package's price (0 with tiers)",
    )
    package_size: Count | None = Field(
        None, ge=2, description="units per package, with pricing_model package"
    )
    tiers: Tiers | None = Field(
        None,
        description="with tiered/volume/stairstep: ascending, the last up_to null "
        "(stairstep: each step's price is its flat_amount)",
    )
    currency_options: MoneyMap | None = Field(
        None,
        description="Stripe and Recurly: the price in further currencies, {currency: unit_amount} "
        "(a Chargebee item price has one currency: add a plan per currency)",
    )
    archived_at: Timestamp | None = Field(
        None, description="when the plan was archived: no new sales, subscriptions go on"
    )
    _defaults = _null_means_default("kind", "usage_type", "pricing_model")


class Coupon(_BillingRecord):
    """A coupon (Recurly: by its code)."""

    id_field = "coupon_id"
    coupon_id: Id = Field(description="coupon id (Recurly coupon code)")
    name: Text | None = Field(None, description="display name")
    percent_off: Number | None = Field(
        None, description="0 < percent_off <= 100; exactly one of percent/amount"
    )
    amount_off: Money | None = Field(None, description="fixed discount, major units, with currency")
    currency: Currency | None = Field(None, description="currency of amount_off")
    duration: CouponDuration = Field(description="how long the discount lasts")
    duration_in_months: Count | None = Field(None, description="months, when duration is repeating")
    redemption_resource: RedemptionResource | None = Field(
        None, description="Recurly only: account (the default, as Recurly's) or subscription level"
    )
    deleted_at: Timestamp | None = Field(
        None, description="when the coupon was deleted (expired): redemptions stay"
    )


class Customer(_BillingRecord):
    """A customer (Recurly: an account)."""

    id_field = "customer_id"
    customer_id: Id = Field(description="Stripe cus_ id, Recurly account code, Chargebee id")
    email: Text | None = Field(None, description="e-mail address")
    name: Text | None = Field(None, description="full name")
    created_at: Timestamp = Field(description="when the customer was created")
    coupon_id: Id | None = Field(
        None,
        description="Stripe only: a customer-level discount (applies to subscriptions without "
        "their own)",
    )
    deleted_at: Timestamp | None = Field(
        None, description="when the customer was deleted (every subscription ended by then)"
    )


class Subscription(_BillingRecord):
    """A subscription: its plan, items, coupons and life as timestamps."""

    id_field = "subscription_id"
    subscription_id: Id = Field(description="native subscription id")
    customer_id: Id = Field(description="owning customer of the same system")
    plan_id: Id = Field(description="plan of the same system")
    quantity: Count = Field(ge=1, description="units")
    currency: Currency | None = Field(
        None, description="the plan's currency (default) or one of its currency_options"
    )
    coupon_id: Id | None = Field(
        None, description="applied coupon of the same system (the first, with several)"
    )
    extra_coupon_ids: Ids | None = Field(
        None, description="further coupons applied after coupon_id, in order"
    )
    created_at: Timestamp = Field(description="when the subscription was created")
    activated_at: Timestamp = Field(description="start of paid or trial service")
    trial_start: Timestamp | None = Field(None, description="trial start")
    trial_end: Timestamp | None = Field(None, description="trial end (after trial_start)")
    canceled_at: Timestamp | None = Field(
        None, description="when a cancel was requested; needs ended_at"
    )
    ended_at: Timestamp | None = Field(
        None, description="when service ends/ended (>= activated_at)"
    )
    paused_at: Timestamp | None = Field(None, description="pause start")
    resumes_at: Timestamp | None = Field(None, description="pause end; needs paused_at")
    dunning: DunningState | None = Field(None, description="Stripe only: past_due or unpaid")
    items: Items | None = Field(
        None,
        description="items beyond plan_id (add-ons, charges, metered or further prices) in the "
        "subscription's currency and, but charges, its billing period",
    )
    term_cycles: Count | None = Field(
        None,
        ge=1,
        description="Recurly and Chargebee: billing periods per term (a multi-cycle term that "
        "renews)",
    )
    pending_plan_id: Id | None = Field(
        None, description="a plan change scheduled for the current period's end"
    )
    pending_quantity: Count | None = Field(
        None, ge=1, description="the quantity of that change (default: unchanged)"
    )
    deleted_at: Timestamp | None = Field(
        None, description="Chargebee only: the ended subscription was deleted then"
    )
    transferred_at: Timestamp | None = Field(
        None,
        description="Chargebee only: moved to another business entity then (status "
        "transferred; ended_at equals it)",
    )


class Invoice(_BillingRecord):
    """An invoice (Recurly: by its number) or a Recurly credit invoice."""

    id_field = "invoice_id"
    invoice_id: Id = Field(description="native invoice id (Recurly: number)")
    customer_id: Id = Field(description="customer of the same system")
    subscription_id: Id | None = Field(None, description="subscription of that customer")
    currency: Currency = Field(description="ISO 4217 code")
    total: Money = Field(description="invoice total, major units (>= 0)")
    status: InvoiceStatus = Field(description="where the invoice stands")
    kind: InvoiceKind | None = Field(
        "charge",
        description="charge (default) or credit (Recurly only: a credit invoice, never money "
        "collected)",
    )
    created_at: Timestamp = Field(description="when the invoice was issued")
    paid_at: Timestamp | None = Field(
        None, description="when it was paid: set exactly when status is paid"
    )
    _defaults = _null_means_default("kind")


class ExitSession(_Record):
    """One visit to the cancel page and what the visitor did."""

    id_field = "session_id"
    session_id: Id = Field(description="unique per visit")
    app_id: Text | None = Field(None, description="cancel-flow app/site")
    billing_system: BillingSystem = Field(description="stripe, recurly or chargebee")
    billing_id: Id = Field(description="subscription id or customer id of that system")
    email: Text | None = Field(None, description="visitor e-mail")
    started_at: Timestamp = Field(description="landing time")
    action: Action | None = Field(None, description="what the visitor did; null = closed the page")
    action_at: Timestamp | None = Field(
        None, description="set exactly when action is set; >= started_at"
    )
    offer_id: Text | None = Field(None, description="accepted offer id")
    offer_type: OfferType | None = Field(None, description="set with offer_accepted")
    page_id: Text | None = Field(None, description="page variant shown (holdout = no offers)")
    cancel_reason: Text | None = Field(None, description="survey answer")
    custom: JsonObject | None = Field(None, description="any extra JSON object the page sent")


class ScenarioDocument(_Model):
    """A scenario file: its clock and currencies, then the records of each section
    (arrays, may be empty or left out)."""

    as_of: Timestamp = Field(description="the sandbox's clock")
    reporting_currency: Currency = Field(description="currency the marts report in")
    fx_rates: Rates = Field(
        description="currency -> decimal string: reporting-currency units per 1 unit; every "
        'currency used needs one, the reporting currency "1"'
    )
    chargebee_product_catalog: Catalog = Field(
        "2.0", description="the Chargebee site's Product Catalog"
    )
    plans: list[Plan] | None = Field(default_factory=list)
    coupons: list[Coupon] | None = Field(default_factory=list)
    customers: list[Customer] | None = Field(default_factory=list)
    subscriptions: list[Subscription] | None = Field(default_factory=list)
    invoices: list[Invoice] | None = Field(default_factory=list)
    exit_sessions: list[ExitSession] | None = Field(default_factory=list)
    _defaults = _null_means_default(
        "plans",
        "coupons",
        "customers",
        "subscriptions",
        "invoices",
        "exit_sessions",
    )


def json_schema() -> dict[str, Any]:
    """The scenario format as JSON Schema, from the models that validate it."""
    return ScenarioDocument.model_json_schema()


# --------------------------------------------------------------------------- errors


def _unwrap(tp: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    """A type without its Annotated layers and `| None`; the metadata they carried."""
    while True:
        if get_origin(tp) is Annotated:
            metadata, tp = [*metadata, *tp.__metadata__], tp.__origin__
        elif get_origin(tp) in (Union, types.UnionType):
            tp = next(arg for arg in get_args(tp) if arg is not type(None))
        else:
            return tp, metadata


def _field_at(loc: tuple[int | str, ...]) -> tuple[Kind | None, FieldInfo | None]:
    """The kind of the value at a pydantic error location, following the models' types
    (a dict's "[key]" step names its key), and its model field if it is one."""
    tp, metadata, info = ScenarioDocument, [], None
    parts = list(loc)
    while parts:
        part, info = parts.pop(0), None
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            info = tp.model_fields.get(str(part))
            if info is None:
                return None, None
            tp, metadata = _unwrap(info.annotation, list(info.metadata))
        elif get_origin(tp) is list:
            tp, metadata = _unwrap(get_args(tp)[0], [])
        elif get_origin(tp) is dict:
            key_type, value_type = get_args(tp)
            if parts[:1] == ["[key]"]:
                parts.pop(0)
                tp, metadata = _unwrap(key_type, [])
            else:
                tp, metadata = _unwrap(value_type, [])
        else:
            return None, None
    return next((m for m in metadata if isinstance(m, Kind)), None), info


SECTIONS: dict[str, type[_Record]] = {
    name: get_args(section)[0]
    for name, info in ScenarioDocument.model_fields.items()
    if get_origin(section := _unwrap(info.annotation, [])[0]) is list
}
ID_FIELD = {section: model.id_field for section, model in SECTIONS.items()}


class ScenarioField(NamedTuple):
    """A record field as the generator and the exit-file writer read it."""

    name: str
    kind: str


SCHEMA: dict[str, tuple[ScenarioField, ...]] = {
    section: tuple(
        ScenarioField(name, _field_at((section, 0, name))[0].name) for name in model.model_fields
    )
    for section, model in SECTIONS.items()
}


def _reason(error: Any) -> str:
    """A pydantic error in the scenario's words."""
    (kind, info), what = _field_at(error["loc"]), error["type"]
    if what == "missing" or (error["input"] is None and info and info.is_required()):
        return "is required"
    if what == "extra_forbidden":
        return "unknown top-level field" if len(error["loc"]) == 1 else "unknown field"
    if what == "value_error":
        return str(error["ctx"]["error"])
    if what == "greater_than_equal":
        return f"must be >= {error['ctx']['ge']}"
    if kind and what == "string_pattern_mismatch" and kind.blank:
        return kind.blank
    if kind and kind.wrong:
        return kind.wrong.format(input=error["input"])
    if what == "list_type":
        return "must be a JSON array"
    if what in ("model_type", "dict_type"):
        return "must be a JSON object"
    return error["msg"]


def _path(loc: tuple[int | str, ...], doc: dict) -> str:
    """`section[index] (id).field` (nested arrays count from 1, as the rules' messages do)."""
    head, rest = str(loc[0]), loc[1:]
    if head in SECTIONS and rest and isinstance(rest[0], int):
        head, rest = _where(head, rest[0], doc[head][rest[0]]), rest[1:]
    for part in rest:
        if part != "[key]":
            head += f"[{part + 1}]" if isinstance(part, int) else f".{part}"
    return head


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
    """Collects problems with the object and field they concern. A field the models
    refused is not named again by a rule (it reads as left out to the rules)."""

    def __init__(self, refused: list[tuple[str, str]]) -> None:
        self.items = [f"{where}: {reason}" for where, reason in refused]
        self.refused = {where for where, _ in refused}

    def add(self, where: str, reason: str) -> None:
        if where not in self.refused:
            self.items.append(f"{where}: {reason}")


def _where(section: str, index: int, record: dict, field_name: str | None = None) -> str:
    ident = record.get(ID_FIELD[section]) if isinstance(record, dict) else None
    system = record.get("billing_system") if isinstance(record, dict) else None
    label = f"{section}[{index}]"
    if ident is not None:
        label += f" ({system} {ident})" if system else f" ({ident})"
    return f"{label}.{field_name}" if field_name else label


@cache
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter:
    info = model.model_fields[name]
    return TypeAdapter(Annotated[info.annotation, info], config=_Model.model_config)


def _salvage(model: type[BaseModel], raw: dict, names: Iterable[str]) -> dict[str, Any]:
    """A broken record's fields one by one: a field that fails is None, as if left out,
    so that the rules still run on the rest and every problem is named in one load."""
    values: dict[str, Any] = {}
    for name in names:
        value, info = raw.get(name), model.model_fields[name]
        if value is None:
            values[name] = (
                None if info.is_required() else info.get_default(call_default_factory=True)
            )
            continue
        try:
            values[name] = _field_adapter(model, name).validate_python(value)
        except ValidationError:
            values[name] = None
    return values


def _salvage_section(model: type[_Record], raw: Any) -> list[dict]:
    if not isinstance(raw, list):
        return []
    records = []
    for record in raw:
        if isinstance(record, dict):
            try:
                records.append(model.model_validate(record).__dict__)
            except ValidationError:
                records.append(_salvage(model, record, model.model_fields))
    return records


def _salvaged(doc: dict) -> Scenario:
    """What of a broken document parses, for the rules to check."""
    names = [name for name in ScenarioDocument.model_fields if name not in SECTIONS]
    header = _salvage(ScenarioDocument, doc, names)
    return Scenario(
        **header | {"fx_rates": header["fx_rates"] or {}},  # the rules look rates up
        **{name: _salvage_section(model, doc.get(name)) for name, model in SECTIONS.items()},
    )


def _parsed(doc: ScenarioDocument) -> Scenario:
    return Scenario(
        as_of=doc.as_of,
        reporting_currency=doc.reporting_currency,
        fx_rates=doc.fx_rates,
        chargebee_product_catalog=doc.chargebee_product_catalog,
        **{name: _as_dicts(getattr(doc, name)) for name in SECTIONS},
    )


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
    if r["term_cycles"] is not None and system == "stripe":
        p.add(w("term_cycles"), "Stripe has no multi-cycle terms")
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


def _check_header(s: Scenario, p: _Problems) -> None:
    currency = s.reporting_currency
    if currency and s.fx_rates and s.fx_rates.get(currency) != Decimal(1):
        p.add(f"fx_rates.{currency}", 'the reporting currency\'s rate must be "1"')


def _check_rules(s: Scenario, p: _Problems) -> None:
    """The rules across fields and records; those that compare times need the clock."""
    _check_header(s, p)
    for name in SECTIONS:
        _check_unique(name, getattr(s, name), p)
    if s.as_of is None:
        return
    for check in (
        _check_plans,
        _check_coupons,
        _check_customers,
        _check_subscriptions,
        _check_invoices,
        _check_exit_sessions,
        _check_currencies,
    ):
        check(s, p)


def validate_scenario(doc: Any) -> Scenario:
    """Parse and check a scenario document; raise ScenarioError naming every problem."""
    if not isinstance(doc, dict):
        raise ScenarioError(["scenario: must be a JSON object"])
    try:
        scenario, refused = _parsed(ScenarioDocument.model_validate(doc)), []
    except ValidationError as exc:
        scenario = _salvaged(doc)
        refused = [(_path(e["loc"], doc), _reason(e)) for e in exc.errors(include_url=False)]
    problems = _Problems(refused)
    _check_rules(scenario, problems)
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
