"""Where a run points, per billing system, said explicitly: `RETENTION_ENVIRONMENT`
(`sandbox`, the default, or `live`), or `SOURCES__<SYSTEM>__ENVIRONMENT` for one system.
Live needs the system's key and fails at once, naming the variable, without it; a key set
while the system points at the sandbox fails too, rather than being ignored. The sources,
the write-backs and the CLI all ask here, so they cannot point at different places.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

ENVIRONMENT_ENV = "RETENTION_ENVIRONMENT"
ENVIRONMENTS = ("sandbox", "live")
# The local sandbox's defaults (`retention sandbox serve` listens there and accepts the key).
SANDBOX_PORTS = {"stripe": 12111, "recurly": 12112, "chargebee": 12113}
SANDBOX_API_KEY = "sk_test_sandbox"


class TargetError(ValueError):
    """A system's settings contradict each other or miss what they need; the message names
    the variable to set."""


@dataclass(frozen=True)
class Target:
    """Where one billing source reads from. The key is kept out of repr and logs."""

    system: str
    api_key: str = field(repr=False)
    base_url: str | None
    site: str | None = None

    @property
    def is_sandbox(self) -> bool:
        return self.base_url is not None and self.api_key == sandbox_key()

    def describe(self) -> str:
        return f"{self.system}: {'sandbox at ' + self.base_url if self.is_sandbox else self.base_url or 'the real service'}"


def sandbox_key(env: Mapping[str, str] = os.environ) -> str:
    return env.get("SANDBOX_API_KEY", SANDBOX_API_KEY)


def environment(system: str, env: Mapping[str, str] = os.environ) -> str:
    """`sandbox` or `live` for `system`: its own setting, else the global one, else the
    sandbox."""
    for name in (f"SOURCES__{system.upper()}__ENVIRONMENT", ENVIRONMENT_ENV):
        value = (env.get(name) or "").strip().lower()
        if value:
            if value not in ENVIRONMENTS:
                raise TargetError(f"{name}={env[name]}: choose sandbox or live")
            return value
    return "sandbox"


def resolve_target(system: str, env: Mapping[str, str] = os.environ) -> Target:
    """The real service when `system` is live (its key required), else the local sandbox
    (a key of the real service refused, not ignored)."""
    prefix = f"SOURCES__{system.upper()}__"
    key = env.get(prefix + "API_KEY")
    base_url = env.get(prefix + "BASE_URL")
    site = env.get(prefix + "SITE")
    real_key = bool(key) and key != sandbox_key(env)
    if environment(system, env) == "live":
        if not real_key:
            raise TargetError(
                f"{system} is live but {prefix}API_KEY is not set (environment or .env): set "
                f"it, or {prefix}ENVIRONMENT=sandbox to use the local sandbox"
            )
        return Target(system, key, base_url, site)
    if real_key:
        raise TargetError(
            f"{prefix}API_KEY is set but {system} points at the local sandbox: set "
            f"{ENVIRONMENT_ENV}=live (or {prefix}ENVIRONMENT=live) to use the real service, "
            f"or unset the key"
        )
    default_url = f"http://127.0.0.1:{SANDBOX_PORTS[system]}"
    return Target(system, sandbox_key(env), base_url or default_url, site)


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
    variable = f"SOURCES__{target.system.upper()}__"
    if target.is_sandbox:
        return (
            f"{where}: start the sandbox with `retention sandbox serve`, or set "
            f"{variable}API_KEY to read the real {target.system}"
        )
    return f"{where}: check {variable}BASE_URL"
