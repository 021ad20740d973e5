"""Recurly's own OpenAPI description (v2021-02-25) as a validator of JSON answers.

The vendor's file is the authority, not our emulator: every body the emulator sends is
checked against the response schema of the operation that served it (method, path
template, status; `default` when the status is not listed). Rules, from the file as
Recurly publishes it:

- unknown field: the file declares no `additionalProperties` anywhere, so a property a
  schema does not list is one the real API does not send;
- type and format: `string`/`integer`/`number`/`boolean`/`array`/`object`; `date-time`
  strings in the spelling the SDK parses (`%Y-%m-%dT%H:%M:%S%z`); `maxLength`;
- enum: a value outside the schema's list;
- required: a listed property must be present and not null;
- null: the file marks nothing `nullable`, yet the API and its SDK use null for "not
  set" on any optional property (`canceled_at`, `company`, ...). So null is accepted for
  an optional property and refused for a required one and for an array item.

`$ref`s are resolved against `components`, `allOf` parts merged (properties, required).
Errors are `{"error": {...}}` on the wire; the inner object is what `Error` describes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

SPEC_PATH = (
    Path(__file__).resolve().parents[2]
    / ".."
    / "shared"
    / "specs"
    / "recurly-openapi-v2021-02-25.yaml"
)
_REF_PREFIX = "#/components/schemas/"
_DATE_TIME = "%Y-%m-%dT%H:%M:%S%z"
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


@dataclass
class Schema:
    """One schema with its `allOf` parts merged and its name (for counts and messages)."""

    name: str
    raw: dict[str, Any]
    properties: dict[str, Any] = field(default_factory=dict)
    required: frozenset[str] = frozenset()


class RecurlySpec:
    """The parsed OpenAPI document: response schemas by operation, resolved schemas."""

    def __init__(self, document: dict[str, Any]):
        self.document = document
        self.schemas: dict[str, dict] = document["components"]["schemas"]
        self._merged: dict[int, Schema] = {}

    @classmethod
    def load(cls, path: Path = SPEC_PATH) -> RecurlySpec:
        """Parse the 1.6 MB file with libyaml (a second instead of a minute)."""
        with path.open() as handle:
            return cls(yaml.load(handle, Loader=yaml.CSafeLoader))

    @cached_property
    def _templates(self) -> list[tuple[re.Pattern, str]]:
        """Path templates as patterns, the most literal first (`/change` before `{id}`)."""
        templates = sorted(self.document["paths"], key=lambda t: -len(re.sub(r"{[^}]+}", "", t)))
        return [(re.compile("^" + re.sub(r"{[^}]+}", "[^/]+", t) + "$"), t) for t in templates]

    def template(self, path: str) -> str:
        """The documented path template a concrete path matches."""
        bare = path.split("?")[0]
        for pattern, template in self._templates:
            if pattern.match(bare):
                return template
        raise KeyError(f"{path}: no such path in Recurly's API")

    def response_schema(self, method: str, path: str, status: int) -> dict[str, Any] | None:
        """The schema of the body the operation documents for this status (None: no body)."""
        template = self.template(path)
        operation = self.document["paths"][template].get(method.lower())
        if operation is None:
            raise KeyError(f"{method} {template}: no such operation in Recurly's API")
        responses = operation["responses"]
        response = responses.get(str(status)) or responses.get("default")
        if response is None:
            raise KeyError(f"{method} {template}: status {status} is not documented")
        content = response.get("content") or {}
        return content.get("application/json", {}).get("schema")

    def resolve(self, schema: dict[str, Any], name: str = "") -> Schema:
        """A schema with `$ref` followed and `allOf` merged (cached per schema object)."""
        key = id(schema)
        if key in self._merged:
            return self._merged[key]
        ref = schema.get("$ref")
        if ref:
            target = ref.removeprefix(_REF_PREFIX)
            merged = self.resolve(self.schemas[target], target)
        else:
            merged = Schema(name or schema.get("title", "(inline)"), schema)
            merged.properties = dict(schema.get("properties") or {})
            required = set(schema.get("required") or ())
            for part in schema.get("allOf") or ():
                resolved = self.resolve(part)
                merged.properties.update(resolved.properties)
                required |= resolved.required
                if "type" not in merged.raw and "type" in resolved.raw:
                    merged.raw = {**resolved.raw, **merged.raw}
            merged.required = frozenset(required)
        self._merged[key] = merged
        return merged


class Validator:
    """Collects violations and counts validated objects per schema name."""

    def __init__(self, spec: RecurlySpec):
        self.spec = spec
        self.violations: list[str] = []
        self.counts: Counter[str] = Counter()

    def answer(self, method: str, path: str, status: int, body: Any) -> None:
        """Check one HTTP answer against its operation's documented response."""
        schema = self.spec.response_schema(method, path, status)
        where = f"{method} {path.split('?')[0]} {status}"
        if schema is None:
            if body not in (None, b"", ""):
                self.violations.append(f"{where}: a body where the API documents none")
            return
        if status >= 400:
            if not isinstance(body, dict) or set(body) != {"error"}:
                self.violations.append(f"{where}: an error body must be {{'error': {{...}}}}")
                return
            body = body["error"]
        self.value(body, schema, where)

    def value(self, value: Any, schema: dict[str, Any], where: str) -> None:
        resolved = self.spec.resolve(schema)
        kind = resolved.raw.get("type") or ("object" if resolved.properties else None)
        if kind is not None and not _is_type(value, kind):
            self.violations.append(f"{where}: {value!r} is not of type {kind}")
            return
        if "enum" in resolved.raw and value not in resolved.raw["enum"]:
            self.violations.append(f"{where}: {value!r} is not in the enum of {resolved.name}")
        if kind == "string":
            self._string(value, resolved.raw, where)
        elif kind == "array":
            items = resolved.raw.get("items") or {}
            for index, item in enumerate(value):
                if item is None:
                    self.violations.append(f"{where}[{index}]: null array item")
                else:
                    self.value(item, items, f"{where}[{index}]")
        elif kind == "object":
            self._object(value, resolved, where)

    def _string(self, value: str, raw: dict[str, Any], where: str) -> None:
        limit = raw.get("maxLength")
        if limit is not None and len(value) > limit:
            self.violations.append(f"{where}: {value!r} is longer than {limit}")
        if raw.get("format") == "date-time":
            try:
                datetime.strptime(value, _DATE_TIME)
            except ValueError:
                self.violations.append(f"{where}: {value!r} is not a Recurly date-time")

    def _object(self, value: dict, schema: Schema, where: str) -> None:
        self.counts[schema.name] += 1
        for name in sorted(schema.required):
            if value.get(name) is None:
                self.violations.append(f"{where}.{name}: required ({schema.name}) but missing")
        for name, item in value.items():
            spec = schema.properties.get(name)
            if spec is None:
                self.violations.append(f"{where}.{name}: unknown field of {schema.name}")
            elif item is not None:
                self.value(item, spec, f"{where}.{name}")


def _is_type(value: Any, kind: str) -> bool:
    """JSON types: a bool is neither an integer nor a number."""
    allowed = _TYPES.get(kind)
    if allowed is None:
        return True
    if isinstance(value, bool) and kind != "boolean":
        return False
    return isinstance(value, allowed)
