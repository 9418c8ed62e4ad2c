"""The shop of the chaos suite: three services, a saga, a fan-out, an event, two subscribers.

``Orders.place(order_id, items, amount)`` (the workflow) charges the payment
(``Payments.charge``), reserves every item at once (``asyncio.gather`` of
``Inventory.reserve``) and then either

* fires ``Orders.placed`` and returns ``"ok:<receipt>:<items>"``, or
* when an item is out of stock (``OutOfStock``, raised by the callee and
  re-raised at the caller's ``await``), compensates — releases the items it did
  reserve and refunds the payment — and returns ``"refunded:<receipt>:<missing>"``.

Every fourth order first sleeps on a durable timer. ``Orders.placed`` has two
subscribers, one per other service (two subscription groups):
``Payments.on_placed`` settles the payment itself; ``Inventory.on_placed``
gathers a durable ``self.ship(order_id, item)`` per item.

Side effects are counted **durably, outside dasync**, in one SQLite file per
service (``WORKDIR/<Service>.sqlite``, WAL; every row is committed before the
method goes on, and SQLite survives ``kill -9`` of a writer):

* ``executions``: one row per execution of a side-effecting method (kind, key,
  subject, pid, time), written when it *begins*, before the external I/O;
* ``effects``: the effect, keyed by ``(kind, dasync.call_id())`` with a primary
  key — the idempotency key an external API would take — and ``writes``
  counting how many executions reached it.

``subject`` names the business fact (``order-7`` or ``order-7/sku-12``), so the
checks can tell "one call ran twice" (two executions of one key) from "the
workflow asked twice" (two keys for one subject: a duplicated effect that no
idempotency key could catch).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import dasync

IO_SECONDS = 0.05
"""How long each external call takes (a kill may land in it)."""

KINDS = ("charge", "refund", "reserve", "release", "settle", "ship")
"""The side effects, with the service that performs (and counts) them."""
SERVICE_OF_KIND = {
    "charge": "Payments",
    "refund": "Payments",
    "settle": "Payments",
    "reserve": "Inventory",
    "release": "Inventory",
    "ship": "Inventory",
}
SERVICES = ("Orders", "Payments", "Inventory")


# --- contracts --------------------------------------------------------------------------------


class OutOfStock(Exception):
    """Raised by ``Inventory.reserve``; rebuilt as the same class at the caller."""

    def __init__(self, item: str) -> None:
        super().__init__(item)
        self.item = item


@dataclass(frozen=True)
class Placed:
    order_id: str
    items: list[str]
    amount: int


class Orders(Protocol):
    placed: dasync.Event[Placed]

    async def place(self, order_id: str, items: list[str], amount: int) -> str: ...


class Payments(Protocol):
    async def charge(self, order_id: str, amount: int) -> str: ...

    async def refund(self, order_id: str, amount: int) -> str: ...


class Inventory(Protocol):
    async def reserve(self, order_id: str, item: str) -> str: ...

    async def release(self, order_id: str, item: str) -> str: ...


# --- the durable tally --------------------------------------------------------------------------


class Ledger:
    """Executions and effects of one service's side effects (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, timeout=120)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS executions "
            "(kind TEXT, key TEXT, subject TEXT, pid INTEGER, began REAL)"
        )
        self.db.execute("CREATE INDEX IF NOT EXISTS executions_pid ON executions (pid)")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS effects (kind TEXT, key TEXT, subject TEXT, "
            "outcome TEXT, pid INTEGER, writes INTEGER, PRIMARY KEY (kind, key))"
        )

    def began(self, kind: str, key: str, subject: str) -> None:
        self.db.execute(
            "INSERT INTO executions VALUES (?, ?, ?, ?, ?)",
            (kind, key, subject, os.getpid(), time.time()),
        )

    def effect(self, kind: str, key: str, subject: str, outcome: str) -> None:
        """The external call itself, idempotent under ``key``."""
        self.db.execute(
            "INSERT INTO effects VALUES (?, ?, ?, ?, ?, 1) "
            "ON CONFLICT(kind, key) DO UPDATE SET writes = writes + 1",
            (kind, key, subject, outcome, os.getpid()),
        )

    async def perform(self, kind: str, subject: str, outcome: str) -> None:
        """One side effect: counted as begun, external I/O, applied under ``call_id()``."""
        key = dasync.call_id()
        self.began(kind, key, subject)
        await dasync.io(asyncio.sleep(IO_SECONDS))
        self.effect(kind, key, subject, outcome)

    def close(self) -> None:
        self.db.close()


# --- services -----------------------------------------------------------------------------------


