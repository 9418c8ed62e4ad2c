"""Services the management tests drive from the command line: a routine waiting on a long
call (to cancel), and one whose first call depends on a flag (to park it by a divergence
and, once the flag is put back, retry it). They run in the test's process, so a test
can see what the routines saw."""

from __future__ import annotations

import asyncio
from typing import Protocol

import dasync

SEEN: dict[str, list[str]] = {"finally": [], "callee": []}
"""What the routines did: ``finally`` blocks that ran, how the callee ended."""
GATE: dict[str, asyncio.Future[None]] = {}
"""A future of the test's own loop that a routine awaits as host I/O (an ``asyncio.Event``
would make a future of the routine's loop, which nothing outside could complete)."""
ARG = {"n": 1}


class Sleeper(Protocol):
    async def nap(self, seconds: float) -> str: ...


class Waiter(Protocol):
    async def wait(self) -> str: ...


class Leaf(Protocol):
    async def add(self, n: int) -> int: ...


class Fickle(Protocol):
    async def run(self) -> int: ...


class SleeperImpl(Sleeper):
    async def nap(self, seconds: float) -> str:
        try:
            await asyncio.sleep(seconds)
            return "rested"
        except asyncio.CancelledError:
            SEEN["callee"].append("cancelled")
            raise


class WaiterImpl(Waiter):
    def __init__(self, sleeper: Sleeper) -> None:
        self.sleeper = sleeper

    async def wait(self) -> str:
        try:
            return await self.sleeper.nap(3600)
        finally:
            SEEN["finally"].append("wait")


class LeafImpl(Leaf):
    async def add(self, n: int) -> int:
        gate = GATE.get("leaf")
        if gate is not None:
            await gate  # host I/O: the reply comes when the test opens the gate
        return n + 1


class FickleImpl(Fickle):
    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def run(self) -> int:
        # replayed with another argument than journaled: a divergence, so it is parked
        return await self.leaf.add(ARG["n"])


class Flaky(Protocol):
    async def run(self) -> int: ...


class FlakyImpl(Flaky):
    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def run(self) -> int:
        return await self.leaf.add(41)


BROKEN = {"Flaky": False}
"""While set, the observer below fails every report of Flaky's first step: the worker's
own processing fails (not the routine), so the message becomes a dead letter and the
caller is told, as a bug in a worker would make it."""


class Breaking:
    async def committed(
        self, service: str, routine_id: str, index: int, record: object, *, resent: bool
    ) -> None:
        if BROKEN.get(service) and index == 0:
            raise RuntimeError(f"a bug in the worker of {service}")

    async def set_aside(
        self, service: str, routine_id: str, entries: int, reason: str, *, told: bool
    ) -> None:
        pass


class Approver(Protocol):
    async def approve(self, amount: int) -> str: ...


class ApproverImpl(Approver):
    """Reports its progress, then waits for a signal (``dasync signal``, ``show --follow``)."""

    async def approve(self, amount: int) -> str:
        dasync.progress({"stage": "asked", "amount": amount})
        approved = await dasync.signal("approval", bool)
        dasync.progress({"stage": "decided", "approved": approved})
        return "approved" if approved else "rejected"
