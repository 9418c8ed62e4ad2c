"""A long routine costs linear journal bytes and linear time, never quadratic."""

from __future__ import annotations

import time
from typing import Protocol

from dasync.testing import runtime

from ..semantics._helpers import journal


class Step(Protocol):
    async def inc(self, x: int) -> int: ...


class StepImpl(Step):
    async def inc(self, x: int) -> int:
        return x + 1


class Long(Protocol):
    async def count(self, n: int) -> int: ...


class LongImpl(Long):
    def __init__(self, step: Step) -> None:
        self.step = step

    async def count(self, n: int) -> int:
        x = 0
        for _ in range(n):
            x = await self.step.inc(x)
        return x


async def _run(n: int) -> tuple[int, float, float]:
    """Journal bytes of an ``n``-step routine, CPU seconds to run it and to replay it once
    (this process's CPU, so that other processes of the suite running meanwhile on the
    same cores do not count)."""
    async with runtime([StepImpl, LongImpl]) as rt:
        started = time.process_time()
        handle = await rt.client.start(Long.count, n, routine_id=f"long-{n}")
        assert await handle.result(timeout=60) == n
        elapsed = time.process_time() - started
        assert rt.broker is not None
        entries = rt.broker.journals[("Long", f"long-{n}")]
        assert len(entries) == n + 1
        size = sum(len(e) for e in entries)
        assert rt.worker.stats.replays == 0  # the live routine stayed cached: no replay at all

        # one full replay (as after a crash) is linear too
        rt.worker._evict(("Long", f"long-{n}"))
        started = time.process_time()
        hosted = rt.worker.services["Long"]
        inst = await rt.worker._replay(
            hosted, f"long-{n}", await rt.worker._load(hosted, f"long-{n}")
        )
        replay = time.process_time() - started
        assert inst is not None and inst.done and len(journal(rt, "Long", f"long-{n}")) == n + 1
    return size, elapsed, replay


async def test_journal_bytes_and_time_are_linear():
    await _run(50)  # warm up imports and caches
    # the fastest of a few runs: noise (GC, scheduling) only ever adds time
    smalls = [await _run(100) for _ in range(3)]
    bigs = [await _run(1000) for _ in range(2)]
    small_bytes, big_bytes = smalls[0][0], bigs[0][0]
    small_time, big_time = min(r[1] for r in smalls), min(r[1] for r in bigs)
    small_replay, big_replay = min(r[2] for r in smalls), min(r[2] for r in bigs)
    assert big_bytes < 12 * small_bytes, (small_bytes, big_bytes)
    assert big_time < 25 * small_time, (small_time, big_time)
    assert big_replay < 25 * small_replay, (small_replay, big_replay)
