"""The sandbox in its own process for benchmarks, so client and server do not share one
interpreter (as in the demo and in production, where the APIs are elsewhere)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CLI = [sys.executable, "-m", "orchestration.cli", "sandbox"]


def generate(path: Path, customers: int, seed: int) -> None:
    subprocess.run(
        [
            *CLI,
            "generate",
            "--customers",
            str(customers),
            "--seed",
            str(seed),
            "--as-of",
            "2026-06-30T00:00:00Z",
            "--out",
            str(path),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


@contextmanager
def served(scenario: Path, ports: dict[str, int], timeout: float = 600) -> Iterator[None]:
    """`retention sandbox serve --frozen` on the given ports until the block ends."""
    process = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--scenario",
            str(scenario),
            "--frozen",
            *[f"--{system}-port={port}" for system, port in ports.items()],
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait(process, ports.values(), time.monotonic() + timeout)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait(process: subprocess.Popen, ports, deadline: float) -> None:
    for port in ports:
        while True:
            if process.poll() is not None:
                raise SystemExit("the sandbox exited before listening")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the sandbox did not start in time") from None
                time.sleep(0.2)
