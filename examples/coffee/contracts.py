"""The coffee shop's contracts: what each service offers and the data they exchange.

A contract is a plain ``typing.Protocol`` with ``async def`` methods. Callers
import only this file: they get a proxy for the contract injected and never
see the implementation, which may run in another process. Arguments and
results are dataclasses (any type pydantic can encode works), because they
travel as messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol
from uuid import UUID

# drink -> (ml of coffee, ml of milk, price); shared so every service agrees.
MENU: dict[str, tuple[int, int, Decimal]] = {
    "espresso": (40, 0, Decimal("2.20")),
    "latte": (60, 180, Decimal("3.80")),
    "cappuccino": (60, 100, Decimal("3.40")),
}


@dataclass(frozen=True)
class Order:
    number: int
    customer: str
    drink: str


@dataclass(frozen=True)
class CreditCard:
    holder: str
    number: str


@dataclass(frozen=True)
class Receipt:
    order_number: int
    amount: Decimal
    transaction: UUID


@dataclass(frozen=True)
class Cup:
    order_number: int
    drink: str
    coffee_ml: int = 0
    milk_ml: int = 0


@dataclass(frozen=True)
class Served:
    """What the customer walks away with."""

    order: Order
    receipt: Receipt
    cup: Cup


class PaymentDeclined(Exception):
    """Raised by the terminal; the barista's ``except PaymentDeclined`` catches it.

    Exceptions travel back to the caller and are rebuilt as the same class when
    the caller can import it (it can: it imports this file). Keep the
    constructor arguments in ``args`` (here: one message) so it can be rebuilt.
    """


class PaymentTerminal(Protocol):
    async def pay(self, order: Order, card: CreditCard) -> Receipt: ...


class CoffeeMachine(Protocol):
    async def make(self, order: Order) -> Cup: ...


class Barista(Protocol):
    async def serve(self, customer: str, drink: str, card: CreditCard) -> Served: ...
