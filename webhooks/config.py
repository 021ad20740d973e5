"""webhooks.yml: where events go. Validated as a whole when loaded, like the write-back
catalog: every problem at once, each naming the file and the key path
(`endpoints.crm.events.0: 'validation.valid_saves' matches no event type`), and nothing
is sent from a file with problems. A missing file means no endpoints: nothing is sent.

Secrets are never written in the file: each endpoint names the environment variable that
holds its signing secret (`secret_env`), read when the file is loaded; a variable that is
unset is a problem like any other. The pydantic models below (`WebhooksFile`) are the
one definition of the format: its checks, its key paths and its JSON Schema.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from webhooks.events import EVENT_TYPES, known_pattern, matches

WEBHOOKS_ENV = "RETENTION_WEBHOOKS"
# The project's file, at the root of the checkout (RETENTION_WEBHOOKS names another).
DEFAULT_WEBHOOKS = Path(__file__).resolve().parent.parent / "webhooks.yml"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class WebhooksConfigError(ValueError):
    """webhooks.yml cannot be used; the message lists every problem found."""


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PydanticCustomError(
            "url", "{value} is not an http(s) URL with a host", {"value": repr(value)}
        )
    return value


def _pattern(value: str) -> str:
    if not known_pattern(value):
        raise PydanticCustomError(
            "event_type",
            "{value} matches no event type (expected one of {known}, a family such as "
            "validation.*, or *)",
            {"value": repr(value), "known": ", ".join(EVENT_TYPES)},
        )
    return value


Url = Annotated[str, AfterValidator(_url)]
EventPattern = Annotated[str, AfterValidator(_pattern)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
EndpointName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]
Seconds = Annotated[float, Field(gt=0)]


class _Entry(BaseModel):
    """A mapping of the file: unknown keys are refused, values taken as written."""

    model_config = ConfigDict(extra="forbid", strict=True)


class EndpointFile(_Entry):
    """One receiver: its URL, the events it takes, and the variable holding its secret."""

    url: Url = Field(description="Where events are POSTed (http or https).")
    secret_env: EnvName = Field(
        description="Name of the environment variable holding this endpoint's signing "
        "secret (never the secret itself)."
    )
    events: list[EventPattern] = Field(
        min_length=1,
        description="Event types taken: exact types, a family (exit_session.*, validation.*) or *.",
    )


class Delivery(_Entry):
    """How events are delivered. Retries: exponential backoff with full jitter from initial_backoff_seconds up to
    max_backoff_seconds; an event goes to the dead letters after max_attempts attempts
    or once older than max_age_seconds."""

    max_attempts: int = Field(12, ge=1)
    max_age_seconds: Seconds = 3 * 24 * 3600
    timeout_seconds: Seconds = 10
    initial_backoff_seconds: Seconds = 1
    max_backoff_seconds: Seconds = 600
    concurrency: int = Field(4, ge=1, description="Requests in flight at once.")
    keep_delivered_seconds: Seconds = Field(
        30 * 24 * 3600,
        description="How long a delivered event is kept (an emit of the same id within it "
        "adds nothing).",
    )


class WebhooksFile(_Entry):
    """Webhooks out (webhooks.yml): the endpoints events are signed and delivered to."""

    endpoints: dict[EndpointName, EndpointFile] = Field(
        default_factory=dict, description="Receivers by a name of your choice."
    )
    delivery: Delivery = Field(default_factory=Delivery)


def json_schema() -> dict[str, Any]:
    """The file's JSON Schema, for editors and CI."""
    return {"$schema": JSON_SCHEMA_DIALECT, **WebhooksFile.model_json_schema()}


# --------------------------------------------------------------------------- the config read


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    events: tuple[str, ...]
    # Never shown: a repr of the config (a log line, a traceback) must not carry it.
    secret: bytes = field(repr=False)

    def takes(self, event_type: str) -> bool:
        return any(matches(p, event_type) for p in self.events)


@dataclass(frozen=True)
class WebhooksConfig:
    path: Path | None
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    delivery: Delivery = field(default_factory=Delivery)

    def subscribers(self, event_type: str) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.takes(event_type)]

    def wants(self, prefix: str) -> bool:
        """Whether any endpoint takes an event type starting with `prefix` (so callers
        skip building events nobody takes)."""
        return any(
            e.takes(t) for e in self.endpoints.values() for t in EVENT_TYPES if t.startswith(prefix)
        )


def webhooks_path(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get(WEBHOOKS_ENV) or DEFAULT_WEBHOOKS)


def load_config(
    path: Path | str | None = None, env: Mapping[str, str] = os.environ
) -> WebhooksConfig:
    """Read and validate webhooks.yml and the secrets it names; `WebhooksConfigError`
    lists every problem with its key path. A missing file is no endpoints."""
    path = Path(path) if path else webhooks_path(env)
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return WebhooksConfig(path)
    except yaml.YAMLError as exc:
        raise WebhooksConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        _refuse(path, ["(top level): expected a mapping with endpoints and delivery"])
    try:
        parsed = WebhooksFile.model_validate(document)
    except ValidationError as exc:
        _refuse(path, [_problem(error) for error in exc.errors()] + _unset_secrets(document, env))
    if problems := _unset_secrets(document, env):
        _refuse(path, problems)
    endpoints = {
        name: Endpoint(name, e.url, tuple(e.events), env[e.secret_env].encode())
        for name, e in parsed.endpoints.items()
    }
    return WebhooksConfig(path, endpoints, parsed.delivery)


def _refuse(path: Path, problems: list[str]) -> NoReturn:
    listed = "\n".join(f"  {path}: {p}" for p in problems)
    raise WebhooksConfigError(f"webhooks file {path} has {len(problems)} problem(s):\n{listed}")


def _unset_secrets(document: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """Each endpoint whose secret variable is unset or empty (named, never its value)."""
    endpoints = document.get("endpoints")
    return [
        f"endpoints.{name}.secret_env: {body['secret_env']} is not set (export the "
        "endpoint's signing secret in it)"
        for name, body in (endpoints if isinstance(endpoints, dict) else {}).items()
        if isinstance(body, dict)
        and isinstance(body.get("secret_env"), str)
        and not env.get(body["secret_env"])
    ]


_WORDING = {
    "int_type": "expected int, got {input!r}",
    "float_type": "expected a number, got {input!r}",
    "string_type": "expected str, got {input!r}",
    "list_type": "expected a list, got {input!r}",
    "too_short": "expected at least one entry",
    "greater_than": "must be more than {ctx[gt]}, got {input!r}",
    "greater_than_equal": "must be at least {ctx[ge]}, got {input!r}",
    "string_pattern_mismatch": "{input!r} does not match {ctx[pattern]}",
    "model_type": "expected a mapping, got {input!r}",
    "dict_type": "expected a mapping, got {input!r}",
    "missing": "required",
}


def _problem(error: ErrorDetails) -> str:
    """A pydantic error as the file states it: key path, then what is wrong."""
    loc = [str(step) for step in error["loc"] if step != "[key]"]
    if error["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        known = ", ".join(model.model_fields) if model else ""
        return f"{'.'.join(loc)}: unknown key (expected one of {known})"
    return f"{'.'.join(loc)}: " + _WORDING.get(error["type"], "{msg}").format(**error)


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    """The model a key path leads to (the file has no unions: a plain walk)."""
    if not loc:
        return WebhooksFile
    if loc[0] == "endpoints":
        return EndpointFile if len(loc) == 2 else None
    return Delivery if loc == ["delivery"] else None
