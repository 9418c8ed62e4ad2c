"""Services the console tests drive: a routine that waits on the test (to watch a page
update live), one the test can dead-letter (to retry it from the console), and one that
echoes whatever it is given (hostile text, to see it escaped)."""

from __future__ import annotations

import asyncio
from typing import Protocol

GATE: dict[str, asyncio.Future[None]] = {}
"""Futures of the test's loop that ``Holder.hold`` awaits as host I/O, by key."""
BROKEN = {"Flaky": False}
"""While set, the observer ``Breaking`` fails every report of Flaky's first step: the
worker's own processing fails, so the message becomes a dead letter."""


class Holder(Protocol):
    async def hold(self, key: str) -> str: ...


class Relay(Protocol):
    async def relay(self, key: str) -> str: ...


class Flaky(Protocol):
    async def run(self, n: int) -> int: ...


class Echo(Protocol):
    async def echo(self, text: str) -> str: ...


class HolderImpl(Holder):
    async def hold(self, key: str) -> str:
        if key == "nap":
            await asyncio.sleep(3600)  # a durable timer: a cancel reaches it
        gate = GATE.get(key)
        if gate is not None:
            await gate  # host I/O: the reply comes when the test opens the gate
        return f"released {key}"


class RelayImpl(Relay):
    def __init__(self, holder: Holder) -> None:
        self.holder = holder

    async def relay(self, key: str) -> str:
        return await self.holder.hold(key)


class FlakyImpl(Flaky):
    def __init__(self, holder: Holder) -> None:
        self.holder = holder

    async def run(self, n: int) -> int:
        # a call first: its first step does not complete it, so the index can say
        # "dead-lettered" when that step's report fails (a completed routine stays so)
        await self.holder.hold("")
        return n + 1


class EchoImpl(Echo):
    async def echo(self, text: str) -> str:
        if text.startswith("fail:"):
            raise ValueError(text)
        return text


class Breaking:
    """A worker bug on demand (an observer that raises): see ``BROKEN``."""

    async def committed(
        self, service: str, routine_id: str, index: int, record: object, *, resent: bool
    ) -> None:
        if BROKEN.get(service) and index == 0:
            raise RuntimeError(f"a bug in the worker of {service}")

    async def set_aside(
        self, service: str, routine_id: str, entries: int, reason: str, *, told: bool
    ) -> None:
        pass


def open_gate(key: str) -> None:
    gate = GATE.get(key)
    if gate is not None and not gate.done():
        gate.set_result(None)
