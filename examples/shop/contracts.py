"""The shop's contracts: payments, a warehouse and the shop itself.

Contracts are ``typing.Protocol`` classes with ``async def`` methods; every
service and client imports this file, never the implementations. Exceptions a
caller is meant to catch, such as ``OutOfStock``, live here too, so the
caller can import them and dasync can re-raise the callee's exception as the
same class.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol
from uuid import UUID

import dasync


@dataclass(frozen=True)
class LedgerEntry:
    tx: UUID
    kind: Literal["credit", "refund"]
    customer: str
    amount: Decimal


@dataclass(frozen=True)
class Delivery:
    """Goods a supplier delivered to the warehouse."""

    item: str
    qty: int


class OutOfStock(Exception):
    """The warehouse cannot reserve the quantity asked for.

    The constructor arguments are passed on to ``Exception.__init__`` so that
    they end up in ``args``: the exception crosses services as its class name
    plus ``args`` and is rebuilt at the caller as ``OutOfStock(*args)``.
    """

    def __init__(self, item: str, requested: int, available: int) -> None:
        super().__init__(item, requested, available)
        self.item, self.requested, self.available = item, requested, available

    def __str__(self) -> str:
        return f"{self.requested} x {self.item} requested, {self.available} in stock"


class UnknownItem(Exception):
    """The shop does not sell this item."""

    def __init__(self, item: str) -> None:
        super().__init__(item)
        self.item = item

    def __str__(self) -> str:
        return f"no such item: {self.item!r}"


class UnknownTransaction(Exception):
    """No credit was made under this transaction id."""

    def __init__(self, tx: UUID) -> None:
        super().__init__(tx)
        self.tx = tx

    def __str__(self) -> str:
        return f"no credit under transaction {self.tx}"


class Payments(Protocol):
    # credit: the shop is credited the amount (the customer is charged).
    async def credit(self, tx: UUID, customer: str, amount: Decimal) -> None: ...

    # refund: undo the credit of transaction ``tx`` (once, however often asked).
    @dasync.raises(UnknownTransaction)
    async def refund(self, tx: UUID) -> None: ...

    async def ledger(self) -> list[LedgerEntry]: ...


class Warehouse(Protocol):
    # A supplier's webhook reports a delivery (POST /Warehouse/events/restocked on the
    # gateway): an ExternalEvent, so outsiders may fire it; the warehouse publishes it.
    restocked: dasync.ExternalEvent[Delivery]

    # Raises OutOfStock when there is not enough of ``item``; declared, so that
    # callers (and the generated specs) know to expect it.
    @dasync.raises(OutOfStock)
    async def reserve(self, tx: UUID, item: str, qty: int) -> None: ...


class Shop(Protocol):
    # Returns "ok", or "refunded" when the item was out of stock.
    @dasync.raises(UnknownItem)
    async def place_order(self, customer: str, item: str, qty: int) -> str: ...
