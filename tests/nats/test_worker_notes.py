"""Worker behaviour that multi-worker (NATS) deployments depend on; see docs/nats.md.

Deterministic, on the memory broker: two runtimes share one broker as two
worker processes share a JetStream consumer, and the test routes each message
to the worker it wants by starting and stopping their consumers.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import dasync
from dasync.transports import MemoryBroker

GATES: dict[int, asyncio.Event] = {}


class Pay(Protocol):
    async def pay(self, n: int) -> int: ...


class PayImpl(Pay):
    async def pay(self, n: int) -> int:
        await dasync.io(GATES[n].wait())  # the test decides when the reply is sent
        return n


@dasync.service
class Flow:
    def __init__(self, pay: Pay) -> None:
        self.pay = pay

    async def run(self) -> int:
        return await self.pay.pay(1) + await self.pay.pay(2)


async def _pause(rt: dasync.Runtime) -> None:
    for sub in rt.worker._subscriptions:
        await sub.stop()
    rt.worker._subscriptions.clear()


async def _resume(rt: dasync.Runtime) -> None:
    hosted = rt.worker.services["Flow"]
    sub = await rt.transport.consume("Flow", lambda d: rt.worker._on_delivery(hosted, d))
    rt.worker._subscriptions.append(sub)


async def test_a_stale_cached_routine_does_not_drop_a_reply():
    GATES.update({1: asyncio.Event(), 2: asyncio.Event()})
    broker = MemoryBroker()
    async with dasync.Runtime([PayImpl], broker=broker):
        a = dasync.Runtime([Flow], broker=broker)
        b = dasync.Runtime([Flow], broker=broker)
        await a.start()
        handle = await a.client.start(Flow.run)
        await asyncio.sleep(0.05)  # worker A runs the start and caches the routine
        await _pause(a)
        await b.start()
        GATES[1].set()  # reply 1 goes to B, which commits the step that calls pay(2)
        await asyncio.sleep(0.05)
        await _pause(b)
        await _resume(a)
        GATES[2].set()  # reply 2 goes to A, whose cached routine is one step behind
        try:
            assert await asyncio.wait_for(handle.result(), 2) == 3
        finally:
            await a.close()
            await b.close()
