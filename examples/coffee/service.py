"""The barista workflow of D-ASYNC, as plain async Python.

Run it with ``dasync run examples/coffee/service.py``: the three services
below are hosted, then ``main()`` places a few orders and prints what happens.

Every ``await`` on a contract proxy or on a public method through ``self`` is
a durable call: a persisted message whose reply is journaled, so a barista
that crashes half-way through an order resumes after the last completed step
instead of charging the card twice. Nothing in the code below says so; that is
the point.
"""

from __future__ import annotations

import asyncio

# contracts.py sits next to this file; `dasync run` puts this folder on sys.path.
from contracts import (
    MENU,
    Barista,
    CoffeeMachine,
    CreditCard,
    Cup,
    Order,
    PaymentDeclined,
    PaymentTerminal,
    Receipt,
    Served,
)

import dasync


class PaymentService(PaymentTerminal):
    """A card terminal. Subclassing the contract is what makes this a service."""

    async def pay(self, order: Order, card: CreditCard) -> Receipt:
        amount = MENU[order.drink][2]
        if card.number.startswith("0000"):
            print(f"terminal: card of {card.holder} declined for order #{order.number}")
            raise PaymentDeclined(f"card ending {card.number[-4:]} was declined")
        # A real terminal would pass dasync.call_id() to the bank as the
        # idempotency key: it is the same on every retry of this call.
        tx = dasync.uuid4()
        print(f"terminal: charged {card.holder} {amount} for order #{order.number}")
        return Receipt(order.number, amount, tx)


class CoffeeMakingMachine(CoffeeMachine):
    """Pours coffee and milk at the same time."""

    async def make(self, order: Order) -> Cup:
        coffee_ml, milk_ml, _ = MENU[order.drink]
        # Two public methods called through ``self``: each is a durable
        # sub-routine, and gather() starts both before waiting, so they run in
        # parallel (on any worker of this service, once there are several).
        coffee, milk = await asyncio.gather(
            self.pour_coffee(order.number, coffee_ml),
            self.pour_milk(order.number, milk_ml),
        )
        return Cup(order.number, order.drink, coffee_ml=coffee, milk_ml=milk)

    async def pour_coffee(self, order_number: int, ml: int) -> int:
        print(f"coffee machine: pouring {ml} ml of coffee for #{order_number}")
        # Inside a routine asyncio.sleep is a durable timer: it survives a
        # restart and does not hold a worker while it waits. (Durable timers fire on
        # the server's 250 ms tick: the milk's 0.2 s ends first, as in plain asyncio.)
        await asyncio.sleep(0.6)
        print(f"coffee machine: coffee for #{order_number} done")
        return ml

    async def pour_milk(self, order_number: int, ml: int) -> int:
        if ml == 0:
            return 0
        print(f"coffee machine: steaming {ml} ml of milk for #{order_number}")
        await asyncio.sleep(0.2)
        print(f"coffee machine: milk for #{order_number} done")
        return ml


class CoffeeShopBarista(Barista):
    """Takes the order, has it paid, makes the coffee, serves it."""

    def __init__(self, terminal: PaymentTerminal, machine: CoffeeMachine) -> None:
        # Parameters annotated with a contract receive a proxy for it.
        self._terminal = terminal
        self._machine = machine
        self._orders_taken = 0

    async def serve(self, customer: str, drink: str, card: CreditCard) -> Served:
        # take_order is a durable call too, so the order number is handed out
        # exactly once even if serve() is replayed after a crash. (Code between
        # awaits, such as the prints here, may run again on replay.)
        order = await self.take_order(customer, drink)
        try:
            receipt = await self._terminal.pay(order, card)
        except PaymentDeclined:
            print(f"barista: sorry {customer}, no {drink} without payment")
            raise  # the caller of serve() gets the same exception
        cup = await self._machine.make(order)
        print(f"barista: here is your {drink}, {customer} (order #{order.number})")
        return Served(order, receipt, cup)

    async def take_order(self, customer: str, drink: str) -> Order:
        if drink not in MENU:
            raise ValueError(f"{drink!r} is not on the menu ({', '.join(MENU)})")
        self._orders_taken += 1
        print(f"barista: took order #{self._orders_taken} for {customer} ({drink})")
        return Order(self._orders_taken, customer, drink)


async def main(barista: Barista) -> int:
    """Runs as a routine itself once the services are up; ``dasync run`` prints its result."""
    customers = [
        ("Alice", "latte", CreditCard("Alice", "4111 1111 1111 1111")),
        ("Bob", "espresso", CreditCard("Bob", "5500 0000 0000 0004")),
        ("Carol", "cappuccino", CreditCard("Carol", "0000 0000 0000 0000")),
    ]
    served = 0
    for customer, drink, card in customers:
        try:
            result = await barista.serve(customer, drink, card)
        except PaymentDeclined as exc:
            print(f"main: {customer} got nothing: {exc}")
            continue
        cup = result.cup
        print(
            f"main: served {customer}: {cup.drink} ({cup.coffee_ml} ml coffee, "
            f"{cup.milk_ml} ml milk), paid {result.receipt.amount}"
        )
        served += 1
    print(f"main: served {served} of {len(customers)} customers")
    return served
