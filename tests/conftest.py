"""Shared fixtures: tool state kept inside the test run, and sandboxes on free ports."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

from sandbox.app import Sandbox, start_sandbox
from sandbox.scenario import validate_scenario


@pytest.fixture
def serve_scenario() -> Iterator[Callable[..., Sandbox]]:
    """Factory: `serve_scenario(doc, frozen=True, faults=..., rate_limits=...)` validates a
    scenario document and serves it on free loopback ports; stopped after the test."""
    started: list[Sandbox] = []

    def serve(doc: dict, **options) -> Sandbox:
        options.setdefault("frozen", True)
        sandbox = start_sandbox(validate_scenario(doc), **options)
        started.append(sandbox)
        return sandbox

    yield serve
    for sandbox in started:
        sandbox.stop()
