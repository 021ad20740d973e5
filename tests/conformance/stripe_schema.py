"""Stripe objects checked against the installed SDK's typed classes: the exact schema of the
API version the SDK pins (stripe 16.1.0 -> 2026-10-28.endive).

Why the SDK and not our emulator or an old OpenAPI file: the SDK's resource classes are
generated from Stripe's own spec for the pinned version, so a field they do not declare is a
field that version never sends. The rules, per value:

- a key the class does not declare is `unknown_field` (a legacy field put back is one);
- a declared field missing from the object is `missing_field` unless its type is `Optional`
  (the SDK types a field Optional when it may be null *or* absent: expand-only fields such
  as `Price.tiers` are Optional). Given Stripe's own example objects (`sent_by_default`:
  the fields of fixtures3.json's object of that type, which leave expand-only fields out),
  an Optional field the example carries is due too: Stripe sends it, null or not;
  A deleted object (`deleted: true`, typed on the same class) is a stub: only its keys count;
- `Literal[...]` values, also the SDK's open `Union[Literal[...], str]` enums, must be in the
  list (`enum_value`): the SDK tolerates new values, a conformance test must not;
- everything else is `wrong_type` when the JSON kind does not fit (`int` is never a bool,
  `Decimal` is Stripe's decimal string, `ExpandableField[X]` is an id or an X,
  `ListObject[X]` a list envelope of X).

An event's `data.object` is typed `Any` by the SDK; here it is checked as the class its
`object` names, and `previous_attributes` as a partial object of that class (every key must
be a field of it and of the field's type; absent fields are fine).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
import types
import typing
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Union

from stripe._list_object import ListObject
from stripe._object_classes import OBJECT_CLASSES
from stripe._stripe_object import StripeObject, UntypedStripeObject

_NONE = type(None)


@dataclass(frozen=True)
class Violation:
    """One way an object differs from the SDK's class: where, what kind, and the detail."""

    path: str
    kind: str  # unknown_field | missing_field | wrong_type | enum_value
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}: {self.detail}"


