"""``asyncio.sleep`` inside a routine is a durable timer."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import dasync

from ._helpers import journal, wait_until

DAY = 86_400.0


class Sleeper(Protocol):
    async def nap(self, seconds: float) -> float: ...
    async def race(self, delays: list[float]) -> list[float]: ...
    async def cancelled_timer(self) -> str: ...


class SleeperImpl(Sleeper):
    async def nap(self, seconds: float) -> float:
        t0 = dasync.now()
        await asyncio.sleep(seconds)
        return (dasync.now() - t0).total_seconds()

    async def race(self, delays: list[float]) -> list[float]:
        order: list[float] = []

        async def one(d: float) -> None:
            await asyncio.sleep(d)
            order.append(d)

        await asyncio.gather(*(one(d) for d in delays))
        return order

    async def cancelled_timer(self) -> str:
        task = asyncio.create_task(asyncio.sleep(DAY))
        await asyncio.sleep(1)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        return "slept"


async def test_a_day_long_sleep_completes_fast_under_virtual_time(make_runtime):
    async with make_runtime([SleeperImpl]) as rt:
        started = time.perf_counter()
        elapsed = await rt.client.proxy(Sleeper).nap(DAY)
        assert time.perf_counter() - started < 5
        assert elapsed == DAY  # routine time moved by exactly the timer's length


async def test_timers_fire_in_deadline_order(make_runtime):
    async with make_runtime([SleeperImpl]) as rt:
        delays = [50.0, 10.0, 3600.0, 20.0, 0.5, 30.0]
        assert await rt.client.proxy(Sleeper).race(delays) == sorted(delays)


async def test_the_timer_is_journaled(make_runtime):
    async with make_runtime([SleeperImpl]) as rt:
        handle = await rt.client.start(Sleeper.nap, 30.0, routine_id="nap-1")
        assert await handle.result(timeout=10) == 30.0
        steps = journal(rt, "Sleeper", "nap-1")
        kinds = [type(s.input).__name__ for s in steps]
        assert kinds == ["Start", "FireTimer"]
        timer = [c for c in steps[0].commands if type(c).__name__ == "StartTimer"]
        assert len(timer) == 1
        assert timer[0].fire_at == steps[0].input.at + 30.0


async def test_a_cancelled_sleep_does_not_wake_the_routine(make_runtime):
    async with make_runtime([SleeperImpl]) as rt:
        handle = await rt.client.start(Sleeper.cancelled_timer, routine_id="ct-1")
        assert await handle.result(timeout=10) == "cancelled"
        assert rt.broker is not None
        broker = rt.broker
        await wait_until(lambda: broker.next_scheduled() is None and not broker.busy())
        steps = journal(rt, "Sleeper", "ct-1")
        # start (two timers), the 1 s timer (cancel and finish); the day-long timer's firing
        # later finds it cancelled and commits nothing
        assert [type(s.input).__name__ for s in steps] == ["Start", "FireTimer"]
