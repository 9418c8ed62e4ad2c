"""A routine whose code changed between runs is stopped with a NonDeterminismError.

The routine runs on one runtime until it waits on a service that no runtime
hosts yet; then its code changes (a module-level flag) and a new runtime on the
same durable state (memory broker or NATS namespace) hosts that service, so the
reply makes the routine replay.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import pytest

import dasync
from dasync._codec import encode_failure
from dasync._engine import RoutineInstance, StepRecord
from dasync._runtime._worker import HostedService, _body

from ._helpers import steps, wait_until

VERSION: dict[str, object] = {"code": "v1", "redeploy": False, "changed_runs": 0}
"""The code version the routine runs. With ``redeploy`` set, the changed code runs once
(its replay is refused) and the original code is deployed again at that moment."""
PAUSE = 5.0
"""The v1 routine's durable sleep: 5 s (virtual) on memory, 0.05 s on NATS."""


@pytest.fixture(autouse=True)
def _pause(timing):
    global PAUSE
    PAUSE = 5.0 if timing.virtual else 0.05
    VERSION.update(code="v1", redeploy=False, changed_runs=0)


class Leaf(Protocol):
    async def a(self) -> int: ...
    async def b(self) -> int: ...


class LeafImpl(Leaf):
    async def a(self) -> int:
        return 1

    async def b(self) -> int:
        return 2


class Later(Protocol):
    async def answer(self) -> int: ...


class LaterImpl(Later):
    async def answer(self) -> int:
        return 40


class Flow(Protocol):
    async def run(self) -> int: ...


class FlowImpl(Flow):
    def __init__(self, leaf: Leaf, later: Later) -> None:
        self.leaf = leaf
        self.later = later

    async def run(self) -> int:
        total = await self.leaf.a()  # step 0 issues call seq 1
        total += await self.leaf.a()  # step 1 issues call seq 2
        code = VERSION["code"]  # step 2 issues seq 3, which depends on the code version
        if code != "v1" and VERSION["redeploy"]:
            VERSION["code"] = "v1"  # the operator rolls back right after this failed run
            VERSION["changed_runs"] = int(VERSION["changed_runs"]) + 1  # type: ignore[call-overload]
        if code == "v1":
            await asyncio.sleep(PAUSE)
        elif code == "v2-call":
            total += await self.leaf.b()
        elif code == "v2-record":
            dasync.uuid4()
            await asyncio.sleep(PAUSE)
        # v2-removed: issues nothing here
        return total + await self.later.answer()  # step 3 (or 2) issues the call to Later


CHANGES = {
    "v2-call": ("timer (seq 3)", "call Leaf.b (seq 3)"),
    "v2-record": ("timer (seq 3)", "dasync.uuid4() (seq 3)"),
    "v2-removed": ("timer (seq 3)", "call Later.answer (seq 3)"),
}


