"""``asyncio.sleep`` inside a routine is a durable timer.

On memory the clock is virtual, so day-long sleeps finish at once and routine
time moves by exactly the timer's length; on NATS timers are real server-side
schedules, so the same tests use sleeps of a fraction of a second (``timing``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import pytest

import dasync

from ._helpers import settled, steps

LONG = 86_400.0
"""The timer that ``cancelled_timer`` cancels: a day on memory, 0.3 s on NATS."""
SHORT = 1.0
"""The routine's own sleep before it cancels the long one: 1 s on memory, 0.1 s on NATS."""


@pytest.fixture(autouse=True)
def _durations(timing):
    global LONG, SHORT
    LONG, SHORT = timing.day, (1.0 if timing.virtual else 0.1)


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
        task = asyncio.create_task(asyncio.sleep(LONG))
        await asyncio.sleep(SHORT)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        return "slept"


async def test_a_long_sleep_is_a_durable_timer(make_runtime, timing):
    """A day under virtual time (finishing at once), 0.3 s of real time on NATS."""
    async with make_runtime([SleeperImpl]) as rt:
        started = time.perf_counter()
        elapsed = await rt.client.proxy(Sleeper).nap(timing.day)
        took = time.perf_counter() - started
    if timing.virtual:
        assert took < 5
        assert elapsed == timing.day  # routine time moved by exactly the timer's length
    else:
        assert timing.day <= elapsed < timing.day + timing.slack  # never early
        assert timing.day <= took < timing.day + timing.slack


async def test_timers_fire_in_deadline_order(make_runtime, timing):
    if timing.virtual:
        delays = [50.0, 10.0, 3600.0, 20.0, 0.5, 30.0]
    else:  # real timers, further apart than the server's scheduler tick (250 ms)
        delays = [1.05, 0.35, 1.4, 0.7, 0.02]
    async with make_runtime([SleeperImpl]) as rt:
        assert await rt.client.proxy(Sleeper).race(delays) == sorted(delays)


# nats-server runs its message scheduler at most every 250 ms and fires every schedule due
# in one run in stream order, not deadline order; the engine fires a routine's earlier-due
# timers together with the one whose message arrives, so deadline order holds anyway.


async def test_timers_closer_than_the_server_tick_fire_in_deadline_order(make_runtime, timing):
    # issued latest-first, all due within one scheduler tick of each other
    delays = [0.2, 0.15, 0.1, 0.05] if not timing.virtual else [20.0, 15.0, 10.0, 5.0]
    async with make_runtime([SleeperImpl]) as rt:
        assert await rt.client.proxy(Sleeper).race(delays) == sorted(delays)


async def test_the_timer_is_journaled(make_runtime, timing):
    seconds = timing.scale(30.0)
    async with make_runtime([SleeperImpl]) as rt:
        handle = await rt.client.start(Sleeper.nap, seconds, routine_id="nap-1")
        elapsed = await handle.result(timeout=10)
        if timing.virtual:
            assert elapsed == seconds
        else:
            assert seconds <= elapsed < seconds + timing.slack
        records = await steps(rt, "Sleeper", "nap-1")
        kinds = [type(s.input).__name__ for s in records]
        assert kinds == ["Start", "FireTimer"]
        timer = [c for c in records[0].commands if type(c).__name__ == "StartTimer"]
        assert len(timer) == 1
        assert timer[0].fire_at == records[0].input.at + seconds
        assert records[1].input.at >= timer[0].fire_at  # it fired when due, not before


async def test_a_cancelled_sleep_does_not_wake_the_routine(make_runtime):
    async with make_runtime([SleeperImpl]) as rt:
        handle = await rt.client.start(Sleeper.cancelled_timer, routine_id="ct-1")
        assert await handle.result(timeout=10) == "cancelled"
        await settled(rt)  # the long timer has fired by now (memory: virtual time jumped)
        records = await steps(rt, "Sleeper", "ct-1")
        # start (two timers), the short timer (cancel and finish); the long timer's firing
        # later finds it cancelled and commits nothing
        assert [type(s.input).__name__ for s in records] == ["Start", "FireTimer"]
