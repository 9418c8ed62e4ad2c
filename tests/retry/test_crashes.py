"""A message whose processing keeps killing its worker: the crash count, in memory.

The worker counts, in the store, every redelivery that is about to run user
code (``CrashCounter.record_crash``); a delivery that finds ``max_crashes - 1``
runs before it (plus the first delivery, which never finished either) sets the
message aside as a dead letter instead of running it again, and the caller
gets ``CallFailed``. A run that ends (returns or raises) resets the count.
tests/security/test_misbehaving.py shows the same with real processes and
``os._exit``; here the processes are runtimes on one ``MemoryBroker``.

**How a crash is simulated.** A killed process does nothing more, not even
its ``finally`` blocks. ``Runtime.kill()`` alone is not that: it cancels the
worker's tasks, and the worker's cleanup then runs (it resets the crash count
of the run it was in), so a count could never build up. Each "process" here
therefore has a store of its own that stops answering when the process dies
(``ProcessStore``: every call from then on waits forever), and the method that
kills its process waits forever too, as code in a dead process would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

import dasync
from dasync.transports import DeadLetters, MemoryBroker, MemoryStore, MemoryTransport

WAIT = 10.0


class Fragile(Protocol):
    async def run(self, label: str) -> str: ...
    async def ping(self) -> str: ...


class ProcessStore(MemoryStore):
    """One process's view of the broker's journals: silent forever once the process died."""

    def __init__(self, broker: MemoryBroker, cluster: Cluster) -> None:
        super().__init__(broker)
        self.cluster = cluster
        self.dead = False

    async def _alive(self) -> None:
        if self.dead:
            await self.cluster.forever()

    async def load(self, service: str, routine_id: str) -> list[bytes]:
        await self._alive()
        return await super().load(service, routine_id)

    async def append(self, service: str, routine_id: str, entry: bytes, expected: int) -> None:
        await self._alive()
        await super().append(service, routine_id, entry, expected)

    async def claim(self, service: str, routine_id: str, owner: str) -> bool:
        await self._alive()
        return await super().claim(service, routine_id, owner)

    async def record_crash(self, service: str, key: str) -> int:
        await self._alive()
        return await super().record_crash(service, key)

    async def forget_crash(self, service: str, key: str) -> None:
        await self._alive()
        await super().forget_crash(service, key)


@dataclass
class Process:
    """A worker process: a runtime and its store."""

    cluster: Cluster
    runtime: dasync.Runtime | None = None
    store: ProcessStore | None = None

    def die(self) -> None:
        assert self.runtime is not None and self.store is not None
        self.store.dead = True
        self.runtime.kill()
        self.cluster.died.set()


class FragileImpl(Fragile):
    def __init__(self, process: Process) -> None:
        self.process = process

    async def run(self, label: str) -> str:
        cluster = self.process.cluster
        cluster.runs.append(label)
        cluster.counts_seen.append(sorted(cluster.broker.crashes.values()))
        if cluster.runs.count(label) <= cluster.crash_first.get(label, 0):
            self.process.die()
            await dasync.io(cluster.forever())  # a dead process runs nothing more
        return f"done {label}"

    async def ping(self) -> str:
        return "pong"


@dataclass
class Cluster:
    """Worker processes on one broker, and a supervisor that replaces each one that dies."""

    max_crashes: int
    crash_first: dict[str, int]
    """How many runs of each label kill their process before one finishes."""
    broker: MemoryBroker = field(default_factory=lambda: MemoryBroker(ack_wait=0.05))
    """Real time; a dead worker's lease on a routine's first step lasts ``ack_wait``."""
    processes: list[Process] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    counts_seen: list[list[int]] = field(default_factory=list)
    """The crash counts in the store when each run began."""
    died: asyncio.Event = field(default_factory=asyncio.Event)
    _hung: list[asyncio.Future[Any]] = field(default_factory=list)

    def forever(self) -> asyncio.Future[Any]:
        hung: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._hung.append(hung)
        return hung

    async def spawn(self) -> Process:
        process = Process(self)
        process.store = ProcessStore(self.broker, self)
        process.runtime = dasync.Runtime(
            [FragileImpl],
            transport=MemoryTransport(self.broker),
            store=process.store,
            broker=self.broker,
            container={"process": process},
            max_crashes=self.max_crashes,
        )
        await process.runtime.start()
        self.processes.append(process)
        return process

    async def supervise(self) -> None:
        while True:
            await self.died.wait()
            self.died.clear()
            await self.spawn()

    @property
    def current(self) -> dasync.Runtime:
        runtime = self.processes[-1].runtime
        assert runtime is not None
        return runtime

    async def close(self) -> None:
        for hung in self._hung:
            hung.cancel()  # the dead processes' tasks end
        if self.processes:
            await self.current.close()


async def run_cluster(cluster: Cluster, label: str) -> tuple[Any, dasync.Client]:
    """Start ``Fragile.run(label)`` from a client that outlives the workers; its result."""
    broker = cluster.broker
    client = dasync.Client(MemoryTransport(broker), MemoryStore(broker), broker.clock)
    await client.open()
    await cluster.spawn()
    handle = await client.start(Fragile.run, label, routine_id=label)
    try:
        return await handle.result(timeout=WAIT), client
    except dasync.CallFailed as exc:
        return exc, client


@pytest.fixture
async def clusters() -> Any:
    made: list[tuple[Cluster, asyncio.Task[None]]] = []

    async def make(max_crashes: int, **crash_first: int) -> Cluster:
        cluster = Cluster(max_crashes, crash_first)
        made.append((cluster, asyncio.get_running_loop().create_task(cluster.supervise())))
        return cluster

    yield make
    for cluster, supervisor in made:
        supervisor.cancel()
        await asyncio.gather(supervisor, return_exceptions=True)
        await cluster.close()


@pytest.mark.parametrize("max_crashes", [1, 2, 3])
async def test_n_crashes_make_a_dead_letter_and_the_caller_is_told(
    clusters: Any, max_crashes: int
) -> None:
    cluster = await clusters(max_crashes, always=100)
    outcome, client = await run_cluster(cluster, "always")

    assert isinstance(outcome, dasync.CallFailed), outcome
    reason = f"worker crashed {max_crashes} times processing it"
    assert outcome.reason == reason
    assert cluster.runs == ["always"] * max_crashes  # the code ran N times, never once more
    assert len(cluster.processes) == max_crashes + 1  # N processes died, the next one refused
    queue, message, dead_reason = cluster.broker.dead[-1]
    assert (queue, message.headers["dasync-routine"], dead_reason) == ("Fragile", "always", reason)
    # the counts each run found: none on the first delivery, then one per earlier crash
    assert cluster.counts_seen == [[]] + [[n] for n in range(1, max_crashes)]
    # a handle made by another client gets the same outcome, read from the failure note
    broker = cluster.broker
    other = dasync.Client(MemoryTransport(broker), MemoryStore(broker), broker.clock)
    with pytest.raises(dasync.CallFailed) as seen:
        await other.handle(Fragile.run, "always").result(timeout=WAIT)
    assert seen.value.reason == reason
    # the worker that refused it serves the next call
    assert await client.proxy(Fragile).ping() == "pong"
    assert len(cluster.processes) == max_crashes + 1
    await client.close()


async def test_a_run_that_finishes_resets_the_count(clusters: Any) -> None:
    cluster = await clusters(3, twice=2)  # two crashes, then the run finishes
    outcome, client = await run_cluster(cluster, "twice")

    assert outcome == "done twice"
    assert cluster.runs == ["twice"] * 3 and len(cluster.processes) == 3
    assert cluster.counts_seen == [[], [1], [2]]  # one short of the limit when it finished
    assert cluster.broker.crashes == {}  # and the finished run forgot them
    assert cluster.broker.dead == []
    await client.close()


async def test_a_retried_dead_letter_counts_its_crashes_afresh(clusters: Any) -> None:
    # two crashes set it aside (max 2); retried, it crashes once more and then finishes
    cluster = await clusters(2, flaky=3)
    outcome, client = await run_cluster(cluster, "flaky")
    assert isinstance(outcome, dasync.CallFailed)
    assert outcome.reason == "worker crashed 2 times processing it"
    transport = cluster.current.transport
    assert isinstance(transport, DeadLetters)
    [letter] = await transport.dead_letters("Fragile")
    await client.retry_dead_letter("Fragile", letter.id)

    # the retry's first delivery crashes (run 3); its redelivery must run the code again
    finished = await wait_until(
        lambda: len(cluster.runs) == 4 or len(cluster.broker.dead) == 2, "the retry settled"
    )
    assert finished
    assert [reason for _, _, reason in cluster.broker.dead] == [outcome.reason], "set aside again"
    assert cluster.runs == ["flaky"] * 4
    assert await client.handle(Fragile.run, "flaky").result(timeout=WAIT) == "done flaky"
    await client.close()


async def wait_until(condition: Callable[[], bool], what: str) -> bool:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"{what}: not within {WAIT} s"
        await asyncio.sleep(0.01)
    return True
