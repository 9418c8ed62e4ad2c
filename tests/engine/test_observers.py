"""Observers hear of every committed step (again after a redelivery) and of every routine
set aside, on both transports: what a routine index or a live log is built on."""

from __future__ import annotations

import asyncio
from typing import Protocol

from dasync._engine import StepRecord
from dasync._runtime import _wire
from dasync.transports import Message, Origin

from ..conftest import Backend


class Leaf(Protocol):
    async def add(self, n: int) -> int: ...


class Root(Protocol):
    async def run(self, n: int) -> int: ...


class LeafImpl(Leaf):
    async def add(self, n: int) -> int:
        return n + 1


class RootImpl(Root):
    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def run(self, n: int) -> int:
        return await self.leaf.add(n) + await self.leaf.add(n)


class Recorder:
    def __init__(self) -> None:
        self.steps: list[tuple[str, str, int, bool, bool]] = []
        self.aside: list[tuple[str, str, int, bool]] = []

    async def committed(
        self, service: str, routine_id: str, index: int, record: StepRecord, *, resent: bool
    ) -> None:
        self.steps.append((service, routine_id, index, record.completion is not None, resent))

    async def set_aside(
        self, service: str, routine_id: str, entries: int, reason: str, *, told: bool
    ) -> None:
        self.aside.append((service, routine_id, entries, told))


async def test_every_committed_step_is_reported_in_order(backend: Backend) -> None:
    seen = Recorder()
    async with backend.runtime([LeafImpl, RootImpl], observers=[seen], retention=None) as rt:
        handle = await rt.client.start(Root.run, 1, routine_id="r1")
        assert await handle.result(timeout=20) == 4
        mine = [s for s in seen.steps if s[:2] == ("Root", "r1")]
        # start (calls add), reply 1 (calls add again), reply 2 (completes)
        assert mine == [("Root", "r1", 0, False, False), ("Root", "r1", 1, False, False),
                        ("Root", "r1", 2, True, False)]  # fmt: skip
        leaves = [s for s in seen.steps if s[0] == "Leaf"]
        assert len(leaves) == 2 and all(s[2] == 0 and s[3] for s in leaves)

        # the start delivered again: found committed, reported again as resent
        again = await rt.client.start(Root.run, 1, routine_id="r1")
        assert await again.result(timeout=20) == 4
        assert ("Root", "r1", 0, False, True) in seen.steps


async def test_a_routine_set_aside_is_reported_with_whether_its_caller_was_told(
    backend: Backend,
) -> None:
    seen = Recorder()
    async with backend.runtime([LeafImpl], observers=[seen], max_payload=100, retention=None) as rt:
        too_big = Message(
            "big-1",
            {_wire.VERSION: _wire.WIRE_VERSION, _wire.KIND: "start", _wire.ROUTINE: "big",
             _wire.METHOD: "add"},  # fmt: skip
            b'{"n": ' + b"1" * 200 + b"}",
        )
        await rt.transport.send("Leaf", too_big, Origin.client(rt.client.identity))
        for _ in range(500):
            if seen.aside:
                break
            await asyncio.sleep(0.01)
        assert seen.aside == [("Leaf", "big", 0, True)]
        assert [s for s in seen.steps if s[1] == "big"] == []