def _type_checking_namespace(module: types.ModuleType) -> dict[str, Any]:
    """The module's globals plus the names it imports only under TYPE_CHECKING: the SDK
    names most referenced classes there (to avoid import cycles), as string annotations."""
    namespace = dict(vars(module))
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if not (isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"):
            continue
        for statement in node.body:
            if isinstance(statement, ast.ImportFrom) and statement.module:
                imported = importlib.import_module(statement.module)
                for alias in statement.names:
                    namespace[alias.asname or alias.name] = getattr(imported, alias.name)
    return namespace


def _left_out(object_name: str, value: dict) -> set[str]:
    """Fields Stripe's example carries that an object of another kind leaves out: a metered
    subscription item has no `quantity` (the API's spec does not require it; usage is
    reported to the price's meter instead)."""
    price = value.get("price")
    recurring = price.get("recurring") if isinstance(price, dict) else None
    if object_name == "subscription_item" and (recurring or {}).get("usage_type") == "metered":
        return {"quantity"}
    return set()


class StripeSchema:
    """Validates JSON objects against the SDK classes; counts API objects validated by type."""

    def __init__(self, sent_by_default: dict[str, set[str]] | None = None) -> None:
        self.sent_by_default = sent_by_default or {}
        self._fields: dict[type, dict[str, Any]] = {}
        self._namespaces: dict[str, dict[str, Any]] = {}
        self.counts: Counter[str] = Counter()

    # -- the schema ---------------------------------------------------------------------
    def class_for(self, object_name: str) -> type | None:
        """The SDK class of an API object by its `object` value (`subscription`, ...)."""
        found = OBJECT_CLASSES.get(object_name)
        if found is None:
            return None
        return getattr(importlib.import_module(found[0]), found[1])

    def fields(self, cls: type) -> dict[str, Any]:
        """Public fields of a StripeObject class and their resolved types."""
        cached = self._fields.get(cls)
        if cached is None:
            module = cls.__module__
            if module not in self._namespaces:
                self._namespaces[module] = _type_checking_namespace(sys.modules[module])
            hints = typing.get_type_hints(cls, globalns=self._namespaces[module])
            cached = self._fields[cls] = {
                name: hint
                for name, hint in hints.items()
                if not name.startswith("_") and typing.get_origin(hint) is not typing.ClassVar
            }
        return cached

    # -- entry points -------------------------------------------------------------------
    def validate(self, obj: Any, path: str | None = None) -> list[Violation]:
        """An API object (or a list envelope of them) checked as the class its `object`
        names."""
        if not isinstance(obj, dict) or not isinstance(obj.get("object"), str):
            return [Violation(path or "$", "wrong_type", "expected an object with `object`")]
        name = obj["object"]
        if name == "list":
            where = path or "list"
            violations = self._keys(obj, {"object", "data", "has_more", "url"}, {}, where)
            data = obj.get("data")
            if not isinstance(data, list):
                return [*violations, Violation(where, "wrong_type", "data is not a list")]
            for index, element in enumerate(data):
                violations += self.validate(element, f"{where}.data[{index}]")
            return violations
        cls = self.class_for(name)
        if cls is None:
            return [Violation(path or name, "unknown_field", f"no SDK class for {name!r}")]
        return self.check(obj, cls, path or name)

    def validate_partial(self, obj: dict, cls: type, path: str) -> list[Violation]:
        """Some fields of a `cls` object (an event's `previous_attributes`): each key must
        be a field, of the field's type; absent fields are not missing."""
        hints = self.fields(cls)
        violations = [Violation(f"{path}.{k}", "unknown_field", "") for k in obj if k not in hints]
        for key, value in obj.items():
            if key in hints:
                violations += self.check(value, hints[key], f"{path}.{key}")
        return violations

    # -- values -------------------------------------------------------------------------
    def check(self, value: Any, hint: Any, path: str) -> list[Violation]:
        """One JSON value against one SDK type annotation."""
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint is Any:
            return []
        if hint is _NONE:
            return [] if value is None else [self._wrong(value, "null", path)]
        if origin is Union:
            return self._union(value, args, path)
        if origin is Literal:
            if value in args:
                return []
            return [Violation(path, "enum_value", f"{value!r} not in {list(args)}")]
        if origin is list:
            if not isinstance(value, list):
                return [self._wrong(value, "list", path)]
            return [v for i, e in enumerate(value) for v in self.check(e, args[0], f"{path}[{i}]")]
        if origin is dict:
            return self._mapping(value, args[1], path)
        if origin is UntypedStripeObject:
            return self._mapping(value, args[0] if args else Any, path)
        if origin is ListObject:
            return self._list_object(value, args[0], path)
        if isinstance(hint, type) and issubclass(hint, StripeObject):
            return self._object(value, hint, path)
        return self._scalar(value, hint, path)

    def _union(self, value: Any, args: tuple, path: str) -> list[Violation]:
        if value is None:
            return [] if _NONE in args else [self._wrong(value, "not null", path)]
        literals = [v for a in args if typing.get_origin(a) is Literal for v in typing.get_args(a)]
        if literals and str in args and isinstance(value, str):  # the SDK's open enums
            if value in literals:
                return []
            return [Violation(path, "enum_value", f"{value!r} not in {literals}")]
        candidates = [a for a in args if a is not _NONE and _fits(value, a)]
        if isinstance(value, dict) and len(candidates) > 1:  # default_source: Card | Source...
            named = [
                a for a in candidates if getattr(a, "OBJECT_NAME", None) == value.get("object")
            ]
            candidates = named or candidates
        if not candidates:
            return [self._wrong(value, " | ".join(map(_name, args)), path)]
        return self.check(value, candidates[0], path)

    def _mapping(self, value: Any, item: Any, path: str) -> list[Violation]:
        if not isinstance(value, dict):
            return [self._wrong(value, "object", path)]
        return [v for k, e in value.items() for v in self.check(e, item, f"{path}.{k}")]

    def _list_object(self, value: Any, item: Any, path: str) -> list[Violation]:
        if not isinstance(value, dict):
            return [self._wrong(value, "list object", path)]
        hints = {"object": Literal["list"], **self.fields(ListObject)}
        hints["data"] = list[item]
        violations = self._keys(value, set(hints), {}, path)
        for key, hint in hints.items():
            if key in value:
                violations += self.check(value[key], hint, f"{path}.{key}")
            else:
                violations.append(Violation(f"{path}.{key}", "missing_field", ""))
        return violations

    def _object(self, value: Any, cls: type, path: str) -> list[Violation]:
        if not isinstance(value, dict):
            return [self._wrong(value, cls.__qualname__, path)]
        hints = self.fields(cls)
        object_name = getattr(cls, "OBJECT_NAME", None)
        if object_name:
            self.counts[object_name] += 1
        # A deleted object is a stub (`id`, `object`, `deleted: true`): nothing else is due.
        due = {} if value.get("deleted") is True else hints
        violations = self._keys(value, set(hints), due, path)
        if due and object_name:
            sent = self.sent_by_default.get(object_name, set()) & set(hints)
            sent -= _left_out(object_name, value)
            violations += [
                Violation(f"{path}.{k}", "missing_field", "Stripe sends it (fixtures3)")
                for k in sorted(sent - set(value))
                if _optional(hints[k])  # the non-Optional ones are reported above
            ]
        for key, hint in hints.items():
            if key in value:
                violations += self.check(value[key], hint, f"{path}.{key}")
        if cls.__qualname__ == "Event.Data":
            violations += self._event_data(value, path)
        return violations

    def _event_data(self, data: dict, path: str) -> list[Violation]:
        """`data.object` as the class it names; `previous_attributes` as part of one."""
        obj = data.get("object")
        violations = self.validate(obj, f"{path}.object")
        cls = self.class_for(obj.get("object")) if isinstance(obj, dict) else None
        previous = data.get("previous_attributes")
        if cls is not None and isinstance(previous, dict):
            violations += self.validate_partial(previous, cls, f"{path}.previous_attributes")
        return violations

    def _keys(self, value: dict, known: set[str], hints: dict, path: str) -> list[Violation]:
        """Keys the class does not declare, and declared non-Optional keys that are absent."""
        unknown = [Violation(f"{path}.{k}", "unknown_field", "") for k in value if k not in known]
        missing = [
            Violation(f"{path}.{k}", "missing_field", _name(h))
            for k, h in hints.items()
            if k not in value and not _optional(h)
        ]
        return unknown + missing

    def _scalar(self, value: Any, hint: Any, path: str) -> list[Violation]:
        return [] if _fits(value, hint) else [self._wrong(value, _name(hint), path)]

    @staticmethod
    def _wrong(value: Any, expected: str, path: str) -> Violation:
        return Violation(path, "wrong_type", f"expected {expected}, got {value!r:.80}")


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) is Union and _NONE in typing.get_args(hint)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value is of the kind a type wants (shallow: the deep check follows)."""
    origin = typing.get_origin(hint) or hint
    if hint is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin is bool:
        return isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is str:
        return isinstance(value, str)
    if origin is Decimal:
        return isinstance(value, str) and _decimal(value)
    if origin is list:
        return isinstance(value, list)
    if origin is dict or (isinstance(origin, type) and issubclass(origin, StripeObject)):
        return isinstance(value, dict)
    return False


def _decimal(text: str) -> bool:
    try:
        Decimal(text)
    except InvalidOperation:
        return False
    return True


def _name(hint: Any) -> str:
    return getattr(hint, "__qualname__", None) or str(hint).replace("typing.", "")
