"""The write-back catalog: what each cancel-page outcome does in each billing system.

The user edits one YAML file (`writebacks.yml` at the project root, or the file named by
`RETENTION_WRITEBACKS`). It is validated as a whole when loaded: every problem is
reported at once, each naming the file and the key path (`offers.save50.chargebee.coupon:
required for a discount offer`), and nothing runs from a catalog with problems.

Per billing system: `mode` (`off`, `dry_run` — the default —, `live`), `since` (only
actions taken at or after this time are written back: enabling never replays history)
and the cancel options. Per offer id: its `type` and parameters, shared or per system.

The file's format is the pydantic models below (`CatalogFile`): one definition gives the
checks, each problem's key path and the JSON Schema that `retention writebacks check
--schema` prints. The engine reads the catalog resolved from it (`Catalog`): each
system's settings with their defaults, each offer's parameters per system.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, NoReturn, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import ErrorDetails, PydanticCustomError

from billing_clients.systems import BILLING_SYSTEMS

CATALOG_ENV = "RETENTION_WRITEBACKS"
# The project's catalog, at the root of the checkout (WRITEBACKS_CATALOG names another).
DEFAULT_CATALOG = Path(__file__).resolve().parent.parent / "writebacks.yml"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class CatalogError(ValueError):
    """The catalog cannot be used; the message lists every problem found."""


# --------------------------------------------------------------------------- value types


def _worded(annotation: Any, message: str) -> Any:
    """`annotation`, any error of it worded as `message` (`{value}`: the value as written):
    the user reads the value and what is allowed, not pydantic's wording."""

    def reword(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("catalog", message, {"value": repr(value)}) from None

    return Annotated[annotation, WrapValidator(reword)]


def _one_of(*choices: str) -> Any:
    return _worded(Literal[choices], "{value} is not one of " + ", ".join(choices))


def _yaml_off(value: Any) -> Any:
    """YAML 1.1 (PyYAML) reads a bare `off` as false."""
    return "off" if value is False else value


def _utc(value: Any) -> datetime:
    """An ISO-8601 time with its zone, in UTC (YAML gives unquoted times as datetimes)."""
    parsed = value
    if not isinstance(value, datetime):
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise PydanticCustomError(
                "timestamp", "{value} is not an ISO-8601 timestamp", {"value": repr(value)}
            ) from None
    if parsed.tzinfo is None:
        raise PydanticCustomError(
            "time_zone",
            "{value} has no time zone (write it in UTC, ending in Z)",
            {"value": repr(value)},
        )
    return parsed.astimezone(UTC)


def _plans_given(value: Any) -> Any:
    if value == {}:
        raise PydanticCustomError(
            "no_plan", "expected a plan id, or currency codes mapped to plan ids"
        )
    return value


def _plan_shape(value: Any) -> str:
    return "by_currency" if isinstance(value, dict) else "id"


Mode = Annotated[_one_of("off", "dry_run", "live"), BeforeValidator(_yaml_off)]
UtcTime = Annotated[datetime, BeforeValidator(_utc)]
When = _one_of("period_end", "immediately")
Scope = _one_of("subscription", "customer")
Refund = _one_of("none", "partial", "full")
Flag = _worded(bool, "{value} is not one of true, false")
Count = Annotated[int, Field(ge=1)]
Text = Annotated[str, Field(min_length=1)]
Interval = _one_of("day", "week", "month")
ExtensionMethod = _one_of("pause_collection", "trial_end")
Currency = _worded(
    Annotated[str, Field(pattern=r"^[A-Z]{3}$")], "expected a currency code such as USD"
)
PlanId = _worded(Text, "expected a plan id, got {value}")
# A subscription can only move to a plan priced in its own currency: one plan, or one per
# currency code.
Plan = Annotated[
    Union[  # noqa: UP007 (the members carry tags)
        Annotated[Text, Tag("id")],
        Annotated[
            dict[Currency, PlanId],
            Field(min_length=1),
            BeforeValidator(_plans_given),
            Tag("by_currency"),
        ],
    ],
    Discriminator(_plan_shape),
]
OfferId = Annotated[str, BeforeValidator(str)]


class _Entry(BaseModel):
    """A mapping of the file: unknown keys are refused and values are taken as written
    (`'1'` is not a number, `1` is not true)."""

    model_config = ConfigDict(extra="forbid", strict=True)


# --------------------------------------------------------------------------- billing systems


class _Cancel(_Entry):
    """What a completed cancel does."""

    when: When = "period_end"
    scope: Scope = Field(
        "subscription",
        description="The matched subscription, or every subscription of the customer in "
        "service when they canceled.",
    )


class StripeCancel(_Cancel):
    prorate: Flag = Field(False, description="With when: immediately.")
    invoice_now: Flag = Field(False, description="With when: immediately.")


class RecurlyCancel(_Cancel):
    refund: Refund = Field("none", description="With when: immediately (Recurly terminates).")

    @field_validator("refund")
    @classmethod
    def _refund_terminates(cls, refund: str, info: ValidationInfo) -> str:
        if refund != "none" and info.data.get("when") != "immediately":
            raise PydanticCustomError(
                "refund_needs_immediately",
                "a refund needs when: immediately (Recurly refunds only when it terminates "
                "a subscription)",
            )
        return refund


class ChargebeeCancel(_Cancel):
    """What a completed cancel does (`when` is Chargebee's cancel_option)."""


CANCEL_MODELS: dict[str, type[_Cancel]] = {
    "stripe": StripeCancel,
    "recurly": RecurlyCancel,
    "chargebee": ChargebeeCancel,
}


class _System(_Entry):
    mode: Mode = Field(
        "dry_run",
        description="dry_run records what would be sent and sends nothing; live applies it.",
    )
    since: UtcTime | None = Field(
        None,
        validate_default=True,
        description="Only visitors who acted at or after this time are written back "
        "(required for live: enabling never replays history).",
    )

    @field_validator("since")
    @classmethod
    def _live_needs_since(cls, since: datetime | None, info: ValidationInfo) -> datetime | None:
        if since is None and info.data.get("mode") == "live":
            raise PydanticCustomError(
                "since_required",
                "required when mode is live: the time from which actions are written back "
                "(enabling never replays history)",
            )
        return since


SYSTEM_MODELS: dict[str, type[_System]] = {
    system: create_model(
        f"{system.title()}Settings",
        __base__=_System,
        __doc__=f"How write-backs reach {system.title()}.",
        cancel=(CANCEL_MODELS[system], Field(default_factory=CANCEL_MODELS[system])),
    )
    for system in BILLING_SYSTEMS
}
BillingSystems = create_model(
    "BillingSystems",
    __base__=_Entry,
    __doc__="Per billing system: mode, since and the cancel options.",
    **{system: (model | None, None) for system, model in SYSTEM_MODELS.items()},
)


# --------------------------------------------------------------------------- offers


class _Parameters(_Entry):
    # What every system needs, set under the offer or under each system (the offer's
    # description in the schema says it; the loader checks it: _missing_parameters).
    required: ClassVar[tuple[str, ...]] = ()


class PauseParameters(_Parameters):
    """Pause for `duration` `interval`s. Recurly pauses whole billing cycles: `cycles`
    (default: the duration in the plan's cycles; a duration that is not a whole number of
    them fails with the reason)."""

    required = ("duration", "interval")
    duration: Count | None = None
    interval: Interval | None = None
    cycles: Count | None = None


class DiscountParameters(_Parameters):
    """Apply that system's coupon."""

    required = ("coupon",)
    coupon: Text | None = None


def _stripe_only(value: Any) -> NoReturn:
    raise PydanticCustomError(
        "stripe_only", "only Stripe has extension methods (set it under stripe)"
    )


class ExtensionParameters(_Parameters):
    """Add `days` of free time to the current term."""

    required = ("days",)
    days: Count | None = None
    # Not in the schema: only Stripe's block has a method; this names the rule.
    method: SkipJsonSchema[Annotated[Any, BeforeValidator(_stripe_only)]] = None


class StripeExtensionParameters(ExtensionParameters):
    """Add `days` of free time to the current term; `method`: how Stripe gives it."""

    method: ExtensionMethod | None = Field(
        None,
        description="pause_collection (the default: collection paused with "
        "mark_uncollectible until the new end, status stays active) or trial_end (a trial "
        "until then, status trialing).",
    )


class PlanChangeParameters(_Parameters):
    """Move to that system's plan / price / item price id, or one per currency."""

    required = ("plan",)
    plan: Plan | None = None


class CustomParameters(_Parameters):
    """Nothing is sent; the session is recorded in marts.fct_exit_sessions."""


class _Offer(_Entry):
    type: str  # each offer model narrows it to its type; declared here to come first


def _offer_model(offer_type: str, shared: type[_Parameters], **own: type[_Parameters]) -> Any:
    """An offer of one type: its parameters, shared by every system and set or overridden
    under each system's name (ids that differ per system: coupons and plans)."""
    return create_model(
        "".join(part.title() for part in offer_type.split("_")) + "Offer",
        __base__=(shared, _Offer),
        __doc__=f"{shared.__doc__} Required, under the offer or under each system: "
        f"{', '.join(shared.required) or 'nothing'}.",
        type=(Literal[offer_type], ...),
        **{system: (own.get(system, shared) | None, None) for system in BILLING_SYSTEMS},
    )


OFFER_MODELS: dict[str, type[_Parameters]] = {
    "pause": _offer_model("pause", PauseParameters),
    "discount": _offer_model("discount", DiscountParameters),
    "extension": _offer_model("extension", ExtensionParameters, stripe=StripeExtensionParameters),
    "plan_change": _offer_model("plan_change", PlanChangeParameters),
    "custom": _offer_model("custom", CustomParameters),
}
AnyOffer = Annotated[Union[tuple(OFFER_MODELS.values())], Field(discriminator="type")]  # noqa: UP007


class CatalogFile(_Entry):
    """Billing write-backs (writebacks.yml): what the cancel page's outcomes do in each
    billing system."""

    billing_systems: BillingSystems = Field(default_factory=BillingSystems)
    offers: dict[OfferId, AnyOffer] = Field(
        default_factory=dict, description="The cancel page's offer ids."
    )


def json_schema() -> dict[str, Any]:
    """The catalog file's JSON Schema, as editors and `check --schema` read it."""
    return {"$schema": JSON_SCHEMA_DIALECT, **CatalogFile.model_json_schema()}


# --------------------------------------------------------------------------- the catalog read


@dataclass(frozen=True)
class SystemSettings:
    mode: str = "dry_run"
    since: datetime | None = None
    cancel: dict[str, Any] = field(default_factory=dict)

    def enabled_for(self, action_at: datetime) -> bool:
        return self.mode != "off" and (self.since is None or action_at >= self.since)


@dataclass(frozen=True)
class Offer:
    offer_id: str
    type: str
    parameters: dict[str, dict[str, Any]]  # per billing system, shared values merged in

    def for_system(self, system: str) -> dict[str, Any]:
        return self.parameters[system]


@dataclass(frozen=True)
class Catalog:
    path: Path
    systems: dict[str, SystemSettings]
    offers: dict[str, Offer]


def catalog_path(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get(CATALOG_ENV) or DEFAULT_CATALOG)


def load_catalog(path: Path | str | None = None) -> Catalog:
    """Read and validate the catalog; `CatalogError` lists every problem with its key."""
    path = Path(path) if path else catalog_path()
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise CatalogError(f"{path}: no such write-back catalog file") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        _refuse(path, ["(top level): expected a mapping with billing_systems and offers"])
    problems = _missing_parameters(document.get("offers"))
    try:
        parsed = CatalogFile.model_validate(document)
    except ValidationError as exc:
        _refuse(path, [_problem(error) for error in exc.errors()] + problems)
    if problems:
        _refuse(path, problems)
    return _resolve(path, parsed)


def _refuse(path: Path, problems: list[str]) -> NoReturn:
    listed = "\n".join(f"  {path}: {p}" for p in problems)
    raise CatalogError(f"write-back catalog {path} has {len(problems)} problem(s):\n{listed}")


def _missing_parameters(offers: Any) -> list[str]:
    """Each required parameter a system lacks once the shared values are merged in. Read
    from the file as written, so it is reported with every other problem (pydantic runs a
    model's own checks only once its fields are valid)."""
    problems = []
    for offer_id, body in (offers if isinstance(offers, dict) else {}).items():
        kind = body.get("type") if isinstance(body, dict) else None
        model = OFFER_MODELS.get(kind) if isinstance(kind, str) else None
        if model is None:
            continue  # not an offer of a known type: reported as such
        for system in BILLING_SYSTEMS:
            own = body.get(system) if isinstance(body.get(system), dict) else {}
            problems += [
                f"offers.{offer_id}.{system}.{name}: required for a {kind} offer "
                f"(set {name} under the offer or under {system})"
                for name in model.required
                if body.get(name) is None and own.get(name) is None
            ]
    return problems


# How pydantic's own errors read in the catalog's words (the others carry their message).
_WORDING = {
    "int_type": "expected int, got {input!r}",
    "string_type": "expected str, got {input!r}",
    "string_too_short": "expected str, got {input!r}",
    "greater_than_equal": "must be at least {ctx[ge]}, got {input!r}",
    "model_type": "expected a mapping, got {input!r}",
    "model_attributes_type": "expected a mapping, got {input!r}",
    "dict_type": "expected a mapping, got {input!r}",
}


def _problem(error: ErrorDetails) -> str:
    """A pydantic error as the catalog states it: key path, then what is wrong."""
    keys, _ = _walk(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        _, mapping = _walk(error["loc"][:-1])
        known = ", ".join(mapping.model_fields)
        return f"{keys}: unknown key " + (f"(expected one of {known})" if known else "(none here)")
    if kind in ("union_tag_invalid", "union_tag_not_found"):  # an offer's type
        offer_type = error["input"].get("type")
        found = "missing" if offer_type is None else f"{offer_type!r} is unknown"
        return f"{keys}.type: {found} (expected one of {', '.join(OFFER_MODELS)})"
    return f"{keys}: " + _WORDING.get(kind, "{msg}").format(**error)


def _walk(loc: tuple[int | str, ...]) -> tuple[str, Any]:
    """A pydantic error location as the file's key path (`offers.save50.stripe.coupon`),
    and the type found there. Some steps are not keys: a union's tag (an offer's type, a
    plan's shape), `[key]` (the error is in a mapping's key)."""
    keys: list[str] = []
    node: Any = CatalogFile
    for step in loc:
        node = _bare(node)
        if step == "[key]":
            continue
        if get_origin(node) in (Union, UnionType):
            node = OFFER_MODELS.get(str(step))  # the offers are the one union of models
            continue
        keys.append(str(step))
        if isinstance(node, type) and issubclass(node, BaseModel):
            known = node.model_fields.get(str(step))
            node = known.annotation if known else None
        elif get_origin(node) is dict:
            node = get_args(node)[1]
    return ".".join(keys), _bare(node)


def _bare(annotation: Any) -> Any:
    """`annotation` without `Annotated[...]` and without `| None` (neither adds a step)."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, UnionType) and type(None) in get_args(annotation):
            [annotation] = [a for a in get_args(annotation) if a is not type(None)]
        else:
            return annotation


def _resolve(path: Path, parsed: CatalogFile) -> Catalog:
    """What the engine reads: every system's settings with their defaults, and every
    offer's parameters per system, the system's own values over the shared ones."""
    systems = {}
    for system in BILLING_SYSTEMS:
        settings = getattr(parsed.billing_systems, system) or SYSTEM_MODELS[system]()
        systems[system] = SystemSettings(
            settings.mode, settings.since, settings.cancel.model_dump()
        )
    offers = {
        offer_id: Offer(
            offer_id,
            offer.type,
            {system: _parameters(offer, system) for system in BILLING_SYSTEMS},
        )
        for offer_id, offer in parsed.offers.items()
    }
    return Catalog(path, systems, offers)


def _parameters(offer: Any, system: str) -> dict[str, Any]:
    shared = offer.model_dump(exclude={"type", *BILLING_SYSTEMS}, exclude_none=True)
    own = getattr(offer, system)
    return {**shared, **(own.model_dump(exclude_none=True) if own else {})}
