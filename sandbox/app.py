"""Start the three emulators from one scenario, on one clock, in this process."""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox.chargebee_api import ChargebeeEmulator
from sandbox.clock import Clock
from sandbox.network import Latency, RateLimits
from sandbox.recurly_api import RecurlyEmulator
from sandbox.scenario import BILLING_SYSTEMS, Scenario
from sandbox.server import DEFAULT_API_KEY, Emulator, FaultConfig, RunningServer
from sandbox.store import SystemStore
from sandbox.stripe_api import StripeEmulator

EMULATORS: dict[str, type[Emulator]] = {
    "stripe": StripeEmulator,
    "recurly": RecurlyEmulator,
    "chargebee": ChargebeeEmulator,
}


@dataclass
class Sandbox:
    """Running emulators keyed by billing system; `urls` are their base addresses."""

    scenario: Scenario
    clock: Clock
    api_key: str
    servers: dict[str, RunningServer] = field(default_factory=dict)

    @property
    def urls(self) -> dict[str, str]:
        return {name: server.url for name, server in self.servers.items()}

    def emulator(self, system: str) -> Emulator:
        return self.servers[system].emulator

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def _site_options(scenario: Scenario, system: str) -> dict:
    """Emulator settings the scenario states: the Chargebee site's Product Catalog."""
    if system == "chargebee":
        return {"product_catalog": scenario.chargebee_product_catalog}
    return {}


def start_sandbox(
    scenario: Scenario,
    host: str = "127.0.0.1",
    ports: dict[str, int] | None = None,
    api_key: str = DEFAULT_API_KEY,
    frozen: bool = False,
    faults: dict[str, FaultConfig] | None = None,
    rate_limits: dict[str, RateLimits | None] | None = None,
    systems: tuple[str, ...] = BILLING_SYSTEMS,
    options: dict[str, dict] | None = None,
    latency: dict[str, Latency] | None = None,
    extra_keys: tuple[str, ...] = (),
) -> Sandbox:
    """Serve each billing system on `host` (port 0 = a free port) until `stop()`.
    `options`: per system, settings of its emulator (e.g. Chargebee's `pause_feature`);
    `rate_limits` and `latency`: per system, its network model (`sandbox.network`;
    none = answer at once, never refuse); `extra_keys`: keys accepted beside `api_key`."""
    clock = Clock(scenario.as_of, frozen=frozen)
    sandbox = Sandbox(scenario=scenario, clock=clock, api_key=api_key)
    for system in systems:
        emulator = EMULATORS[system](
            SystemStore(scenario, system, clock),
            api_key=api_key,
            faults=(faults or {}).get(system),
            rate_limits=(rate_limits or {}).get(system),
            latency=(latency or {}).get(system),
            extra_keys=extra_keys,
            **_site_options(scenario, system) | (options or {}).get(system, {}),
        )
        sandbox.servers[system] = RunningServer(emulator, host, (ports or {}).get(system, 0))
    return sandbox
