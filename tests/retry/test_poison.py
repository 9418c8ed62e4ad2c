"""Poison messages: set aside with their reason after every attempt failed; the caller is told."""

from __future__ import annotations

import asyncio
from typing import Protocol

import pytest

import dasync
from dasync.testing import VirtualClock, runtime
from dasync.transports import DeadLetters, MemoryBroker, MemoryStore, MemoryTransport

FLAGS = {"path": "a"}


class Leaf(Protocol):
    async def a(self) -> int: ...
    async def b(self) -> int: ...


class LeafImpl(Leaf):
    async def a(self) -> int:
        return 1

    async def b(self) -> int:
        return 2


class Gate(Protocol):
    async def passage(self) -> None: ...


class GateImpl(Gate):
    async def passage(self) -> None:
        return None


@dasync.service
class Changing:
    def __init__(self, leaf: Leaf, gate: Gate) -> None:
        self.leaf = leaf
        self.gate = gate

    async def run(self) -> int:
        first = await self.leaf.a()
        await self.gate.passage()  # nobody serves Gate in the first runtime: it waits here
        return first


def _broker() -> MemoryBroker:
    clock = VirtualClock()
    broker = MemoryBroker(clock)
    clock.is_busy = broker.busy
    return broker


async def test_a_message_failing_every_attempt_becomes_a_dead_letter_and_the_caller_is_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A processing failure that is not the routine's own (here: a bug in replay, simulated)
    is retried with backoff and after 10 attempts set aside; non-determinism is not retried
    at all (tests/semantics/test_nondeterminism.py)."""
    from dasync._runtime._worker import Worker

    real_replay = Worker._replay

    async def buggy_replay(self: Worker, *args: object) -> object:
        if FLAGS["path"] == "b":
            raise RuntimeError("simulated bug in replay")
        return await real_replay(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Worker, "_replay", buggy_replay)
    FLAGS["path"] = "a"
    broker = _broker()
    broker.declare("Gate")
    # the caller outlives the workers (another process in production)
    client = dasync.Client(MemoryTransport(broker), MemoryStore(broker), broker.clock)
    await client.open()
    async with runtime([LeafImpl, Changing], broker=broker) as first:
        handle = await client.start(Changing.run, routine_id="poisoned")
        for _ in range(100):
            if len(broker.load("Changing", "poisoned")) >= 2:
                break
            await asyncio.sleep(0.01)
        first.kill()
    FLAGS["path"] = "b"  # a "bug" that makes every attempt fail
    async with runtime([LeafImpl, Changing, GateImpl], broker=broker) as second:
        with pytest.raises(dasync.CallFailed) as info:
            await handle.result(timeout=30)
        assert "poison message: failed 10 attempts" in info.value.reason
        assert "RuntimeError: simulated bug in replay" in info.value.reason
        queue, message, reason = broker.dead[-1]
        assert queue == "Changing" and reason == info.value.reason
        # and the worker keeps serving
        assert await second.client.proxy(Leaf).a() == 1

        # the letter is listed with its reason; once the code is fixed, a retry finishes the job
        transport = second.transport
        assert isinstance(transport, DeadLetters)
        [letter] = await transport.dead_letters("Changing")
        assert letter.reason == info.value.reason
        assert letter.message.headers["dasync-routine"] == "poisoned"
        FLAGS["path"] = "a"
        await second.client.retry_dead_letter("Changing", letter.id)  # forgets the note
        assert await second.client.handle(Changing.run, "poisoned").result(timeout=30) == 1
        assert await transport.dead_letters("Changing") == []
    await client.close()
    FLAGS["path"] = "a"
