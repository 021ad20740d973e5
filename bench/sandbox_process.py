"""The sandbox in its own process for benchmarks, so client and server do not share one
interpreter (as in the demo and in production, where the APIs are elsewhere), and the
extract that loads a warehouse from it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

# `retention sandbox` and `retention extract` through their own click commands: the benches
# need no more of the CLI (and none of its .env loading).
SANDBOX = "from sandbox.cli import sandbox; sandbox(prog_name='retention sandbox')"
EXTRACT = "from orchestration.cli import extract; extract(prog_name='retention extract')"
DROPS = (
    "import sys; from sandbox.exit_files import write_exit_session_files as write;"
    "from sandbox.scenario import load_scenario; write(load_scenario(sys.argv[1]), sys.argv[2])"
)
CLI = [sys.executable, "-c", SANDBOX]


def generate(path: Path, customers: int, seed: int) -> float:
    """Write a scenario of `customers` to `path`; the seconds it took (the benches print
    it, so a slow generator is seen where its scenarios are used)."""
    started = time.perf_counter()
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
    return time.perf_counter() - started


def drop_files(scenario: Path, folder: Path) -> None:
    """The scenario's exit sessions as drop files in `folder`, written by a child process
    (loading the scenario takes memory the bench's own figures should not include)."""
    subprocess.run([sys.executable, "-c", DROPS, str(scenario), str(folder)], check=True)


def extract(database: Path, drop: Path, ports: dict[str, int]) -> None:
    """`retention extract` into `database` of the sandbox on `ports` and the drop folder;
    dlt's state in a `dlt` folder beside the database."""
    env = os.environ | {"DLT_DATA_DIR": str(database.parent / "dlt")}
    env |= {f"SOURCES__{s.upper()}__BASE_URL": f"http://127.0.0.1:{p}" for s, p in ports.items()}
    argv = [sys.executable, "-c", EXTRACT, "--database", str(database)]
    done = subprocess.run([*argv, "--exit-sessions", str(drop)], env=env, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"retention extract failed:\n{done.stderr.decode()[-4000:]}")


@contextmanager
def served(
    scenario: Path, ports: dict[str, int], timeout: float = 600, options: Sequence[str] = ()
) -> Iterator[int]:
    """`retention sandbox serve --frozen` on the given ports until the block ends, with
    more serve `options` (latency, rate limits); yields the server's process id."""
    process = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--scenario",
            str(scenario),
            "--frozen",
            *[f"--{system}-port={port}" for system, port in ports.items()],
            *options,
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait(process, ports.values(), time.monotonic() + timeout)
        yield process.pid
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
