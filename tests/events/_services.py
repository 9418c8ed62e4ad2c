"""The services most event tests use: a publisher and two subscribers.

Handlers report to a ``Recorder`` injected by name (``log``), so a test reads
what every runtime did, including runtimes it killed and replaced.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import dasync

from ._helpers import Recorder

TOPIC = "Customers.registered"


@dataclass(frozen=True)
class CustomerInfo:
    name: str
    email: str


class Customers(Protocol):
    registered: dasync.Event[CustomerInfo]

    async def register(self, name: str) -> str: ...

    async def register_many(self, names: list[str]) -> int: ...


class CustomerService(Customers):
    async def register(self, name: str) -> str:
        # fired inside a routine: leaves with this step's commit
        self.registered(CustomerInfo(name, f"{name}@example.com"))
        if name.startswith("raise"):
            raise ValueError(f"cannot register {name}")
        return f"registered {name}"

    async def register_many(self, names: list[str]) -> int:
        for name in names:  # all in one step, published in this order
            self.registered(CustomerInfo(name, f"{name}@example.com"))
        return len(names)


@dasync.service
class Rewards:
    def __init__(self, customers: Customers, log: Recorder) -> None:
        self.log = log
        customers.registered += self.welcome

    async def welcome(self, info: CustomerInfo) -> None:
        if info.name.startswith("bad"):
            raise ValueError(f"no rewards for {info.name}")
        self.log.handled("Rewards.welcome", info.name)


@dasync.service
class Emails:
    def __init__(self, customers: Customers, log: Recorder) -> None:
        self.log = log
        customers.registered += self.send_welcome

    async def send_welcome(self, info: CustomerInfo) -> None:
        self.log.handled("Emails.send_welcome", info.name)


@dasync.service
class Ledger:
    def __init__(self, log: Recorder) -> None:
        self.log = log

    async def credit(self, name: str, points: int) -> int:
        self.log.handled("Ledger.credit", (name, points))
        return points


@dasync.service
class Onboarding:
    """A handler that is a full routine: calls another service, gathers, sleeps."""

    def __init__(self, customers: Customers, ledger: Ledger, log: Recorder) -> None:
        self.ledger = ledger
        self.log = log
        customers.registered += self.onboard

    async def onboard(self, info: CustomerInfo) -> int:
        welcome, referral = await asyncio.gather(
            self.ledger.credit(info.name, 100), self.points_for_referral(info.name)
        )
        await asyncio.sleep(0.2)  # a durable timer inside the handler
        total = welcome + referral
        self.log.handled("Onboarding.onboard", (info.name, total))
        return total

    async def points_for_referral(self, name: str) -> int:
        await asyncio.sleep(0.05)
        return 50 if name.startswith("ref") else 0
