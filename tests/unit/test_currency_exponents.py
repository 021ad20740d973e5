"""The pipeline's and the emulators' currency exponents agree, per billing system.

Two tables on purpose (DECISIONLOG "Currency exponents: one table per side"): the dbt macro
`minor_to_major` is how the pipeline reads amounts, `sandbox.scenario.currency_exponent`
is how the emulators, standing in for the vendors, write them. This test renders the real
macro with Jinja and checks every currency it names, and a few it does not, against the
emulators' table, so the two cannot drift apart unnoticed."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import pytest

from sandbox.scenario import (
    CHARGEBEE_ZERO_DECIMAL_CURRENCIES,
    THREE_DECIMAL_CURRENCIES,
    ZERO_DECIMAL_CURRENCIES,
    currency_exponent,
)

MACROS = Path(__file__).parents[2] / "dbt_project" / "macros" / "staging.sql"
# Systems whose API sends minor units (Recurly sends major-unit decimals: no conversion).
MINOR_UNIT_SYSTEMS = ("stripe", "chargebee")
# Currencies no list names: the default (÷ 100) must hold for them on both sides.
ORDINARY = ("USD", "EUR", "GBP", "CHF", "INR")


def macro_exponents(system: str) -> dict[str, int]:
    """Each currency the macro names for `system`, with its exponent as the macro applies
    it (the divisor of its `when` branch: 1 → 0, 1000 → 3). `minor_to_major` divides the
    amount by `minor_unit_divisor`, which holds the lists: that one is rendered."""
    module = jinja2.Environment().from_string(MACROS.read_text()).module
    sql = str(module.minor_unit_divisor("currency", system))
    exponents: dict[str, int] = {}
    for names, divisor in re.findall(r"in \(([^)]*)\) then (\d+)", sql):
        for name in re.findall(r"'([A-Z]{3})'", names):
            exponents[name] = len(divisor) - 1
    assert exponents, f"no currency list found in minor_unit_divisor for {system}: {sql}"
    return exponents


@pytest.mark.parametrize("system", MINOR_UNIT_SYSTEMS)
def test_the_macro_and_the_emulators_give_every_named_currency_the_same_exponent(system):
    from_macro = macro_exponents(system)
    from_emulators = {currency: currency_exponent(currency, system) for currency in from_macro}
    assert from_macro == from_emulators


@pytest.mark.parametrize("system", MINOR_UNIT_SYSTEMS)
def test_the_macro_names_every_currency_the_emulators_treat_specially(system):
    special = (
        CHARGEBEE_ZERO_DECIMAL_CURRENCIES
        if system == "chargebee"
        else ZERO_DECIMAL_CURRENCIES | THREE_DECIMAL_CURRENCIES
    )
    assert special <= set(macro_exponents(system))


@pytest.mark.parametrize("system", MINOR_UNIT_SYSTEMS)
def test_ordinary_currencies_have_two_decimals_on_both_sides(system):
    named = macro_exponents(system)
    assert all(currency not in named for currency in ORDINARY)
    assert {currency_exponent(c, system) for c in ORDINARY} == {2}