async def _run_v1_until_waiting(make_runtime, rid: str) -> tuple[list[StepRecord], HostedService]:
    """Run the v1 routine until it waits on Later; return its journal and the hosted Flow."""
    VERSION["code"] = "v1"
    async with make_runtime([LeafImpl, FlowImpl], force_replay=False) as rt:
        await rt.transport.declare("Later")  # deployed, but nobody consumes it yet
        await rt.client.start(Flow.run, routine_id=rid)

        async def waiting() -> bool:
            return len(await steps(rt, "Flow", rid)) == 4

        await wait_until(waiting)
        return await steps(rt, "Flow", rid), rt.worker.services["Flow"]


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_changed_code_is_detected_on_replay(change, make_runtime, caplog):
    rid = f"flow-{change}"
    records, hosted = await _run_v1_until_waiting(make_runtime, rid)
    expected, actual = CHANGES[change]

    VERSION["code"] = change
    try:
        # the engine itself: replaying the journal raises, naming everything
        inst = RoutineInstance(rid, "Flow", "run", _body(hosted, "run"), encode_failure)
        with pytest.raises(dasync.NonDeterminismError) as info:
            await inst.replay(records)
        err = info.value
        assert (err.routine_id, err.step, err.expected, err.actual) == (rid, 2, expected, actual)
        for part in (rid, "step 2", expected, actual):
            assert part in str(err)

        # the runtime: the reply that makes the routine replay diverges; it is parked (a dead
        # letter with the reason), never retried into a chance match; nothing is committed
        caplog.set_level(logging.ERROR, logger="dasync.worker")
        async with make_runtime([LeafImpl, FlowImpl, LaterImpl], on_divergence="park") as rt:
            handle = rt.client.handle(Flow.run, rid)
            [letter] = await _letters(rt.transport, "Flow", 1)
            assert letter.reason.startswith("parked: non-determinism")
            for part in (rid, "step 2", expected, actual, "test_nondeterminism.py"):
                assert part in letter.reason
            assert [_shape(s) for s in await steps(rt, "Flow", rid)] == [
                _shape(s) for s in records
            ]
            assert await rt.client.proxy(Leaf).a() == 1  # the worker keeps serving
            # fixed code is deployed; the parked message is put back and the routine finishes
            VERSION["code"] = "v1"
            await rt.transport.retry_dead_letter("Flow", letter.id)
            assert await handle.result(timeout=20) == 42
            final = await steps(rt, "Flow", rid)
        logged = [r.getMessage() for r in caplog.records]
        assert any(all(p in m for p in (rid, "step 2", expected, actual)) for m in logged), logged
        # nothing of the changed run was committed: the journal is v1's, one step longer
        assert [_shape(s) for s in final[:4]] == [_shape(s) for s in records]
        assert len(final) == 5
        assert type(final[4].input).__name__ == "Resolve"
        assert [type(c).__name__ for c in final[4].commands] == ["Complete"]
    finally:
        VERSION.update(code="v1", redeploy=False)


class Fickle(Protocol):
    async def run(self) -> int: ...


RUNS = {"fickle": 0}


class FickleImpl(Fickle):
    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def run(self) -> int:
        RUNS["fickle"] += 1  # plain state that differs on every run: not deterministic
        first = await (self.leaf.a() if RUNS["fickle"] == 1 else self.leaf.b())
        return first + await self.leaf.a()


async def test_divergence_fails_the_caller_in_tests(backend):
    """Under forced replay (and in dasync.testing) the first divergence is the caller's error
    at once: a test cannot pass by retrying until a replay happens to match."""
    RUNS["fickle"] = 0
    async with backend.runtime([LeafImpl, FickleImpl], force_replay=True) as rt:
        with pytest.raises(dasync.NonDeterminismError) as info:
            await rt.client.proxy(Fickle).run()
        err = info.value
        assert err.step == 0 and "Leaf.a" in err.expected and "Leaf.b" in err.actual
        assert err.differs == "method"
        assert err.where.startswith(__file__) and "in run" in err.where
        assert len(rt.worker.stats.diverged) == 1
    assert RUNS["fickle"] == 2  # one live run, one replay: no retry


async def _letters(transport: Any, queue: str, count: int) -> list[Any]:
    for _ in range(500):
        letters = await transport.dead_letters(queue)
        if len(letters) >= count:
            return list(letters)
        await asyncio.sleep(0.02)
    raise AssertionError(f"{queue}: expected {count} dead letters, found {letters}")


def _shape(step: StepRecord) -> tuple[str, list[tuple[str, int]]]:
    return type(step.input).__name__, [(type(c).__name__, c.seq) for c in step.commands]


async def test_unchanged_code_resumes_on_a_new_runtime(make_runtime):
    rid = "flow-same"
    await _run_v1_until_waiting(make_runtime, rid)
    async with make_runtime([LeafImpl, FlowImpl, LaterImpl]) as rt:
        assert await rt.client.handle(Flow.run, rid).result(timeout=10) == 42
        assert rt.worker.stats.rejected == []
        assert rt.worker.stats.replays >= 1
