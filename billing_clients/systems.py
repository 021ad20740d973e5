"""Every billing system the project speaks, in the project's order: the one Python list.

It lives in the billing-client layer because the dlt sources, the write-backs and the
orchestration all need it, and each of them may import this layer (sources never import
orchestration). dbt keeps its own copy (`dbt_project/macros/billing_systems.sql` and the
defaults in `dbt_project.yml`), checked against this one by
tests/unit/test_billing_systems.py; the sandbox keeps its own on purpose, since it stands
in for the vendors.
"""

from __future__ import annotations

from typing import Literal, get_args

BillingSystem = Literal["stripe", "recurly", "chargebee"]
BILLING_SYSTEMS: tuple[BillingSystem, ...] = get_args(BillingSystem)
