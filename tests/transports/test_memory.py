"""The memory transport and store pass the conformance suite, in virtual and real time."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from dasync import SystemClock
from dasync.testing import Backend, BackendFactory, VirtualClock, check_transport
from dasync.transports import MemoryBroker, MemoryStore, MemoryTransport, Message

from .conformance import TransportConformance


@asynccontextmanager
async def memory_backend(
    virtual_time: bool = True,
    transport: type[MemoryTransport] = MemoryTransport,
    store: type[MemoryStore] = MemoryStore,
) -> AsyncIterator[Backend]:
    clock = VirtualClock() if virtual_time else SystemClock()
    ack_wait = 30.0 if virtual_time else 0.5
    broker = MemoryBroker(clock, ack_wait=ack_wait)
    if isinstance(clock, VirtualClock):
        clock.is_busy = broker.busy

    async def connect() -> MemoryTransport:
        return transport(broker)

    async def open_store() -> MemoryStore:
        return store(broker)

    # virtual time does not pass while a delivery is in flight: no redelivery to check there
    yield Backend(
        connect=connect,
        store=open_store,
        now=clock.now,
        ack_wait=None if virtual_time else ack_wait,
        pass_time=_advancing(clock) if isinstance(clock, VirtualClock) else asyncio.sleep,
    )


def _advancing(clock: VirtualClock) -> Callable[[float], Awaitable[None]]:
    async def pass_time(seconds: float) -> None:
        clock.advance(seconds)

    return pass_time


class TestMemoryVirtualTime(TransportConformance):
    @pytest.fixture
    def backend_factory(self) -> BackendFactory:
        return lambda: memory_backend(virtual_time=True)


class TestMemoryRealTime(TransportConformance):
    @pytest.fixture
    def backend_factory(self) -> BackendFactory:
        return lambda: memory_backend(virtual_time=False)


async def test_check_transport_runs_every_check():
    await check_transport(memory_backend)


# --- the checks catch broken backends -----------------------------------------------------


class NoDedupe(MemoryTransport):
    async def send(self, queue: str, message: Message) -> None:
        self.broker.queues.get(queue, None) and self.broker.queues[queue].seen.clear()
        await super().send(queue, message)


class NoDelay(MemoryTransport):
    async def send(self, queue: str, message: Message) -> None:
        await super().send(queue, dataclasses.replace(message, deliver_at=None))


class NoConflicts(MemoryStore):
    async def append(self, service: str, routine_id: str, entry: bytes, expected: int) -> None:
        self.broker.journals.setdefault((service, routine_id), []).append(entry)


@pytest.mark.parametrize(
    ("kwargs", "failing"),
    [
        ({"transport": NoDedupe}, "dedupe_by_msg_id"),
        ({"transport": NoDelay}, "delayed_delivery"),
        ({"store": NoConflicts}, "journal_conflict"),
        ({"store": NoConflicts}, "journal_create_once"),
    ],
)
async def test_the_checks_catch_a_broken_backend(kwargs, failing):
    with pytest.raises(AssertionError, match=f"transport check '{failing}' failed"):
        await check_transport(lambda: memory_backend(**kwargs), only=[failing])
