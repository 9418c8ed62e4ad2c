"""Cancelling tasks inside a routine, and cancelling a routine from the client."""

from __future__ import annotations

import asyncio
from typing import Protocol

import pytest

import dasync

from ._helpers import steps, wait_until

STARTED: set[str] = set()
CANCELLED: set[str] = set()
CLEANED: set[str] = set()
PAUSE = 1.0
"""How long a boss waits before cancelling: 1 s (virtual) on memory, 0.1 s on NATS."""


@pytest.fixture(autouse=True)
def _pause(timing):
    global PAUSE
    PAUSE = 1.0 if timing.virtual else 0.1


class Worker(Protocol):
    async def long_job(self, n: int) -> int: ...


class WorkerImpl(Worker):
    async def long_job(self, n: int) -> int:
        STARTED.add(dasync.call_id())
        try:
            await asyncio.sleep(7 * 86_400)
        except asyncio.CancelledError:
            CANCELLED.add(dasync.call_id())
            raise
        return n


class Boss(Protocol):
    async def cancel_child(self) -> str: ...
    async def cancel_and_continue(self) -> list[str]: ...
    async def waits(self) -> str: ...


class BossImpl(Boss):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def cancel_child(self) -> str:
        task = asyncio.create_task(self.worker.long_job(1))
        await asyncio.sleep(10 * PAUSE)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "child cancelled"
        return "child finished"

    async def cancel_and_continue(self) -> list[str]:
        out = []
        tasks = [asyncio.create_task(self.worker.long_job(i)) for i in range(3)]
        await asyncio.sleep(PAUSE)
        tasks[1].cancel()
        results = await asyncio.gather(tasks[1], return_exceptions=True)
        out.append(type(results[0]).__name__)
        for t in (tasks[0], tasks[2]):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        out.append("after")
        return out

    async def waits(self) -> str:
        try:
            await self.worker.long_job(5)
        finally:
            CLEANED.add(dasync.call_id())
        return "done"


def _reset() -> None:
    STARTED.clear()
    CANCELLED.clear()
    CLEANED.clear()


async def test_cancelling_a_task_cancels_the_callee(make_runtime):
    _reset()
    async with make_runtime([WorkerImpl, BossImpl]) as rt:
        handle = await rt.client.start(Boss.cancel_child, routine_id="boss-1")
        assert await handle.result(timeout=10) == "child cancelled"
        # the task starts after the routine's own sleep was issued: the call is step 2
        await wait_until(lambda: CANCELLED == {"boss-1/Boss.cancel_child.2"})

        async def committed() -> bool:  # the callee saw the cancel; then its step commits
            return len(await steps(rt, "Worker", "boss-1/Boss.cancel_child.2")) == 2

        await wait_until(committed)
        child = await steps(rt, "Worker", "boss-1/Boss.cancel_child.2")
        assert type(child[-1].input).__name__ == "Cancel"
        done = child[-1].commands[-1]
        assert type(done).__name__ == "Complete" and not done.ok
        # the caller's journal holds the cancel command for the call it cancelled
        parent = [c for s in await steps(rt, "Boss", "boss-1") for c in s.commands]
        assert [type(c).__name__ for c in parent] == [
            "StartTimer",
            "Call",
            "CancelCall",
            "Complete",
        ]
        assert parent[2].target == 2
    assert STARTED == {"boss-1/Boss.cancel_child.2"}


async def test_cancelling_some_tasks_of_a_gather(make_runtime):
    _reset()
    async with make_runtime([WorkerImpl, BossImpl]) as rt:
        out = await rt.client.proxy(Boss).cancel_and_continue()
        assert out == ["CancelledError", "after"]
        await wait_until(lambda: len(CANCELLED) == 3)
    assert STARTED == CANCELLED


async def test_client_cancels_a_routine_and_its_callee(make_runtime):
    _reset()
    async with make_runtime([WorkerImpl, BossImpl]) as rt:
        handle = await rt.client.start(Boss.waits, routine_id="boss-w")
        await wait_until(lambda: STARTED == {"boss-w/Boss.waits.1"})
        await handle.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handle.result(timeout=10)
        assert CLEANED == {"boss-w"}  # finally ran in the cancelled routine
        await wait_until(lambda: CANCELLED == {"boss-w/Boss.waits.1"})
