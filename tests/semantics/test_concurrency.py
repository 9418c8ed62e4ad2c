"""gather, create_task, wait, wait_for and timeout inside routines.

Parallelism is proved by timers: every leaf sleeps ``DELAY`` seconds (a durable
timer), so N calls that run at once finish after one ``DELAY`` of routine time,
and N calls run one after the other would take N of them. ``DELAY`` is 100 s of
virtual time on memory and 0.5 s of real time on NATS.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import pytest

import dasync

from ._helpers import steps, wait_until

DELAY = 100.0


@pytest.fixture(autouse=True)
def _delay(timing):
    global DELAY
    DELAY = 100.0 if timing.virtual else 0.5


STARTED: set[str] = set()
CANCELLED: set[str] = set()


class Slow(Protocol):
    async def work(self, x: int) -> int: ...
    async def forever(self, x: int) -> int: ...


class SlowImpl(Slow):
    async def work(self, x: int) -> int:
        await asyncio.sleep(DELAY)
        return x * 10

    async def forever(self, x: int) -> int:
        STARTED.add(dasync.call_id())
        try:
            await asyncio.sleep(DELAY * 1000)
        except asyncio.CancelledError:
            CANCELLED.add(dasync.call_id())
            raise
        return x


class Fan(Protocol):
    async def gather_calls(self, n: int) -> tuple[list[int], float]: ...
    async def gather_self(self, n: int) -> tuple[list[int], float]: ...
    async def sequential(self, n: int) -> tuple[list[int], float]: ...
    async def part(self, x: int) -> int: ...
    async def tasks(self) -> list[int]: ...
    async def wait_first(self) -> tuple[list[int], int]: ...
    async def wait_for_fast(self) -> int: ...
    async def wait_for_slow(self) -> str: ...
    async def timeout_slow(self) -> str: ...
    async def timeout_fast(self) -> int: ...


class FanImpl(Fan):
    def __init__(self, slow: Slow) -> None:
        self.slow = slow

    async def gather_calls(self, n: int) -> tuple[list[int], float]:
        t0 = dasync.now()
        results = await asyncio.gather(*(self.slow.work(i) for i in range(n)))
        return list(results), (dasync.now() - t0).total_seconds()

    async def gather_self(self, n: int) -> tuple[list[int], float]:
        t0 = dasync.now()
        results = await asyncio.gather(*(self.part(i) for i in range(n)))
        return list(results), (dasync.now() - t0).total_seconds()

    async def sequential(self, n: int) -> tuple[list[int], float]:
        t0 = dasync.now()
        results = [await self.slow.work(i) for i in range(n)]
        return results, (dasync.now() - t0).total_seconds()

    async def part(self, x: int) -> int:
        """A self sub-routine: its own durable timer, then a call."""
        await asyncio.sleep(DELAY)
        return x + 1000

    async def tasks(self) -> list[int]:
        first = asyncio.create_task(self.slow.work(1))
        second = asyncio.create_task(self.slow.work(2))
        third = asyncio.get_running_loop().create_task(self.part(3))
        return [await second, await first, await third]

    async def wait_first(self) -> tuple[list[int], int]:
        fast = asyncio.create_task(self.slow.work(5))
        never = asyncio.create_task(self.slow.forever(6))
        done, pending = await asyncio.wait({fast, never}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return [t.result() for t in done], len(pending)

    async def wait_for_fast(self) -> int:
        return await asyncio.wait_for(self.slow.work(4), timeout=DELAY * 3)

    async def wait_for_slow(self) -> str:
        try:
            await asyncio.wait_for(self.slow.forever(1), timeout=DELAY)
        except TimeoutError:
            return "timed out"
        return "finished"

    async def timeout_slow(self) -> str:
        try:
            async with asyncio.timeout(DELAY):
                await self.slow.forever(2)
        except TimeoutError:
            return "timed out"
        return "finished"

    async def timeout_fast(self) -> int:
        async with asyncio.timeout(DELAY * 3):
            return await self.slow.work(8)


async def test_gather_of_calls_runs_them_in_parallel(make_runtime):
    async with make_runtime([SlowImpl, FanImpl]) as rt:
        fan = rt.client.proxy(Fan)
        results, elapsed = await fan.gather_calls(8)
        assert results == [i * 10 for i in range(8)]
        assert DELAY <= elapsed < 4 * DELAY  # 8 sequential calls would take 8 * DELAY (NATS
        # timers may be 250 ms late, and a loaded machine adds more)
        results, elapsed = await fan.sequential(3)
        assert results == [0, 10, 20]
        assert elapsed >= 3 * DELAY  # the control: one after the other


async def test_gather_of_self_subroutines_runs_them_in_parallel(make_runtime):
    async with make_runtime([SlowImpl, FanImpl]) as rt:
        handle = await rt.client.start(Fan.gather_self, 6, routine_id="fan-self")
        results, elapsed = await handle.result(timeout=30)
        assert results == [1000, 1001, 1002, 1003, 1004, 1005]
        assert DELAY <= elapsed < 4 * DELAY  # one after the other: 6 * DELAY (NATS timers
        # may be 250 ms late, and a loaded machine adds more: 1.13 s of 0.5 s seen on CI)
        calls = [c for s in await steps(rt, "Fan", "fan-self") for c in s.commands]
        calls = [c for c in calls if type(c).__name__ == "Call"]
        assert [(c.service, c.method) for c in calls] == [("Fan", "part")] * 6
        for call in calls:  # each part() ran as its own durable routine of the same service
            sub = await steps(rt, "Fan", call.callee)
            assert type(sub[0].input).__name__ == "Start"
            assert type(sub[-1].commands[-1]).__name__ == "Complete"


async def test_create_task(make_runtime):
    async with make_runtime([SlowImpl, FanImpl]) as rt:
        assert await rt.client.proxy(Fan).tasks() == [20, 10, 1003]


async def test_wait_first_completed_and_cancel_the_rest(make_runtime):
    STARTED.clear()
    CANCELLED.clear()
    async with make_runtime([SlowImpl, FanImpl]) as rt:
        assert await rt.client.proxy(Fan).wait_first() == ([50], 1)
        await _wait_cancelled()
    assert STARTED == CANCELLED and len(STARTED) == 1


async def test_wait_for_and_timeout_when_the_call_is_fast(make_runtime):
    async with make_runtime([SlowImpl, FanImpl]) as rt:
        fan = rt.client.proxy(Fan)
        assert await fan.wait_for_fast() == 40
        assert await fan.timeout_fast() == 80


async def test_wait_for_times_out_and_cancels_the_callee(make_runtime):
    STARTED.clear()
    CANCELLED.clear()
    async with make_runtime([SlowImpl, FanImpl]) as rt:
        assert await rt.client.proxy(Fan).wait_for_slow() == "timed out"
        await _wait_cancelled()
    assert STARTED == CANCELLED and len(STARTED) == 1


async def test_timeout_context_times_out_and_cancels_the_callee(make_runtime):
    STARTED.clear()
    CANCELLED.clear()
    async with make_runtime([SlowImpl, FanImpl]) as rt:
        assert await rt.client.proxy(Fan).timeout_slow() == "timed out"
        await _wait_cancelled()
    assert STARTED == CANCELLED and len(STARTED) == 1


async def _wait_cancelled() -> None:
    await wait_until(lambda: bool(STARTED) and STARTED <= CANCELLED)
