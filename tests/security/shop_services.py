"""Two services for the permissions test (loaded by path, as ``dasync run`` loads a file).

Orders calls Billing and handles Billing's ``charged`` event; Billing knows
nothing of Orders, but its replies go to Orders' work subject.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import dasync


class Billing(Protocol):
    charged: dasync.Event[str]
    disputed: dasync.ExternalEvent[str]
    """Anyone may report a dispute; Billing publishes it."""

    async def charge(self, order: str, amount: int) -> str: ...


class Orders(Protocol):
    async def place(self, order: str, amount: int) -> str: ...

    async def dispute(self, order: str) -> str: ...


class BillingService(Billing):
    async def charge(self, order: str, amount: int) -> str:
        self.charged(f"{order}:{amount}")
        return f"receipt-{order}"


class OrderService(Orders):
    def __init__(self, billing: Billing) -> None:
        self._billing = billing
        self.charges: list[str] = []
        self.disputes: list[str] = []
        billing.charged += self.on_charged
        billing.disputed += self.on_disputed

    async def place(self, order: str, amount: int) -> str:
        receipt = await self._billing.charge(order, amount)
        await asyncio.sleep(0.05)  # a durable timer: Orders' schedule subjects
        return receipt

    async def on_charged(self, charge: str) -> None:
        self.charges.append(charge)

    async def dispute(self, order: str) -> str:
        self._billing.disputed(f"{order}:by-orders")  # asked of Billing, which publishes it
        return order

    async def on_disputed(self, order: str) -> None:
        self.disputes.append(order)
