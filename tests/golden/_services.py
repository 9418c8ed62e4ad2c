"""The routines whose journals are committed under ``tests/golden/`` (a saga with every kind
of step). Written against the public API only, so any version of dasync can record them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import dasync


class OutOfStock(Exception):
    pass


@dataclass
class Receipt:
    tx: str
    amount: int


class Payments(Protocol):
    async def charge(self, tx: str, amount: int) -> Receipt: ...
    async def refund(self, tx: str) -> None: ...


class Warehouse(Protocol):
    async def reserve(self, item: str, qty: int) -> int: ...
    async def wait_forever(self) -> None: ...


class Shop(Protocol):
    async def order(self, item: str, qty: int) -> str: ...
    async def audit(self, tx: str) -> int: ...
    async def abandon(self) -> str: ...


class PaymentsImpl(Payments):
    async def charge(self, tx: str, amount: int) -> Receipt:
        return Receipt(tx, amount)

    async def refund(self, tx: str) -> None:
        return None


class WarehouseImpl(Warehouse):
    async def reserve(self, item: str, qty: int) -> int:
        if item == "unobtainium":
            raise OutOfStock(item)
        return qty

    async def wait_forever(self) -> None:
        await asyncio.sleep(10 * 86_400)


class ShopImpl(Shop):
    def __init__(self, payments: Payments, warehouse: Warehouse) -> None:
        self.payments = payments
        self.warehouse = warehouse

    async def order(self, item: str, qty: int) -> str:
        tx = str(dasync.uuid4())
        receipt = await self.payments.charge(tx, qty * 10)
        parts = await asyncio.gather(
            self.warehouse.reserve(item, qty), self.warehouse.reserve(f"{item}-box", 1)
        )
        try:
            await self.warehouse.reserve("unobtainium", 1)
        except OutOfStock:
            await self.payments.refund(tx)
        await asyncio.sleep(60)
        audited = await self.audit(tx)
        return f"{receipt.amount}:{sum(parts)}:{audited}"

    async def audit(self, tx: str) -> int:
        return len(tx)

    async def abandon(self) -> str:
        task = asyncio.ensure_future(self.warehouse.wait_forever())
        await asyncio.sleep(1)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        return "finished"


SERVICES = [PaymentsImpl, WarehouseImpl, ShopImpl]
ROUTINES = [("order", ("tea", 2), "golden-order"), ("abandon", (), "golden-abandon")]
"""(Shop method, arguments, routine id) of each recorded routine."""
