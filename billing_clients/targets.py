"""Where a run points, per billing system: the real service (a key in the environment)
or the local sandbox (no key), with a check that something answers there. The sources,
the write-backs and the CLI all ask here, so they cannot point at different places.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sandbox.cli import DEFAULT_PORTS
from sandbox.server import DEFAULT_API_KEY


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
    return env.get("SANDBOX_API_KEY", DEFAULT_API_KEY)


def resolve_target(system: str, env: Mapping[str, str] = os.environ) -> Target:
    """A real key switches the source to the real service; no key means the sandbox."""
    prefix = f"SOURCES__{system.upper()}__"
    key = env.get(prefix + "API_KEY")
    base_url = env.get(prefix + "BASE_URL")
    if key and key != sandbox_key(env):
        return Target(system, key, base_url, env.get(prefix + "SITE"))
    default_url = f"http://127.0.0.1:{DEFAULT_PORTS[system]}"
    return Target(system, sandbox_key(env), base_url or default_url, env.get(prefix + "SITE"))


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
