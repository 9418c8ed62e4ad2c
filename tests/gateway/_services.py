"""The services the gateway tests call over HTTP: a store with a declared error, a
durable timer and a routine that waits to be cancelled.

They run in the test's own process (a ``Runtime`` on the test's NATS namespace), so
a test can see what the routine saw: how often it ran, that it got ``CancelledError``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import dasync


class OutOfStock(Exception):
    """Fewer items in stock than asked for."""

    def __init__(self, item: str, requested: int, available: int) -> None:
        super().__init__(item, requested, available)
        self.item, self.requested, self.available = item, requested, available

    def __str__(self) -> str:
        return f"{self.requested} x {self.item} requested, {self.available} in stock"


@dataclass
class Receipt:
    item: str
    qty: int
    total: int


class Store(Protocol):
    """A shop's counter."""

    delivered: dasync.ExternalEvent[Receipt]
    """A supplier reports a delivery (fired from outside, over HTTP)."""
    sold: dasync.Event[Receipt]
    """Only the store says it sold something."""

    @dasync.raises(OutOfStock)
    async def buy(self, item: str, qty: int = 1) -> Receipt:
        """Sell ``qty`` of ``item``."""
        ...

    async def brew(self, seconds: float) -> str:
        """Sleep durably, then answer."""
        ...

    async def hold(self, tag: str) -> str:
        """Wait until cancelled."""
        ...

    async def crash(self) -> int:
        """Raise an exception no contract declares."""
        ...

    async def approve(self, amount: int) -> str:
        """Report progress, wait for the signal ``approval``."""
        ...


@dataclass
class Seen:
    """What the routines did, for the tests to read."""

    buys: list[tuple[str, int]] = field(default_factory=list)
    holding: dict[str, asyncio.Event] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    deliveries: list[Receipt] = field(default_factory=list)


SEEN = Seen()
STOCK = {"book": 5, "tea": 100}
PRICES = {"book": 12, "tea": 3}


class StoreService(Store):
    async def buy(self, item: str, qty: int = 1) -> Receipt:
        SEEN.buys.append((item, qty))
        available = STOCK.get(item, 0)
        if available < qty:
            raise OutOfStock(item, qty, available)
        return Receipt(item, qty, PRICES[item] * qty)

    async def brew(self, seconds: float) -> str:
        await asyncio.sleep(seconds)  # a durable timer
        return "ready"

    async def hold(self, tag: str) -> str:
        if tag in SEEN.holding:  # the test waits on it
            SEEN.holding[tag].set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            SEEN.cancelled.append(tag)
            raise
        return "not cancelled"

    async def crash(self) -> int:
        return {"a": 1}["b"]

    async def approve(self, amount: int) -> str:
        dasync.progress({"asked": amount})
        approved = await dasync.signal("approval", bool)
        dasync.progress({"approved": approved})
        return "approved" if approved else "rejected"


@dasync.service
class Stockroom:
    """Handles the deliveries fired at the gateway."""

    def __init__(self, store: Store) -> None:
        store.delivered += self.on_delivered

    async def on_delivered(self, receipt: Receipt) -> None:
        SEEN.deliveries.append(receipt)
