"""What a billing system's writer does, in one shape for all three.

A writer turns an `Action` (what the cancel page asked for, with absolute, resolved
parameters) into that system's API request, sends it through the official SDK with the
action's idempotency key, and can tell from the subscription as read back whether the
change already holds. The runner (`writebacks.runner`) owns the order:
read, check, send, record; writers hold no state of their own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from billing_clients.pacing import TokenBucket
from billing_clients.retries import Classifier

ACTION_TYPES = ("cancel", "pause", "discount", "extension", "plan_change")


@dataclass(frozen=True)
class Action:
    """One change to apply to one subscription, derived from one exit session.

    `parameters` are resolved when the action is first derived (absolute times, the
    system's own coupon/plan ids, the cancel options) and stored in the ledger, so every
    retry sends exactly the same request.
    """

    action_id: str
    billing_system: str
    subscription_id: str
    customer_id: str | None
    action_type: str
    parameters: dict[str, Any] = field(default_factory=dict)

    def when(self, name: str) -> datetime:
        """A timestamp parameter (ISO-8601 in the ledger) as an aware datetime."""
        return datetime.fromisoformat(self.parameters[name]).astimezone(UTC)

    def unix(self, name: str) -> int:
        """A timestamp parameter in Unix seconds (Stripe's and Chargebee's wire format)."""
        return int(self.when(name).timestamp())


def from_unix(value: int | None) -> str:
    """Unix seconds from an API, for a reason a person reads."""
    return datetime.fromtimestamp(value, UTC).isoformat() if value else "none"


@dataclass(frozen=True)
class WriteRequest:
    """One API call: `operation` names the SDK method; method/path/params are what goes
    on the wire, recorded in the ledger and shown by a dry run."""

    operation: str
    method: str
    path: str
    params: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "params": self.params}


class BillingWriter(ABC):
    """The write side of one billing system."""

    system: ClassVar[str]
    classifier: ClassVar[Classifier]
    # Waited on before each request the writer sends: `writer_for` sets the process's
    # shared bucket of the writer's key (billing_clients.pacing), so write-backs and an
    # extraction in one process pace together. A writer built directly is not paced.
    pacing: TokenBucket = TokenBucket(None, name="not paced")

    @abstractmethod
    def read(self, subscription_id: str) -> dict[str, Any]:
        """The subscription as the API returns it now (a plain dict)."""

    @abstractmethod
    def request(self, action: Action, current: dict[str, Any] | None) -> WriteRequest:
        """The request that applies `action`. `current` is the subscription as read, or
        None in a dry run (which reads nothing): ids known only from it are shown as
        placeholders then."""

    @abstractmethod
    def ended(self, current: dict[str, Any]) -> str | None:
        """The subscription's status word if it has ended (no change can apply), else None."""

    @abstractmethod
    def holds(self, action: Action, current: dict[str, Any]) -> str | None:
        """Why the change of a live subscription already holds, else None."""

    def already_done(self, action: Action, current: dict[str, Any]) -> str | None:
        """Why the change already holds in billing (e.g. "already canceled"), else None."""
        ended = self.ended(current)
        if ended is not None:
            return f"subscription is {ended}" if action.action_type == "cancel" else None
        return self.holds(action, current)

    def moot(self, action: Action, current: dict[str, Any]) -> str | None:
        """Why an offer cannot apply any more: its subscription has ended."""
        ended = self.ended(current)
        if ended is not None and action.action_type != "cancel":
            return f"subscription is {ended}: nothing to change"
        return None

    @abstractmethod
    def send(self, request: WriteRequest, idempotency_key: str) -> str | None:
        """Send `request` with the key; the billing system's request id, if it gives one.
        Raises the SDK's own errors."""

    @abstractmethod
    def error_message(self, exc: BaseException) -> str:
        """The API's own message for a failed request, for the ledger and the UI."""
