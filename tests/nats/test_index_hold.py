"""The routine index holds back a first "running" entry on a real server (issue 14).

A routine that completes within ``index_hold`` costs one index write and leaves one
entry; one that keeps running is listed once the hold is over, and its start is
acknowledged only then; a worker killed during the hold leaves the routine listed all
the same, by the start's redelivery.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import pytest

import dasync
from dasync.transports.nats import connect_nats

from ..conftest import delete_namespace, nats_options

pytestmark = pytest.mark.timeout(60)


class Step(Protocol):
    async def take(self, x: int) -> int: ...


class Walk(Protocol):
    async def run(self, x: int) -> int: ...


class StepImpl(Step):
    def __init__(self) -> None:
        self.gate: asyncio.Future[None] | None = None
        self.runs = 0

    async def take(self, x: int) -> int:
        self.runs += 1
        if self.gate is not None:
            await asyncio.shield(self.gate)
        return x + 1


class WalkImpl(Walk):
    def __init__(self, step: Step) -> None:
        self.step = step

    async def run(self, x: int) -> int:
        return await self.step.take(x) * 2


async def until(check: Any, within: float = 15.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def deploy(nats_session_server: Any, request: pytest.FixtureRequest) -> Any:
    """``deploy(services, **options)`` -> a started runtime in this test's namespace."""
    url = nats_session_server.url
    namespace = f"hold{abs(hash(request.node.nodeid)) % 10**8}"
    runtimes: list[dasync.Runtime] = []

    async def deploy_(services: list[type], **options: Any) -> dasync.Runtime:
        transport, store = await connect_nats(nats_options(url, namespace, **options))
        rt = dasync.Runtime(services, transport=transport, store=store)
        await rt.start()
        runtimes.append(rt)
        return rt

    deploy_.url = url  # type: ignore[attr-defined]
    deploy_.namespace = namespace  # type: ignore[attr-defined]
    yield deploy_
    for rt in runtimes:
        try:
            await rt.close()
        except Exception:
            pass
    await delete_namespace(url, namespace)


async def _entries_on(url: str, namespace: str, service: str, routine_id: str) -> int:
    """How many messages the index stream keeps for one routine (all statuses)."""
    import nats

    from dasync.transports.nats._index import index_root, index_stream

    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(
            index_stream(service, namespace),
            subjects_filter=index_root(service, routine_id, namespace) + ".>",
        )
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


async def test_a_routine_that_completes_within_the_hold_is_written_once(deploy: Any) -> None:
    walk_rt = await deploy([WalkImpl], index_hold=30.0)
    await deploy([StepImpl])
    assert walk_rt.index is not None and walk_rt.index.hold == 30.0
    for n in range(5):
        handle = await walk_rt.client.start(Walk.run, n, routine_id=f"quick-{n}")
        assert await handle.result(timeout=20) == (n + 1) * 2
    index = walk_rt.index
    # the completion's write and the reply leave together: the result may come first
    await until(lambda: _async(index.writes >= 5), what="the five completions written")
    assert index.writes == 5, "one write per routine: its completion"
    entries = await walk_rt.client.list_routines("Walk")
    assert sorted((e.routine_id, e.status) for e in entries) == [
        (f"quick-{n}", "completed") for n in range(5)
    ]
    assert await _entries_on(deploy.url, deploy.namespace, "Walk", "quick-0") == 1


async def test_a_running_routine_is_listed_after_the_hold_and_its_start_acked_then(
    deploy: Any,
) -> None:
    walk_rt = await deploy([WalkImpl], index_hold=1.0)
    step_rt = await deploy([StepImpl])
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    step_rt.instance_of(StepImpl).gate = gate
    handle = await walk_rt.client.start(Walk.run, 1, routine_id="slow")
    worker = walk_rt.worker
    await until(lambda: _async(bool(worker._unacked)), what="the start waiting for its entry")
    assert await walk_rt.client.list_routines("Walk") == [], "held back"

    async def listed() -> bool:
        entries = await walk_rt.client.list_routines("Walk", status="running")
        return [e.routine_id for e in entries] == ["slow"]

    await until(listed, what="the held entry written")
    await until(lambda: _async(not worker._unacked and not worker._acking), what="start acked")
    gate.set_result(None)
    assert await handle.result(timeout=20) == 4
    entries = await walk_rt.client.list_routines("Walk")
    assert [(e.routine_id, e.status) for e in entries] == [("slow", "completed")]
    assert await _entries_on(deploy.url, deploy.namespace, "Walk", "slow") == 1, "purged"


