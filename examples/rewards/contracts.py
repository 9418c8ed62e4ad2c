"""The contracts of the rewards example: customer registration and who reacts to it.

``CustomerManagement`` declares an **event**, ``customer_registered``: a
contract attribute typed ``dasync.Event[Payload]``. The service that
implements the contract fires it; any other service can subscribe to it in its
constructor, without the publisher knowing who listens. The payload is a
dataclass, checked against the declared type when fired and decoded with it
when handled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import dasync


@dataclass(frozen=True)
class CustomerInfo:
    customer_id: str
    name: str
    email: str
    referred_by: str | None = None
    """The customer id of whoever brought this customer in, if anyone."""


@dataclass(frozen=True)
class Account:
    """A customer's reward points, with the reason for each credit."""

    customer_id: str
    points: int = 0
    history: list[str] = field(default_factory=list)


class CustomerManagement(Protocol):
    customer_registered: dasync.Event[CustomerInfo]

    async def register(
        self, name: str, email: str, referred_by: str | None = None
    ) -> CustomerInfo: ...


class RewardProgram(Protocol):
    async def account(self, customer_id: str) -> Account | None: ...


class EmailService(Protocol):
    async def outbox(self, email: str) -> list[str]:
        """The emails sent to ``email`` so far (subject lines)."""
        ...
