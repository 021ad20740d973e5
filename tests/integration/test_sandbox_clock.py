"""When the sandbox clock passes a scheduled change (a cancel taking effect, a trial
ending), each API shows it as the real ones do: Stripe sends an event, Recurly and
Chargebee stamp updated_at, so incremental syncs see it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billing_clients.sdk import chargebee_client, recurly_client, stripe_client
from sandbox.server import DEFAULT_API_KEY
from tests.small_scenarios import one_subscription_per_system

pytestmark = pytest.mark.integration
AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
ENDS = datetime(2026, 7, 5, tzinfo=UTC)


def test_a_scheduled_cancel_taking_effect_is_visible_to_incremental_reads(serve_scenario):
    sandbox = serve_scenario(
        one_subscription_per_system(
            canceled_at="2026-06-20T00:00:00Z", ended_at="2026-07-05T00:00:00Z"
        )
    )
    stripe = stripe_client(DEFAULT_API_KEY, sandbox.urls["stripe"])
    recurly = recurly_client(DEFAULT_API_KEY, sandbox.urls["recurly"])
    chargebee = chargebee_client(DEFAULT_API_KEY, base_url=sandbox.urls["chargebee"])
    since = int(AS_OF.timestamp())
    assert not stripe.v1.events.list(params={"created": {"gte": since}}).data

    sandbox.clock.set(ENDS + timedelta(days=1))

    events = stripe.v1.events.list(params={"created": {"gte": since}}).data
    assert [(e.type, e.created, e.data.object.id, e.data.object.status) for e in events] == [
        ("customer.subscription.deleted", int(ENDS.timestamp()), "sub_1", "canceled")
    ]
    recurly_subs = list(
        recurly.list_subscriptions(
            params={"sort": "updated_at", "begin_time": AS_OF.isoformat()}
        ).items()
    )
    assert [(s.id, s.state, s.updated_at) for s in recurly_subs] == [("rsub1", "expired", ENDS)]
    listed = chargebee.Subscription.list(
        {"updated_at[after]": since, "sort_by[asc]": "updated_at"}
    ).list
    assert [
        (e.subscription.id, e.subscription.status, e.subscription.updated_at) for e in listed
    ] == [("cb-sub-1", "cancelled", int(ENDS.timestamp()))]


def test_a_renewal_is_visible_to_incremental_reads(serve_scenario):
    """A new billing period changes the subscription (its current period): Stripe sends
    `customer.subscription.updated`, Recurly and Chargebee stamp updated_at, every period."""
    sandbox = serve_scenario(one_subscription_per_system())
    stripe = stripe_client(DEFAULT_API_KEY, sandbox.urls["stripe"])
    recurly = recurly_client(DEFAULT_API_KEY, sandbox.urls["recurly"])
    chargebee = chargebee_client(DEFAULT_API_KEY, base_url=sandbox.urls["chargebee"])

    for renewal in (ENDS, datetime(2026, 8, 5, tzinfo=UTC)):  # monthly, on the 5th
        sandbox.clock.set(renewal + timedelta(days=1))
        at = int(renewal.timestamp())
        [event] = stripe.v1.events.list(params={"created": {"gte": at}}).data
        assert (event.type, event.created) == ("customer.subscription.updated", at)
        # The period lives on the items at this API version: the items changed.
        previous = event.data.previous_attributes["items"]["data"][0]
        assert previous["current_period_end"] == at
        item = stripe.v1.subscriptions.retrieve("sub_1")["items"].data[0]
        assert item.current_period_start == at
        [sub] = recurly.list_subscriptions(
            params={"sort": "updated_at", "begin_time": renewal.isoformat()}
        ).items()
        assert (sub.updated_at, sub.current_period_started_at) == (renewal, renewal)
        [entry] = chargebee.Subscription.list({"updated_at[after]": at - 1}).list
        assert (entry.subscription.updated_at, entry.subscription.current_term_start) == (at, at)
