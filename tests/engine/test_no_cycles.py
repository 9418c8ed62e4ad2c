"""A routine dropped from memory is freed at once, not left for the garbage collector.

A worker drops one instance per finished routine; left in reference cycles (the
instance and its loop, its tasks' context naming it), each one would wait for a
collection, and the collections then cost a leaf service a few percent of its CPU.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Protocol

import pytest

from dasync._codec import encode_failure
from dasync._engine import Resolve, RoutineInstance, Start
from dasync.testing import runtime


@pytest.fixture
def collected() -> Iterator[list[object]]:
    """What the collector frees while the test runs (it keeps it in ``gc.garbage``)."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def _engine_objects(garbage: list[object]) -> list[str]:
    names = {"RoutineInstance", "RoutineLoop", "RoutineTask", "CallFuture", "_Bridge"}
    return sorted({type(o).__name__ for o in garbage} & names)


async def test_a_finished_routine_leaves_no_cycle(collected: list[object]) -> None:
    async def body(args: bytes) -> bytes:
        from dasync._engine import current_instance

        inst = current_instance()
        assert inst is not None
        ok, payload = await inst.call("Leaf", "work", b"{}")
        await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))
        return payload

    for i in range(20):
        inst = RoutineInstance(f"r{i}", "Flow", "run", body, encode_failure)
        first = await inst.activate(Start(b"{}", 1.0, {"method": "run"}, seed=7))
        call = first.commands[0]
        last = await inst.activate(Resolve(call.seq, True, b"8", 2.0))
        assert last.completion is not None and last.completion.payload == b"8"
        inst.evict()
        del inst, first, last, call
    gc.collect()
    assert _engine_objects(collected) == []


async def test_an_evicted_live_routine_leaves_no_cycle(collected: list[object]) -> None:
    async def body(args: bytes) -> bytes:
        from dasync._engine import current_instance

        inst = current_instance()
        assert inst is not None
        try:
            await inst.call("Leaf", "work", b"{}")
        finally:
            pass
        return b"1"

    for i in range(20):
        inst = RoutineInstance(f"r{i}", "Flow", "run", body, encode_failure)
        await inst.activate(Start(b"{}", 1.0, {"method": "run"}, seed=7))
        inst.evict()  # waiting on its call: dropped from the cache
        del inst
    gc.collect()
    # the task and the call it waited on keep each other, as a pending task and the future
    # it awaits do in asyncio; the instance (and all it holds) is not among them
    assert "RoutineInstance" not in _engine_objects(collected)


class Leaf(Protocol):
    async def work(self, x: int) -> int: ...


class LeafService(Leaf):
    async def work(self, x: int) -> int:
        return x + 1


class Flow(Protocol):
    async def run(self, x: int) -> int: ...


class FlowService(Flow):
    def __init__(self, leaf: Leaf) -> None:
        self._leaf = leaf

    async def run(self, x: int) -> int:
        a, b = await asyncio.gather(self._leaf.work(x), self._leaf.work(x + 1))
        return a + b


async def test_routines_run_by_a_worker_leave_no_cycle(collected: list[object]) -> None:
    async with runtime([LeafService, FlowService], virtual_time=False) as rt:
        flow = rt.client.proxy(Flow)
        assert await flow.run(1) == 5  # (warm: codecs, caches)
        gc.collect()
        collected.clear()
        for i in range(10):
            assert await flow.run(i) == 2 * i + 3
        gc.collect()
        assert _engine_objects(collected) == []
