"""An order saga across two services, written as one plain async method.

Run it with ``dasync run examples/shop/service.py``. ``Shop.place_order``
charges the customer, then reserves the goods; when the warehouse is out of
stock it refunds the payment. In a message-driven system that is a saga with
handlers, message types and state kept by hand; here it is a try/except,
because each ``await`` on a proxy is a durable call whose outcome (value or
exception) is journaled, and the method resumes after it even if the process
running it died in between.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

# contracts.py sits next to this file; `dasync run` puts this folder on sys.path.
from contracts import (
    Delivery,
    LedgerEntry,
    OutOfStock,
    Payments,
    Shop,
    UnknownItem,
    UnknownTransaction,
    Warehouse,
)
from dependency_injector import containers, providers

import dasync


class PaymentService(Payments):
    """Keeps a ledger of credits and refunds."""

    def __init__(self) -> None:
        self._ledger: list[LedgerEntry] = []

    async def credit(self, tx: UUID, customer: str, amount: Decimal) -> None:
        # Keyed on tx, like the idempotency key of a real payment API: even a
        # caller that retries cannot charge twice.
        if any(e.tx == tx and e.kind == "credit" for e in self._ledger):
            return
        self._ledger.append(LedgerEntry(tx, "credit", customer, amount))
        print(f"payments: credited {amount} from {customer} (tx {str(tx)[:8]})")

    async def refund(self, tx: UUID) -> None:
        credit = next((e for e in self._ledger if e.tx == tx and e.kind == "credit"), None)
        if credit is None:
            raise UnknownTransaction(tx)
        if any(e.tx == tx and e.kind == "refund" for e in self._ledger):
            return  # refunded already: a refund, like a credit, happens once
        self._ledger.append(LedgerEntry(tx, "refund", credit.customer, -credit.amount))
        print(f"payments: refunded {credit.amount} to {credit.customer} (tx {str(tx)[:8]})")

    async def ledger(self) -> list[LedgerEntry]:
        return list(self._ledger)


class WarehouseService(Warehouse):
    """Reserves stock; ``stock`` is not a contract, so it comes from the container."""

    def __init__(self, stock: dict[str, int]) -> None:
        self._stock = dict(stock)

    async def reserve(self, tx: UUID, item: str, qty: int) -> None:
        available = self._stock.get(item, 0)
        if available < qty:
            print(f"warehouse: cannot reserve {qty} x {item}, {available} in stock")
            raise OutOfStock(item, qty, available)
        self._stock[item] = available - qty
        print(f"warehouse: reserved {qty} x {item} (tx {str(tx)[:8]})")


class OnlineShop(Shop):
    def __init__(
        self, payments: Payments, warehouse: Warehouse, prices: dict[str, Decimal]
    ) -> None:
        self._payments = payments  # proxies: calls on them are durable
        self._warehouse = warehouse
        self._prices = prices  # from the container
        warehouse.restocked += self.on_restocked  # runs as a routine, once per event

    async def on_restocked(self, delivery: Delivery) -> None:
        print(f"shop: {delivery.qty} x {delivery.item} back in stock")

    async def place_order(self, customer: str, item: str, qty: int) -> str:
        # A random id must come from dasync.uuid4(): it is recorded in the
        # journal, so a replay of this routine sees the same transaction id.
        tx = dasync.uuid4()
        if item not in self._prices:
            raise UnknownItem(item)
        amount = self._prices[item] * qty
        print(f"shop: {customer} orders {qty} x {item} for {amount} (tx {str(tx)[:8]})")
        await self._payments.credit(tx, customer, amount)
        try:
            await self._warehouse.reserve(tx, item, qty)
        except OutOfStock as exc:  # raised in the warehouse service, re-raised here
            print(f"shop: out of stock ({exc}), refunding {customer}")
            await self._payments.refund(tx)  # the compensation step of the saga
            return "refunded"
        print(f"shop: order of {customer} is complete")
        return "ok"


class Container(containers.DeclarativeContainer):
    """Plain dependencies (not services), matched to constructor parameters by name."""

    stock = providers.Object({"book": 5, "unicorn": 0})
    prices = providers.Object({"book": Decimal("12.50"), "unicorn": Decimal("999.00")})


# `dasync run` uses a module-level `container` unless --container names another.
container = Container()


async def main(shop: Shop, payments: Payments) -> dict[str, str]:
    """Place one order that succeeds and one that is out of stock, then show the ledger."""
    outcomes = {
        "Alice": await shop.place_order("Alice", "book", 2),
        "Bob": await shop.place_order("Bob", "unicorn", 1),
    }
    for customer, outcome in outcomes.items():
        print(f"main: order of {customer}: {outcome}")
    print("main: payment ledger:")
    balance = Decimal(0)
    for entry in await payments.ledger():
        balance += entry.amount
        print(f"  {entry.kind:<6} {entry.customer:<6} {entry.amount:>8}  tx {str(entry.tx)[:8]}")
    print(f"  balance {balance:>22}")
    return outcomes
