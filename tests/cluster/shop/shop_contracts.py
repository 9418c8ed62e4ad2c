"""The contracts of the cluster test's shop, shared by its three service files and the test.

``Orders.place(n)`` charges ``Billing`` and reserves ``ITEMS`` items at ``Stock``
in one ``asyncio.gather``; every fourth order first sleeps on a durable timer.
Its result is ``expected(n)``, so the test knows every right answer.
"""

from __future__ import annotations

from typing import Protocol

ITEMS = 2
"""Items reserved per order (one ``Stock.reserve`` call each)."""
PAUSE = 0.2
"""The durable timer every fourth order sleeps on first (seconds)."""


class Billing(Protocol):
    async def charge(self, order: str, amount: int) -> str: ...


class Stock(Protocol):
    async def reserve(self, order: str, item: str) -> int: ...


class Orders(Protocol):
    async def place(self, n: int) -> str: ...


def order_id(n: int) -> str:
    return f"order-{n}"


def amount(n: int) -> int:
    return 100 + n


def item(n: int, i: int) -> str:
    return f"sku-{n}-{i}"


def quantity(item_name: str) -> int:
    """What ``Stock.reserve`` returns for an item: a function of its name alone."""
    return 1 + sum(map(ord, item_name)) % 3


def receipt(order: str, amount_: int) -> str:
    return f"r-{order}-{amount_}"


def expected(n: int) -> str:
    reserved = sum(quantity(item(n, i)) for i in range(ITEMS))
    return f"ok:{receipt(order_id(n), amount(n))}:{reserved}"
