"""A computed step is committed through infrastructure failures, without running again.

A journal append that fails with a transport error (a NATS leader election, a
restarting server) is retried by the live worker with the step it computed, so the
step's user code does not run a second time; an append that timed out but had
landed is recognised in the journal and counts as committed.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

import pytest

import dasync
from dasync.transports import MemoryBroker, MemoryStore, MemoryTransport

RUNS: Counter[str] = Counter()


class Ledger(Protocol):
    async def book(self, amount: int) -> int: ...


class Flow(Protocol):
    async def run(self, n: int) -> int: ...


class LedgerService(Ledger):
    async def book(self, amount: int) -> int:
        RUNS[dasync.call_id()] += 1
        return amount * 2


class FlowService(Flow):
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def run(self, n: int) -> int:
        RUNS[dasync.call_id()] += 1
        return await self.ledger.book(n) + await self.ledger.book(n + 1)


class FlakyStore(MemoryStore):
    """Every ``fail_every``-th append fails: before writing, or after (it landed)."""

    def __init__(self, broker: MemoryBroker, landed: bool, fail_every: int = 2) -> None:
        super().__init__(broker)
        self.landed = landed
        self.fail_every = fail_every
        self.appends = 0
        self.failed = 0

    async def append(self, service: str, routine_id: str, entry: bytes, expected: int) -> None:
        self.appends += 1
        if self.appends % self.fail_every == 0:
            self.failed += 1
            if self.landed:
                await super().append(service, routine_id, entry, expected)
            raise dasync.TransportError("publish timed out (simulated leader election)")
        await super().append(service, routine_id, entry, expected)


@pytest.mark.parametrize("landed", [False, True], ids=["lost", "landed"])
async def test_a_failed_append_is_retried_with_the_computed_step(landed: bool) -> None:
    RUNS.clear()
    broker = MemoryBroker()
    store = FlakyStore(broker, landed)
    async with dasync.Runtime(
        [LedgerService, FlowService], transport=MemoryTransport(broker), store=store
    ) as rt:
        results = [await rt.client.proxy(Flow).run(n) for n in range(5)]
    assert results == [2 * n + 2 * (n + 1) for n in range(5)]
    assert store.failed >= 5 and rt.worker.stats.append_retries == store.failed
    # every step's code ran once: the live worker committed what it had computed
    assert set(RUNS.values()) == {1}, RUNS
    assert rt.worker.stats.conflicts == 0


async def test_it_gives_up_after_its_patience_and_the_delivery_is_retried() -> None:
    """A store that stays down longer than ``append_patience``: the delivery is handed
    back (infrastructure), and the routine completes once the store answers again."""
    RUNS.clear()
    broker = MemoryBroker()
    store = FlakyStore(broker, landed=False, fail_every=1)
    async with dasync.Runtime(
        [LedgerService, FlowService], transport=MemoryTransport(broker), store=store
    ) as rt:
        rt.worker.append_patience = 0.2
        handle = await rt.client.start(Flow.run, 1)

        from tests.semantics._helpers import wait_until

        await wait_until(lambda: store.failed >= 3, within=10)
        store.fail_every = 10**9  # the store is back
        assert await handle.result(timeout=20) == 2 + 4
