"""Changing code under routines in flight (memory and NATS): ``dasync.patched`` lets old
and new routines both finish; the same change without it is caught by
``dasync.testing.replay`` and, deployed anyway, parks the routines it would break (their
journals untouched); deploying the fix resumes them by itself."""

from __future__ import annotations

import asyncio
from typing import Protocol

import dasync
from dasync._engine import decode_step
from dasync.testing import replay
from tests.conftest import Backend

WAIT = 15.0
CALLS: list[str] = []


class Leaf(Protocol):
    async def step(self, name: str) -> str: ...


class LeafImpl(Leaf):
    async def step(self, name: str) -> str:
        CALLS.append(name)
        return name


class Flow(Protocol):
    async def run(self) -> list[str]: ...


class FlowV1(Flow):
    """Version 1: a, then (after a signal) b."""

    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def run(self) -> list[str]:
        a = await self.leaf.step("a")
        await dasync.signal("go")
        return [a, await self.leaf.step("b")]


class FlowUnsafe(Flow):
    """The change made naively: a check before a; old journals called a first."""

    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def run(self) -> list[str]:
        check = await self.leaf.step("check")  # diverges from every journal of version 1
        a = await self.leaf.step("a")
        await dasync.signal("go")
        return [check, a, await self.leaf.step("b")]


class FlowPatched(Flow):
    """The same change behind dasync.patched: old routines keep the old path."""

    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def run(self) -> list[str]:
        done = []
        if dasync.patched("check-first"):
            done.append(await self.leaf.step("check"))
        a = await self.leaf.step("a")
        await dasync.signal("go")
        return [*done, a, await self.leaf.step("b")]


async def waiting(rt: dasync.Runtime, routine_id: str, steps: int = 2) -> int:
    """Until the routine committed ``steps`` entries (it waits for its signal then)."""
    for _ in range(int(WAIT / 0.01)):
        entries = await rt.store.load("Flow", routine_id)
        if len(entries) >= steps:
            return len(entries)
        await asyncio.sleep(0.01)
    raise AssertionError(f"{routine_id} did not get to its signal")


async def test_a_change_in_flight_with_and_without_patched(backend: Backend) -> None:
    CALLS.clear()
    # version 1: two routines suspended at their signal
    async with backend.runtime([FlowV1, LeafImpl], code_version="1") as v1:
        for rid in ("old-1", "old-2"):
            await v1.client.start(Flow.run, routine_id=rid)
            await waiting(v1, rid)
        exported = [await v1.client.export_journal("Flow", rid) for rid in ("old-1", "old-2")]
        code = {decode_step(e).code for e in await v1.store.load("Flow", "old-1")}
        assert code == {"1"}, "every entry names the code that wrote it"

    # CI: the unsafe change is caught, naming the step and the line; the patched one passes
    unsafe = await replay(exported, FlowUnsafe, LeafImpl)
    assert [r.ok for r in unsafe] == [False, False]
    assert unsafe[0].step == 0 and "test_code_changes.py" in unsafe[0].where
    assert unsafe[0].where.endswith(" in run") and "(args differs)" in str(unsafe[0].error)
    assert all(r.ok for r in await replay(exported, FlowPatched, LeafImpl))

    # deployed anyway: the routine it would break is parked, its journal untouched
    async with backend.runtime(
        [FlowUnsafe, LeafImpl], code_version="2", on_divergence="park"
    ) as v2:
        before = await v2.store.load("Flow", "old-1")
        await v2.client.signal(Flow, "old-1", "go", None)
        for _ in range(int(WAIT / 0.01)):
            if v2.worker.stats.diverged:
                break
            await asyncio.sleep(0.01)
        assert v2.worker.stats.diverged, "the routine was parked"
        assert await v2.store.load("Flow", "old-1") == before
        fresh = await v2.client.start(Flow.run, routine_id="new-2")
        await waiting(v2, "new-2", 3)
        await fresh.signal("go", None)
        assert await fresh.result(timeout=WAIT) == ["check", "a", "b"]

    # the fix deployed: the parked routine resumes by itself, old path; new ones take the new
    CALLS.clear()
    async with backend.runtime([FlowPatched, LeafImpl], code_version="3") as v3:
        old = v3.client.handle(Flow.run, "old-1")
        assert await old.result(timeout=WAIT) == ["a", "b"]
        other = v3.client.handle(Flow.run, "old-2")
        await other.signal("go", None)
        assert await other.result(timeout=WAIT) == ["a", "b"]
        new = await v3.client.start(Flow.run, routine_id="new-3")
        await waiting(v3, "new-3", 3)
        await new.signal("go", None)
        assert await new.result(timeout=WAIT) == ["check", "a", "b"]
    assert sorted(CALLS) == ["a", "b", "b", "b", "check"], "nothing ran twice"
