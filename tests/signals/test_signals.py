"""Signals (``dasync.signal`` / ``Client.signal``) on memory and NATS, cached and forced
replay: before and after the wait, with deadlines, over several, twice, and refused."""

from __future__ import annotations

import asyncio
from typing import Protocol

import pytest

import dasync
from tests.conftest import Backend

WAIT = 15.0


class Approvals(Protocol):
    async def request(self, amount: int) -> str: ...

    async def collect(self, n: int) -> list[int]: ...

    async def deadline(self, seconds: float) -> str: ...

    async def either(self) -> list[str]: ...


class ApprovalService(Approvals):
    async def request(self, amount: int) -> str:
        approved = await dasync.signal("approval", bool)
        return f"{amount} approved" if approved else f"{amount} rejected"

    async def collect(self, n: int) -> list[int]:
        await asyncio.sleep(0.3)  # signals sent meanwhile are kept, in order
        return [await dasync.signal("item", int) for _ in range(n)]

    async def deadline(self, seconds: float) -> str:
        try:
            async with asyncio.timeout(seconds):  # a durable timer
                return "approved" if await dasync.signal("approval", bool) else "rejected"
        except TimeoutError:
            return "escalated"

    async def either(self) -> list[str]:
        a = asyncio.ensure_future(dasync.signal("a", str))
        b = asyncio.ensure_future(dasync.signal("b", str))
        done, pending = await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        late = await dasync.signal("b", str)  # the cancelled wait took nothing
        return [*sorted(t.result() for t in done), late]


@pytest.fixture(params=["cached", "forced"])
def force_replay(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "forced")


async def journaled(rt: dasync.Runtime, routine_id: str) -> None:
    """Until the routine's start is committed (a signal needs a journal to go to)."""
    for _ in range(int(WAIT / 0.01)):
        if await rt.client.routine("Approvals", routine_id) is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{routine_id} never started")


async def test_a_signal_after_the_wait_resumes_the_routine(
    backend: Backend, force_replay: bool
) -> None:
    async with backend.runtime([ApprovalService], force_replay=force_replay) as rt:
        handle = await rt.client.start(Approvals.request, 100, routine_id="r1")
        await journaled(rt, "r1")
        await rt.client.signal(Approvals, "r1", "approval", True)
        assert await handle.result(timeout=WAIT) == "100 approved"
        other = await rt.client.start(Approvals.request, 5, routine_id="r2")
        await journaled(rt, "r2")
        await other.signal("approval", False)
        assert await other.result(timeout=WAIT) == "5 rejected"


async def test_signals_sent_before_the_wait_are_kept_in_order_and_one_id_is_one_signal(
    backend: Backend, force_replay: bool
) -> None:
    async with backend.runtime([ApprovalService], force_replay=force_replay) as rt:
        handle = await rt.client.start(Approvals.collect, 3, routine_id="c1")
        await journaled(rt, "c1")
        await handle.signal("item", 1, signal_id="s1")
        await handle.signal("item", 99, signal_id="s1")  # the same id again: ignored
        await handle.signal("item", 2, signal_id="s2")
        await handle.signal("item", 3)
        assert await handle.result(timeout=WAIT) == [1, 2, 3]


async def test_a_deadline_expires_and_a_finished_routine_refuses_signals(
    backend: Backend, force_replay: bool
) -> None:
    async with backend.runtime([ApprovalService], force_replay=force_replay) as rt:
        handle = await rt.client.start(Approvals.deadline, 0.2, routine_id="d1")
        assert await handle.result(timeout=WAIT) == "escalated"
        with pytest.raises(dasync.RoutineFinished, match="has finished"):
            await handle.signal("approval", True)
        with pytest.raises(LookupError, match="no routine 'nobody'"):
            await rt.client.signal("Approvals", "nobody", "approval", True)
        if backend.transport == "memory":  # hold the virtual clock: the deadline is real
            backend.broker.clock.is_busy = lambda: True  # type: ignore[attr-defined]
        quick = await rt.client.start(Approvals.deadline, 30.0, routine_id="d2")
        await journaled(rt, "d2")
        await quick.signal("approval", True)
        assert await quick.result(timeout=WAIT) == "approved"


async def test_asyncio_wait_over_several_signals(backend: Backend, force_replay: bool) -> None:
    async with backend.runtime([ApprovalService], force_replay=force_replay) as rt:
        handle = await rt.client.start(Approvals.either, routine_id="e1")
        await journaled(rt, "e1")
        await handle.signal("a", "first")
        await handle.signal("b", "second")
        assert await handle.result(timeout=WAIT) == ["first", "second"]


async def test_a_value_of_the_wrong_type_raises_where_the_routine_waits(
    backend: Backend,
) -> None:
    async with backend.runtime([ApprovalService]) as rt:
        handle = await rt.client.start(Approvals.request, 1, routine_id="w1")
        await journaled(rt, "w1")
        await handle.signal("approval", {"not": "a bool"})
        with pytest.raises(dasync.InvalidArguments, match="signal 'approval'"):
            await handle.result(timeout=WAIT)
