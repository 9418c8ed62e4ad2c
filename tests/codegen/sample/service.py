"""A sample service file for the codegen tests: calls between services, events, declared
errors, pydantic models and a main(), in one file (as 'dasync run' would load it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Literal, Protocol
from uuid import UUID

import pydantic

import dasync


class Size(Enum):
    SMALL = "s"
    LARGE = "l"


@dataclass(frozen=True)
class Line:
    """One line of an order."""

    sku: str
    """The article's stock-keeping unit."""
    qty: int = 1
    size: Size = Size.SMALL


class Address(pydantic.BaseModel):
    """Where to deliver."""

    street: str
    city: str
    notes: list[str] = []


@dataclass(frozen=True)
class Receipt:
    order: UUID
    total: Decimal
    paid_at: datetime
    lines: list[Line] = field(default_factory=list)


@dataclass
class OutOfStock(Exception):
    """Not enough of an article."""

    sku: str
    available: int


class Declined(Exception):
    """The card was refused."""

    def __init__(self, reason: str, retry: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.retry = reason, retry


@dataclass(frozen=True)
class Shipped:
    order: UUID
    carrier: Literal["post", "courier"]


class Stock(Protocol):
    """Keeps count of articles."""

    @dasync.raises(OutOfStock)
    async def take(self, sku: str, qty: int) -> int: ...


class Payments(Protocol):
    @dasync.raises(Declined)
    async def charge(self, order: UUID, amount: Decimal) -> datetime: ...


class Orders(Protocol):
    """Takes orders: reserves the stock, charges, ships."""

    shipped: dasync.Event[Shipped]

    @dasync.raises(OutOfStock, Declined)
    async def place(self, lines: list[Line], deliver_to: Address, gift: bool = False) -> Receipt:
        """Places an order.

        Reserves every line, charges the total, and announces the shipment.
        """
        ...


class StockService(Stock):
    async def take(self, sku: str, qty: int) -> int:
        raise OutOfStock(sku, 0)


class PaymentService(Payments):
    async def charge(self, order: UUID, amount: Decimal) -> datetime:
        return dasync.now()


class OrderService(Orders):
    def __init__(self, stock: Stock, payments: Payments) -> None:
        self._stock, self._payments = stock, payments

    async def place(self, lines: list[Line], deliver_to: Address, gift: bool = False) -> Receipt:
        order = dasync.uuid4()
        for line in lines:
            await self._stock.take(line.sku, line.qty)
        paid = await self._payments.charge(order, Decimal(len(lines)))
        self.shipped(Shipped(order, "post"))
        return Receipt(order, Decimal(len(lines)), paid, lines)


class Ledger(Protocol):
    async def entries(self) -> list[str]: ...


class LedgerService(Ledger):
    def __init__(self, orders: Orders) -> None:
        self._entries: list[str] = []
        orders.shipped += self.on_shipped

    async def on_shipped(self, event: Shipped) -> None:
        self._entries.append(str(event.order))

    async def entries(self) -> list[str]:
        return list(self._entries)


async def main(orders: Orders) -> str:
    receipt = await orders.place([Line("book")], Address(street="1 Main St", city="Rome"))
    return str(receipt.order)
