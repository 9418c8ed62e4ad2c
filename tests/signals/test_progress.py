"""Progress (``dasync.progress`` / ``RoutineHandle.progress``) on memory and NATS: every
update once and in order, for a reader that connects late or reconnects, and none twice
after a crash and a replay."""

from __future__ import annotations

import asyncio
from typing import Protocol

import pytest

import dasync
from tests.conftest import Backend

WAIT = 15.0


class Jobs(Protocol):
    async def run(self, steps: int) -> str: ...


class JobService(Jobs):
    async def run(self, steps: int) -> str:
        for i in range(1, steps + 1):
            await dasync.signal("go", bool)  # the test paces the job
            dasync.progress({"done": i, "of": steps})
        return "finished"


async def journaled(rt: dasync.Runtime, routine_id: str) -> None:
    for _ in range(int(WAIT / 0.01)):
        if await rt.client.routine("Jobs", routine_id) is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{routine_id} never started")


@pytest.mark.parametrize("force_replay", [False, True], ids=["cached", "forced"])
async def test_a_reader_that_reconnects_gets_every_update_once_in_order(
    backend: Backend, force_replay: bool
) -> None:
    async with backend.runtime([JobService], force_replay=force_replay) as rt:
        handle = await rt.client.start(Jobs.run, 6, routine_id="job-1")
        await journaled(rt, "job-1")
        seen: list[tuple[int, dict[str, int]]] = []
        for _ in range(3):
            await handle.signal("go", True)
        reader = handle.progress()
        async for n, update in reader:  # connects late: the first three are there
            seen.append((n, update))
            if n == 2:
                break
        await reader.aclose()
        for _ in range(3):
            await handle.signal("go", True)
        async for n, update in handle.progress(after=seen[-1][0]):  # reconnects
            seen.append((n, update))
        assert seen == [(i, {"done": i, "of": 6}) for i in range(1, 7)]
        assert await handle.result(timeout=WAIT) == "finished"


async def test_a_worker_killed_mid_stream_publishes_no_duplicate(backend: Backend) -> None:
    async with backend.runtime([JobService]) as first:
        handle = await first.client.start(Jobs.run, 4, routine_id="job-2")
        await journaled(first, "job-2")
        await handle.signal("go", True)
        await handle.signal("go", True)
        updates = handle.progress()
        assert [await anext(updates) for _ in range(2)] == [
            (1, {"done": 1, "of": 4}),
            (2, {"done": 2, "of": 4}),
        ]
        await updates.aclose()
        first.worker.kill()  # as kill -9: the next worker replays the journal
    async with backend.runtime([JobService]) as second:
        again = second.client.handle(Jobs.run, "job-2")
        await again.signal("go", True)
        await again.signal("go", True)
        everything = [u async for u in again.progress()]
        assert everything == [(i, {"done": i, "of": 4}) for i in range(1, 5)]
        assert await again.result(timeout=WAIT) == "finished"