class OrderService(Orders):
    def __init__(self, payments: Payments, inventory: Inventory) -> None:
        self.payments = payments
        self.inventory = inventory

    async def place(self, order_id: str, items: list[str], amount: int) -> str:
        if amount % 4 == 0:
            await asyncio.sleep(0.05)  # a durable timer
        receipt = await self.payments.charge(order_id, amount)
        outcomes = await asyncio.gather(
            *(self.inventory.reserve(order_id, item) for item in items), return_exceptions=True
        )
        missing = [o.item for o in outcomes if isinstance(o, OutOfStock)]
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, OutOfStock):
                raise outcome
        if missing:  # the saga's compensation
            reserved = [item for item, o in zip(items, outcomes, strict=True) if isinstance(o, str)]
            await asyncio.gather(
                *(self.inventory.release(order_id, item) for item in reserved),
                self.payments.refund(order_id, amount),
            )
            return f"refunded:{receipt}:{','.join(missing)}"
        self.placed(Placed(order_id, items, amount))  # leaves when this step commits
        return f"ok:{receipt}:{len(items)}"


class PaymentService(Payments):
    def __init__(self, orders: Orders, ledger: Ledger) -> None:
        self.ledger = ledger
        orders.placed += self.on_placed

    async def charge(self, order_id: str, amount: int) -> str:
        await self.ledger.perform("charge", order_id, str(amount))
        return f"rcpt-{order_id}"

    async def refund(self, order_id: str, amount: int) -> str:
        await self.ledger.perform("refund", order_id, str(amount))
        return f"refund-{order_id}"

    async def on_placed(self, event: Placed) -> None:
        await self.ledger.perform("settle", event.order_id, str(event.amount))


class InventoryService(Inventory):
    def __init__(self, orders: Orders, ledger: Ledger) -> None:
        self.ledger = ledger
        orders.placed += self.on_placed

    async def reserve(self, order_id: str, item: str) -> str:
        available = in_stock(item)
        await self.ledger.perform("reserve", f"{order_id}/{item}", "ok" if available else "out")
        if not available:
            raise OutOfStock(item)
        return f"res-{order_id}-{item}"

    async def release(self, order_id: str, item: str) -> str:
        await self.ledger.perform("release", f"{order_id}/{item}", "ok")
        return item

    async def ship(self, order_id: str, item: str) -> str:
        await self.ledger.perform("ship", f"{order_id}/{item}", "ok")
        return item

    async def on_placed(self, event: Placed) -> None:
        await asyncio.gather(*(self.ship(event.order_id, item) for item in event.items))


SERVICE_CLASSES: dict[str, type] = {
    "Orders": OrderService,
    "Payments": PaymentService,
    "Inventory": InventoryService,
}


# --- what must happen -----------------------------------------------------------------------------


def in_stock(item: str) -> bool:
    return int(item.rpartition("-")[2]) % 11 != 0


def order_id(i: int) -> str:
    return f"order-{i}"


@dataclass(frozen=True)
class Order:
    """One routine of the run, with everything it must cause."""

    index: int
    items: list[str]
    amount: int

    @property
    def id(self) -> str:
        return order_id(self.index)

    @property
    def ok(self) -> bool:
        return all(in_stock(i) for i in self.items)

    @property
    def result(self) -> str:
        receipt = f"rcpt-{self.id}"
        if self.ok:
            return f"ok:{receipt}:{len(self.items)}"
        missing = [i for i in self.items if not in_stock(i)]
        return f"refunded:{receipt}:{','.join(missing)}"

    def effects(self) -> dict[str, dict[str, str]]:
        """``kind -> {subject: outcome}`` of the side effects this order must cause once each."""
        out: dict[str, dict[str, str]] = defaultdict(dict)
        out["charge"][self.id] = str(self.amount)
        for item in self.items:
            out["reserve"][f"{self.id}/{item}"] = "ok" if in_stock(item) else "out"
        if self.ok:
            out["settle"][self.id] = str(self.amount)
            for item in self.items:
                out["ship"][f"{self.id}/{item}"] = "ok"
        else:
            out["refund"][self.id] = str(self.amount)
            for item in self.items:
                if in_stock(item):
                    out["release"][f"{self.id}/{item}"] = "ok"
        return out


def plan(i: int) -> Order:
    """Order ``i``: 1-3 distinct items (about one order in six has one out of stock)."""
    count = 1 + i % 3
    items = [f"sku-{(i * 7 + j * 13) % 97}" for j in range(count)]
    return Order(i, items, 10 + i % 90)


@dataclass
class Expected:
    orders: list[Order]
    effects: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))

    @classmethod
    def of(cls, n: int) -> Expected:
        self = cls([plan(i) for i in range(n)])
        for order in self.orders:
            for kind, subjects in order.effects().items():
                self.effects[kind].update(subjects)
        return self
