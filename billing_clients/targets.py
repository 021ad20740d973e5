"""Where a run points, per billing system, said explicitly: `RETENTION_ENVIRONMENT`
(`sandbox`, the default, or `live`), or `SOURCES__<SYSTEM>__ENVIRONMENT` for one system.
Live needs the system's key and fails at once, naming the variable, without it; a key set
while the system points at the sandbox fails too, rather than being ignored. The sources,
the write-backs and the CLI all ask here, so they cannot point at different places.

Settings are read through dlt's own config providers (`DltSettings`), in dlt's order: the
environment (`SOURCES__STRIPE__API_KEY`), then `.dlt/secrets.toml` and `.dlt/config.toml`
(`[sources.stripe] api_key`). So a key a dlt user keeps in `secrets.toml` points the
write-backs exactly where it points the source. Tests pass a plain mapping instead.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

ENVIRONMENT_ENV = "RETENTION_ENVIRONMENT"
SANDBOX_KEY_ENV = "SANDBOX_API_KEY"
ENVIRONMENTS = ("sandbox", "live")
# The local sandbox's defaults (`retention sandbox serve` listens there and accepts the key).
SANDBOX_PORTS = {"stripe": 12111, "recurly": 12112, "chargebee": 12113}
SANDBOX_API_KEY = "sk_test_sandbox"


class TargetError(ValueError):
    """A system's settings contradict each other or miss what they need; the message names
    the variable to set."""


class Settings(Protocol):
    """Where settings are looked up by their environment variable's name: a plain mapping
    (tests), or `DltSettings` (runs)."""

    def get(self, name: str, /) -> str | None: ...


def variable(system: str, setting: str) -> str:
    """The environment variable of one of a system's settings, as dlt's environment provider
    spells `sources.<system>.<setting>`: `SOURCES__STRIPE__API_KEY`."""
    return f"SOURCES__{system.upper()}__{setting.upper()}"


class DltSettings:
    """Settings through dlt's config providers, as a dlt source resolves its arguments: the
    variable `SOURCES__STRIPE__API_KEY` is the dlt key `sources.stripe.api_key`, found in
    the environment, else in `.dlt/secrets.toml`, else (not for keys: dlt keeps secrets out
    of it) `.dlt/config.toml`. `RETENTION_ENVIRONMENT` is the top-level key
    `retention_environment`. `given` (a Dagster resource's fields) wins over dlt."""

    def __init__(self, given: Mapping[str, str] | None = None) -> None:
        self.given = dict(given or {})

    def get(self, name: str, /) -> str | None:
        if name in self.given:
            return self.given[name]
        import dlt  # here, not at the top: the sandbox imports this module's defaults

        accessor = dlt.secrets if name.endswith("API_KEY") else dlt.config
        value = accessor.get(name.lower().replace("__", "."))
        return None if value is None else str(value)


def in_dlt_secrets(system: str) -> str:
    """Where dlt would read `system`'s key from a file, for messages: `.dlt/secrets.toml`
    of DLT_PROJECT_DIR, else of the working directory, then dlt's global folder."""
    from dlt.common.runtime.run_context import active

    context = active()
    return (
        f"api_key under [sources.{system}] in {Path(context.settings_dir).resolve()}/"
        f"secrets.toml (dlt reads .dlt/ of DLT_PROJECT_DIR, else of the working directory, "
        f"then {context.global_dir}/)"
    )


@dataclass(frozen=True)
class Target:
    """Where one billing source reads from. The key is kept out of repr and logs."""

    system: str
    api_key: str = field(repr=False)
    base_url: str | None
    site: str | None = None
    is_sandbox: bool = False

    def describe(self) -> str:
        where = f"sandbox at {self.base_url}" if self.is_sandbox else self.base_url
        return f"{self.system}: {where or 'the real service'}"


def sandbox_key(settings: Settings) -> str:
    return settings.get(SANDBOX_KEY_ENV) or SANDBOX_API_KEY


def environment(system: str, settings: Settings) -> str:
    """`sandbox` or `live` for `system`: its own setting, else the global one, else the
    sandbox."""
    for name in (variable(system, "environment"), ENVIRONMENT_ENV):
        value = settings.get(name)
        if value and value.strip():
            if value.strip().lower() not in ENVIRONMENTS:
                raise TargetError(f"{name}={value}: choose sandbox or live")
            return value.strip().lower()
    return "sandbox"


def resolve_target(system: str, settings: Settings | None = None) -> Target:
    """The real service when `system` is live (its key required), else the local sandbox
    (a key of the real service refused, not ignored). `settings`: dlt's providers unless
    given."""
    settings = DltSettings() if settings is None else settings
    key = settings.get(variable(system, "api_key"))
    base_url = settings.get(variable(system, "base_url"))
    site = settings.get(variable(system, "site"))
    real_key = bool(key) and key != sandbox_key(settings)
    if environment(system, settings) == "live":
        if not real_key:
            raise TargetError(
                f"{system} is live but {variable(system, 'api_key')} is not set: set it in "
                f"the environment or .env, or as {in_dlt_secrets(system)}; or set "
                f"{variable(system, 'environment')}=sandbox to use the local sandbox"
            )
        return Target(system, key, base_url, site)
    if real_key:
        raise TargetError(
            f"{variable(system, 'api_key')} is set but {system} points at the local sandbox: "
            f"set {ENVIRONMENT_ENV}=live (or {variable(system, 'environment')}=live) to use "
            "the real service, or unset the key"
        )
    default_url = f"http://127.0.0.1:{SANDBOX_PORTS[system]}"
    return Target(system, sandbox_key(settings), base_url or default_url, site, is_sandbox=True)


def unreachable(target: Target, timeout: float = 3.0) -> str | None:
    """Why `target`'s address cannot be used, with what to do; None when something answers.

    Checked before a run starts: without it, a sandbox that is not running costs minutes
    of retries and ends in errors that hide the refused connection. The real services'
    own hosts are left to the SDKs."""
    if target.base_url is None:
        return None
    parts = urlsplit(target.base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
        return None
    except OSError as exc:
        where = f"nothing answers at {parts.hostname}:{port} ({exc.strerror or exc})"
    if target.is_sandbox:
        return (
            f"{where}: start the sandbox with `retention sandbox serve`, or set "
            f"{ENVIRONMENT_ENV}=live and {variable(target.system, 'api_key')} to read the "
            f"real {target.system}"
        )
    return f"{where}: check {variable(target.system, 'base_url')}"
