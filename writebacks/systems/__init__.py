"""Billing writers per system, pointed where the extraction points (`resolve_target`):
the real service where the system is live, else the local sandbox."""

from __future__ import annotations

import importlib

from billing_clients.pacing import shared_bucket
from billing_clients.targets import Settings, resolve_target
from writebacks.systems.base import BillingWriter

WRITERS = {
    "stripe": ("writebacks.systems.stripe", "StripeWriter"),
    "recurly": ("writebacks.systems.recurly", "RecurlyWriter"),
    "chargebee": ("writebacks.systems.chargebee", "ChargebeeWriter"),
}


def writer_for(system: str, settings: Settings | None = None) -> BillingWriter:
    """The writer of `system`, with the key and address of its source (`settings`: dlt's
    providers, the environment and `.dlt/secrets.toml`, unless given), paced by the
    process's bucket for its key (the local sandbox, like extraction's, is not paced)."""
    target = resolve_target(system, settings)
    module, name = WRITERS[system]
    writer = getattr(importlib.import_module(module), name)
    options = {"site": target.site} if system == "chargebee" and target.site else {}
    built = writer(target.api_key, target.base_url, **options)
    if not target.is_sandbox:
        built.pacing = shared_bucket(system, target.api_key, settings=settings)
    return built
