"""`retention sandbox …`: generate scenarios and serve them as local billing APIs."""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from billing_clients.targets import SANDBOX_PORTS
from sandbox.network import (
    CHARGEBEE_PLANS,
    DEFAULT_CHARGEBEE_PLAN,
    LIMIT_MODES,
    Latency,
    RateLimits,
    per_system,
    vendor_limits,
)
from sandbox.scenario import CATALOGS, ScenarioError, json_schema, load_scenario, parse_ts
from sandbox.server import DEFAULT_API_KEY, FaultConfig

DEFAULT_PORTS = SANDBOX_PORTS  # where the pipeline looks for a sandbox


def _timestamp(_ctx, _param, value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        return parse_ts(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc}; write e.g. 2026-06-30T00:00:00Z") from None


@click.group(short_help="Local Stripe, Recurly and Chargebee emulators, scenarios.")
def sandbox() -> None:
    """Local Stripe, Recurly and Chargebee emulators and their scenarios."""


@sandbox.command(short_help="Write a deterministic scenario file.")
@click.option("--customers", type=click.IntRange(min=1), default=3000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--as-of",
    callback=_timestamp,
    help="The scenario's clock (UTC, e.g. 2026-06-30T00:00:00Z). Default: today 00:00 UTC.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def generate(customers: int, seed: int, as_of: datetime, out: Path) -> None:
    """Write a deterministic scenario: the same seed and as_of give the same file."""
    from sandbox.generate import GenerateOptions, write_scenario

    started = time.perf_counter()
    counts = write_scenario(GenerateOptions(customers=customers, seed=seed, as_of=as_of), out)
    took = time.perf_counter() - started
    click.echo(f"wrote {out} (as_of {as_of:%Y-%m-%dT%H:%M:%SZ}, seed {seed}) in {took:.1f}s")
    for section, rows in counts.items():
        click.echo(f"  {section:<14} {rows:>10,}")


@sandbox.command()
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def validate(scenario: Path) -> None:
    """Check a scenario file against the schema and say what is wrong."""
    try:
        loaded = load_scenario(scenario)
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"{scenario}: valid; {len(loaded.subscriptions):,} subscriptions, "
        f"{len(loaded.exit_sessions):,} exit sessions, as_of {loaded.as_of.isoformat()}"
    )


@sandbox.command(short_help="Print the scenario format as JSON Schema.")
def schema() -> None:
    """Print the scenario format as JSON Schema (from the models `validate` checks with)."""
    click.echo(json.dumps(json_schema(), indent=2, ensure_ascii=False))


def _faults(rate_429: float, rate_500: float, rate_drop: float, seed: int | None) -> FaultConfig:
    return FaultConfig(rate_429=rate_429, rate_500=rate_500, rate_drop=rate_drop, seed=seed)


def _per_system_option(ctx: click.Context, param: click.Parameter, value: str) -> dict[str, str]:
    """A serve flag's value per system (`300`, `live,chargebee=test`, `stripe=300`)."""
    try:
        return per_system(value, DEFAULT_PORTS, f"--{param.name.replace('_', '-')}")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _latencies(
    latency_ms: dict[str, str], jitter_ms: dict[str, str], seed: int | None
) -> dict[str, Latency]:
    """Each system's latency model from the --latency-ms and --jitter-ms values."""
    try:
        return {
            system: Latency(float(latency_ms.get(system, 0)), float(jitter_ms.get(system, 0)), seed)
            for system in DEFAULT_PORTS
        }
    except ValueError as exc:
        raise click.BadParameter(
            f"{exc}; write milliseconds, e.g. --latency-ms 300 --jitter-ms 100",
            param_hint="--latency-ms/--jitter-ms",
        ) from None


def _rate_limits(modes: dict[str, str], chargebee_plan: str) -> dict[str, RateLimits | None]:
    """Each system's documented limits from the --rate-limits value (a system not named
    is off)."""
    try:
        return {
            system: vendor_limits(system, modes.get(system, "off"), chargebee_plan)
            for system in DEFAULT_PORTS
        }
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--rate-limits") from None


def _chargebee_options(catalog: str | None, pause: bool) -> dict:
    """Chargebee emulator settings from the serve flags; no catalog = the scenario's."""
    return {"pause_feature": pause} | ({"product_catalog": catalog} if catalog else {})


@sandbox.command(short_help="Serve a scenario as Stripe, Recurly and Chargebee APIs.")
@click.option(
    "--scenario",
    "scenario_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--stripe-port", type=int, default=DEFAULT_PORTS["stripe"], show_default=True)
@click.option("--recurly-port", type=int, default=DEFAULT_PORTS["recurly"], show_default=True)
@click.option("--chargebee-port", type=int, default=DEFAULT_PORTS["chargebee"], show_default=True)
@click.option(
    "--api-key",
    default=DEFAULT_API_KEY,
    show_default=True,
    help="The key all three accept, and the admin calls need.",
)
@click.option("--frozen", is_flag=True, help="Keep the clock at as_of instead of running on.")
@click.option(
    "--fault-429", type=click.FloatRange(0, 1), default=0.0, help="Share of requests answered 429."
)
@click.option("--fault-500", type=click.FloatRange(0, 1), default=0.0, help="Share answered 500.")
@click.option(
    "--fault-drop", type=click.FloatRange(0, 1), default=0.0, help="Share of dropped connections."
)
@click.option("--fault-seed", type=int, default=None, help="Seed for repeatable fault draws.")
@click.option(
    "--extra-api-key",
    "extra_keys",
    multiple=True,
    help="Another key the three APIs accept, with its own rate-limit budget (repeatable).",
)
@click.option(
    "--latency-ms",
    default="0",
    show_default=True,
    callback=_per_system_option,
    help="Delay of each API request in ms: one value, or per system (stripe=300,recurly=200).",
)
@click.option(
    "--jitter-ms",
    default="0",
    show_default=True,
    callback=_per_system_option,
    help="Spread of the delay: uniform within ± this many ms; one value or per system.",
)
@click.option("--latency-seed", type=int, default=None, help="Seed for repeatable latency draws.")
@click.option(
    "--rate-limits",
    default="off",
    show_default=True,
    callback=_per_system_option,
    help=(
        f"The vendors' documented rate limits per API key: {'|'.join(LIMIT_MODES)}, with "
        "per-system overrides (live,chargebee=test). Stripe's mode follows the key's "
        "sk_live_/sk_test_ prefix; Recurly test = sandbox site, live = production site; "
        "Chargebee test = test site, live = --chargebee-plan."
    ),
)
@click.option(
    "--chargebee-plan",
    type=click.Choice(list(CHARGEBEE_PLANS)),
    default=DEFAULT_CHARGEBEE_PLAN,
    show_default=True,
    help="The live Chargebee site's plan, whose per-minute limit --rate-limits live applies.",
)
@click.option(
    "--chargebee-catalog",
    type=click.Choice(list(CATALOGS)),
    default=None,
    help="Chargebee site's Product Catalog (default: the scenario's, else 2.0).",
)
@click.option(
    "--chargebee-pause/--no-chargebee-pause",
    default=True,
    show_default=True,
    help="Whether the Chargebee site has its Pause subscription feature on.",
)
def serve(
    scenario_path: Path,
    host: str,
    stripe_port: int,
    recurly_port: int,
    chargebee_port: int,
    api_key: str,
    frozen: bool,
    fault_429: float,
    fault_500: float,
    fault_drop: float,
    fault_seed: int | None,
    extra_keys: tuple[str, ...],
    latency_ms: dict[str, str],
    jitter_ms: dict[str, str],
    latency_seed: int | None,
    rate_limits: dict[str, str],
    chargebee_plan: str,
    chargebee_catalog: str | None,
    chargebee_pause: bool,
) -> None:
    """Serve the scenario as Stripe, Recurly and Chargebee APIs until stopped."""
    from sandbox.app import start_sandbox

    latency = _latencies(latency_ms, jitter_ms, latency_seed)
    limits = _rate_limits(rate_limits, chargebee_plan)
    try:
        scenario = load_scenario(scenario_path)
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    ports = {"stripe": stripe_port, "recurly": recurly_port, "chargebee": chargebee_port}
    systems = tuple(ports)
    try:
        running = start_sandbox(
            scenario,
            host=host,
            ports=ports,
            api_key=api_key,
            frozen=frozen,
            faults={s: _faults(fault_429, fault_500, fault_drop, fault_seed) for s in systems},
            rate_limits=limits,
            latency=latency,
            extra_keys=extra_keys,
            options={"chargebee": _chargebee_options(chargebee_catalog, chargebee_pause)},
        )
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}: {exc}; pick other ports") from None
    click.echo(
        f"sandbox clock starts at {scenario.as_of.isoformat()} ({'frozen' if frozen else 'running'})"
    )
    for system, url in running.urls.items():
        model = latency[system]
        limit = rate_limits.get(system, "off")
        click.echo(
            f"  {system:<10} {url}  latency {model.mean_ms:g}±{model.jitter_ms:g} ms, "
            f"rate limits {limit}{f' ({chargebee_plan})' if system == 'chargebee' and limit == 'live' else ''}"
        )
    click.echo(
        f"API key (all three): {api_key}" + (f" and {len(extra_keys)} more" if extra_keys else "")
    )
    click.echo("Press Ctrl-C to stop.", nl=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
        click.echo("sandbox stopped")
