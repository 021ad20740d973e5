"""Billing write-backs: what visitors did on the cancel page, applied in Stripe, Recurly
and Chargebee exactly once (catalog → derive → ledger → runner → systems)."""
