"""Three services that call each other (Front -> Middle -> Back), for the tracing tests
across processes; Middle waits on a durable timer first, so that a kill -9 of Front's
worker lands while Front's routine is waiting."""

from __future__ import annotations

import asyncio
from typing import Protocol

PAUSE = 1.0
"""Middle's durable sleep, real seconds on NATS: the window for the kill."""


class Back(Protocol):
    async def leaf(self, n: int) -> int: ...


class Middle(Protocol):
    async def work(self, n: int) -> int: ...


class Front(Protocol):
    async def run(self, n: int) -> int: ...


class BackImpl(Back):
    async def leaf(self, n: int) -> int:
        return n * 10


class MiddleImpl(Middle):
    def __init__(self, back: Back) -> None:
        self.back = back

    async def work(self, n: int) -> int:
        await asyncio.sleep(PAUSE)
        return await self.back.leaf(n) + 1


class FrontImpl(Front):
    def __init__(self, middle: Middle) -> None:
        self.middle = middle

    async def run(self, n: int) -> int:
        return await self.middle.work(n) + 1
