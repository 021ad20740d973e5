"""Webhooks out: signed events (exit sessions, validation results) delivered at least once
to the endpoints of webhooks.yml, through an outbox in the collector's state database."""