async def test_a_worker_killed_during_the_hold_leaves_its_routine_listed(deploy: Any) -> None:
    """The start was not acknowledged: it comes back to another worker, which finds the
    step committed, re-sends its call (deduplicated) and writes the entry at once."""
    holder, step, gate = await _held(deploy, 5, "orphan")
    holder.kill()
    survivor = await deploy([WalkImpl], index_hold=60.0, ack_wait=1.0)

    async def listed() -> bool:
        entries = await survivor.client.list_routines("Walk", status="running")
        return [e.routine_id for e in entries] == ["orphan"]

    await until(listed, what="the routine listed by the worker that got its start back")
    gate.set_result(None)
    assert await survivor.client.handle(Walk.run, "orphan").result(timeout=20) == 12
    assert step.runs == 1, "the re-sent call was the same message: run once"
    entries = await survivor.client.list_routines("Step")
    assert [e.status for e in entries] == ["completed"]


async def _async(value: bool) -> bool:
    return value


async def _held(
    deploy: Any, x: int, routine_id: str
) -> tuple[dasync.Runtime, StepImpl, asyncio.Future[None]]:
    """A ``Walk`` runtime (hold 60 s, ack_wait 1 s) whose routine ``routine_id`` waits on a
    gated call, its first entry held back: (the runtime, the callee, the gate)."""
    walk_rt = await deploy([WalkImpl], index_hold=60.0, ack_wait=1.0)
    step_rt = await deploy([StepImpl])
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    step = step_rt.instance_of(StepImpl)
    step.gate = gate
    await walk_rt.client.start(Walk.run, x, routine_id=routine_id)
    await until(lambda: _async(bool(walk_rt.worker._unacked)), what="the entry held back")
    return walk_rt, step, gate


async def test_a_stopping_worker_writes_what_it_holds_and_acknowledges_the_start(
    deploy: Any,
) -> None:
    walk_rt, _, gate = await _held(deploy, 2, "parting")
    await walk_rt.close()  # graceful: the held entry is written, the start acknowledged
    later = await deploy([WalkImpl], index_hold=60.0, ack_wait=1.0)
    entries = await later.client.list_routines("Walk", status="running")
    assert [e.routine_id for e in entries] == ["parting"], "written on the way out"
    gate.set_result(None)
    assert await later.client.handle(Walk.run, "parting").result(timeout=20) == 6
    await asyncio.sleep(1.5)  # past the test's ack_wait: an unacknowledged start would be back
    stats = later.worker.stats
    assert (stats.activations, stats.redeliveries_resent) == (1, 0), "the reply only"


async def test_quick_and_slow_routines_each_end_with_one_entry_of_their_final_status(
    deploy: Any,
) -> None:
    """Mixed: some routines complete within the hold, some wait past it (their running
    entry written, then replaced and purged); in the end each has one entry, completed."""
    walk_rt = await deploy([WalkImpl], index_hold=0.3)
    step_rt = await deploy([StepImpl])
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    step = step_rt.instance_of(StepImpl)
    quick = [await walk_rt.client.start(Walk.run, n, routine_id=f"q{n}") for n in range(10)]
    for n, handle in enumerate(quick):
        assert await handle.result(timeout=20) == (n + 1) * 2
    step.gate = gate
    slow = [await walk_rt.client.start(Walk.run, n, routine_id=f"s{n}") for n in range(10)]

    async def all_running() -> bool:
        entries = await walk_rt.client.list_routines("Walk", status="running")
        return len(entries) == 10

    await until(all_running, what="the slow routines listed as running once their hold ended")
    gate.set_result(None)
    for n, handle in enumerate(slow):
        assert await handle.result(timeout=20) == (n + 1) * 2
    expected = sorted(
        [(f"q{n}", "completed") for n in range(10)] + [(f"s{n}", "completed") for n in range(10)]
    )

    async def all_completed() -> bool:
        # the index write leaves with the reply, so a listing may trail it by that write
        # (docs/architecture.md, "The routine index")
        entries = await walk_rt.client.list_routines("Walk", limit=None)
        return sorted((e.routine_id, e.status) for e in entries) == expected

    await until(all_completed, what="every routine listed once, completed")
    for routine_id in ("q0", "s0", "s9"):
        async def one_entry(rid: str = routine_id) -> bool:
            return await _entries_on(deploy.url, deploy.namespace, "Walk", rid) == 1

        await until(one_entry, what=f"{routine_id}: one entry left (the running one purged)")
    assert walk_rt.index is not None and walk_rt.index.writes == 30, "10 quick + 2 per slow"
