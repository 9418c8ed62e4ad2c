"""Callers ride out a server outage: nothing about the infrastructure reaches them.

Routines are in flight (and more are started) while the NATS server is stopped;
every caller blocked in ``handle.result(timeout=...)`` or in a proxy call gets its
routine's result once the server is back, never a ``TransportError``. The outage
here is 3 s (the mechanism does not depend on its length: clients retry sends and
journal reads with a backoff capped at 2 s until their own timeout).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import dasync

FLOWS = 30


class Ledger(Protocol):
    async def book(self, n: int) -> int: ...


class Flow(Protocol):
    async def run(self, n: int) -> int: ...


class LedgerService(Ledger):
    async def book(self, n: int) -> int:
        return n * 10


class FlowService(Flow):
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def run(self, n: int) -> int:
        await asyncio.sleep(0.5)  # a durable timer: in flight across the outage
        return await self.ledger.book(n) + 1


async def test_callers_get_their_results_through_a_server_outage(
    restartable_server, connect_restartable
):
    transport, store = await connect_restartable(request_timeout=1.0, ack_wait=2.0)
    async with dasync.Runtime([LedgerService, FlowService], transport=transport, store=store) as rt:
        handles = [await rt.client.start(Flow.run, n) for n in range(FLOWS)]
        waiting = [asyncio.ensure_future(h.result(timeout=60)) for h in handles]
        await asyncio.to_thread(restartable_server.stop)
        # a proxy call made while the server is down waits too, rather than failing
        during = asyncio.ensure_future(rt.client.proxy(Flow).run(99))
        await asyncio.sleep(3.0)  # the outage itself
        assert not any(w.done() and w.exception() for w in waiting)
        await asyncio.to_thread(restartable_server.start)
        results = await asyncio.gather(*waiting, during, return_exceptions=True)
    assert results == [n * 10 + 1 for n in range(FLOWS)] + [991], [
        r for r in results if isinstance(r, BaseException)
    ]
