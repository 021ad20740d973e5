"""A free TCP port for a server a test starts (the OS picks it: tests and CI runs share the
machine, so no port is fixed)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port free on 127.0.0.1 now, closed again for the server to take."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
