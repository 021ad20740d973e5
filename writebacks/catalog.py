"""The write-back catalog: what each cancel-page outcome does in each billing system.

The user edits one YAML file (`writebacks.yml` at the project root, or the file named by
`RETENTION_WRITEBACKS`). It is validated as a whole when loaded: every problem is
reported at once, each naming the file and the key path (`offers.save50.chargebee.coupon:
required for a discount offer`), and nothing runs from a catalog with problems.

Per billing system: `mode` (`off`, `dry_run` — the default —, `live`), `since` (only
actions taken at or after this time are written back: enabling never replays history)
and the cancel options. Per offer id: its `type` and parameters, shared or per system.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

CATALOG_ENV = "RETENTION_WRITEBACKS"
# The project's catalog, at the root of the checkout (WRITEBACKS_CATALOG names another).
DEFAULT_CATALOG = Path(__file__).resolve().parent.parent / "writebacks.yml"
SYSTEMS = ("stripe", "recurly", "chargebee")
MODES = ("off", "dry_run", "live")
OFFER_TYPES = ("pause", "discount", "extension", "plan_change", "custom")
PAUSE_INTERVALS = ("day", "week", "month")
# How Stripe gives an extension's free time (an offer's `stripe: {method: ...}`): collection
# paused with mark_uncollectible until the new end (the default: status stays active), or
# a trial until then (status trialing). Other systems move their term or period.
EXTENSION_METHODS = ("pause_collection", "trial_end")

# Cancel options per system, with their defaults; `when` is common to all three.
CANCEL_OPTIONS: dict[str, dict[str, Any]] = {
    "stripe": {
        "when": "period_end",
        "scope": "subscription",
        "prorate": False,
        "invoice_now": False,
    },
    "recurly": {"when": "period_end", "scope": "subscription", "refund": "none"},
    "chargebee": {"when": "period_end", "scope": "subscription"},
}
CANCEL_CHOICES: dict[str, tuple[Any, ...]] = {
    "when": ("period_end", "immediately"),
    "scope": ("subscription", "customer"),
    "prorate": (True, False),
    "invoice_now": (True, False),
    "refund": ("none", "partial", "full"),
}
# Offer parameters: name -> (required for the type, python type). Per-system blocks may
# set any of them (and must, for ids that differ per system: coupons and plans).
OFFER_PARAMETERS: dict[str, dict[str, tuple[bool, type]]] = {
    "pause": {"duration": (True, int), "interval": (True, str), "cycles": (False, int)},
    "discount": {"coupon": (True, str)},
    "extension": {"days": (True, int), "method": (False, str)},
    "plan_change": {"plan": (True, str)},
    "custom": {},
}


class CatalogError(ValueError):
    """The catalog cannot be used; the message lists every problem found."""


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
    problems: list[str] = []
    catalog = _parse(path, document, problems)
    problems = list(dict.fromkeys(problems))  # a shared value is checked once per system
    if problems:
        listed = "\n".join(f"  {path}: {p}" for p in problems)
        raise CatalogError(f"write-back catalog {path} has {len(problems)} problem(s):\n{listed}")
    return catalog


def _parse(path: Path, document: Any, problems: list[str]) -> Catalog:
    if not isinstance(document, dict):
        problems.append("(top level): expected a mapping with billing_systems and offers")
        return Catalog(path, {}, {})
    _unknown_keys(document, ("billing_systems", "offers"), "", problems)
    systems_doc = _mapping(document.get("billing_systems", {}), "billing_systems", problems)
    _unknown_keys(systems_doc, SYSTEMS, "billing_systems.", problems)
    systems = {
        system: _system(systems_doc.get(system) or {}, system, problems) for system in SYSTEMS
    }
    offers_doc = _mapping(document.get("offers", {}), "offers", problems)
    offers = {
        str(offer_id): _offer(str(offer_id), body, problems)
        for offer_id, body in offers_doc.items()
    }
    return Catalog(path, systems, {k: v for k, v in offers.items() if v is not None})


def _system(doc: Any, system: str, problems: list[str]) -> SystemSettings:
    where = f"billing_systems.{system}"
    doc = _mapping(doc, where, problems)
    _unknown_keys(doc, ("mode", "since", "cancel"), where + ".", problems)
    mode = doc.get("mode", "dry_run")
    if mode is False:  # YAML 1.1 (PyYAML) reads a bare `off` as false
        mode = "off"
    if mode not in MODES:
        problems.append(f"{where}.mode: {mode!r} is not one of {', '.join(MODES)}")
    since = _timestamp(doc.get("since"), f"{where}.since", problems)
    if mode == "live" and "since" not in doc:
        problems.append(
            f"{where}.since: required when mode is live: the time from which actions are "
            "written back (enabling never replays history)"
        )
    cancel_doc = _mapping(doc.get("cancel", {}), f"{where}.cancel", problems)
    defaults = CANCEL_OPTIONS[system]
    _unknown_keys(cancel_doc, tuple(defaults), f"{where}.cancel.", problems)
    cancel = {**defaults, **cancel_doc}
    for name, value in cancel_doc.items():
        choices = CANCEL_CHOICES.get(name, ())
        # `type` too: 1 == True, but `prorate: 1` is not a boolean
        if name in defaults and (value not in choices or type(value) is not type(defaults[name])):
            listed = ", ".join(str(c).lower() for c in choices)
            problems.append(f"{where}.cancel.{name}: {value!r} is not one of {listed}")
    if system == "recurly" and cancel["refund"] != "none" and cancel["when"] != "immediately":
        problems.append(
            f"{where}.cancel.refund: a refund needs when: immediately (Recurly refunds "
            "only when it terminates a subscription)"
        )
    return SystemSettings(mode=mode, since=since, cancel=cancel)


def _offer(offer_id: str, body: Any, problems: list[str]) -> Offer | None:
    where = f"offers.{offer_id}"
    body = _mapping(body, where, problems)
    kind = body.get("type")
    if kind not in OFFER_TYPES:
        problems.append(
            f"{where}.type: {'missing' if kind is None else repr(kind) + ' is unknown'}"
            f" (expected one of {', '.join(OFFER_TYPES)})"
        )
        return None
    spec = OFFER_PARAMETERS[kind]
    _unknown_keys(body, ("type", *spec, *SYSTEMS), where + ".", problems)
    shared = {k: v for k, v in body.items() if k in spec}
    parameters = {}
    for system in SYSTEMS:
        own = _mapping(body.get(system) or {}, f"{where}.{system}", problems)
        _unknown_keys(own, tuple(spec), f"{where}.{system}.", problems)
        merged = {**shared, **own}
        for name, (required, kind_type) in spec.items():
            key = f"{where}.{system}.{name}" if name in own else f"{where}.{name}"
            if name not in merged:
                if required:
                    problems.append(
                        f"{where}.{system}.{name}: required for a {kind} offer "
                        f"(set {name} under the offer or under {system})"
                    )
                continue
            value = merged[name]
            if name == "plan" and isinstance(value, dict):
                _plan_by_currency(value, key, problems)
            elif not isinstance(value, kind_type) or isinstance(value, bool) or value == "":
                problems.append(f"{key}: expected {kind_type.__name__}, got {value!r}")
            elif kind_type is int and value < 1:
                problems.append(f"{key}: must be at least 1, got {value}")
        if kind == "extension" and "method" in merged:
            key = f"{where}.{system}.method" if "method" in own else f"{where}.method"
            if system != "stripe":
                problems.append(f"{key}: only Stripe has extension methods (set it under stripe)")
            elif merged["method"] not in EXTENSION_METHODS:
                problems.append(
                    f"{key}: {merged['method']!r} is not one of {', '.join(EXTENSION_METHODS)}"
                )
        if kind == "pause" and merged.get("interval") not in (None, *PAUSE_INTERVALS):
            key = f"{where}.{system}.interval" if "interval" in own else f"{where}.interval"
            problems.append(
                f"{key}: {merged['interval']!r} is not one of {', '.join(PAUSE_INTERVALS)}"
            )
        parameters[system] = merged
    return Offer(offer_id, kind, parameters)


def _plan_by_currency(plans: dict, key: str, problems: list[str]) -> None:
    """`plan: {USD: basic-usd, EUR: basic-eur}`: a target per currency, since a
    subscription can only move to a plan priced in its own currency."""
    if not plans:
        problems.append(f"{key}: expected a plan id, or currency codes mapped to plan ids")
    for currency, plan in plans.items():
        if not (isinstance(currency, str) and len(currency) == 3 and currency.isupper()):
            problems.append(f"{key}.{currency}: expected a currency code such as USD")
        if not isinstance(plan, str) or not plan:
            problems.append(f"{key}.{currency}: expected a plan id, got {plan!r}")


def _mapping(value: Any, where: str, problems: list[str]) -> dict:
    if isinstance(value, dict):
        return value
    problems.append(f"{where}: expected a mapping, got {value!r}")
    return {}


def _unknown_keys(doc: dict, known: tuple[str, ...], prefix: str, problems: list[str]) -> None:
    for key in doc:
        if key not in known:
            problems.append(f"{prefix}{key}: unknown key (expected one of {', '.join(known)})")


def _timestamp(value: Any, where: str, problems: list[str]) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"{where}: {value!r} is not an ISO-8601 timestamp")
            return None
    if parsed.tzinfo is None:
        problems.append(f"{where}: {value!r} has no time zone (write it in UTC, ending in Z)")
        return None
    return parsed.astimezone(UTC)
