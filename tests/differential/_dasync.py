"""The same scenario under dasync on the memory transport: live, forced replay, crashed.

* ``live``: ``dasync.testing.runtime`` (routine cache on), entries started with
  ``rt.client.start``.
* ``forced``: the same with ``force_replay=True``: every activation replays the
  routine from its journal.
* ``crash@k``: a runtime whose store and transport freeze right after the k-th
  journal commit (any routine's), as if the process died at that instant: the
  committing worker never sends that step's outbox, every other worker blocks
  at its next store or transport operation. The runtime is then killed
  (``Runtime.kill()``: unacknowledged deliveries go back to their queues), and a
  new runtime with fresh service instances finishes the work on the same broker.
  The client is a separate process (its own ``dasync.Client`` on the broker) and
  survives. Time stands still from the freeze until the new runtime is up, and
  the dead worker's start leases are dropped at once (a lease outliving its
  worker would hold that routine back by ``ack_wait`` of virtual time, and
  timeouts racing with it would then legitimately decide otherwise). The dead
  runtime is kept referenced until the outcome is read: a killed process runs
  no more code, and garbage-collecting its suspended routines would run their
  ``finally`` blocks.

Every mode waits until the broker is idle with nothing scheduled (late timers of
finished routines fire, event handlers run) and reads each entry's outcome; a run
whose entries never finish is reported as ``incomplete`` (stuck idle, stuck with a
message in flight, or past ``REAL_TIMEOUT``) rather than hanging the test.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import dasync
import dasync.testing
from dasync.transports import MemoryBroker, MemoryStore, MemoryTransport

from ._clock import FastClock
from ._effects import Effects
from ._observe import observed
from ._scenario import Entry, Outcome, Scenario
from ._shape import canon, shape

__all__ = ["observed", "result_of", "run_dasync", "start_entry"]

REAL_TIMEOUT = 10.0
"""Real seconds a run may take before it is reported as hanging."""
STALL = 2.0
"""Real seconds with a message in flight and nothing changing before a run counts as stuck."""
IDLE_ROUNDS = 50
"""Loop iterations with the broker idle and nothing scheduled before a run is settled."""
STUCK_GRACE = 0.8
"""Real seconds an idle system may still deliver a result (the client's journal polling)."""


def _new_broker() -> tuple[MemoryBroker, FastClock]:
    clock = FastClock()
    broker = MemoryBroker(clock)

    def busy() -> bool:
        due = broker.next_scheduled()
        return broker.busy() or (due is not None and due <= clock.now())

    clock.is_busy = busy
    return broker, clock


class _Tripwire:
    """Counts journal commits; after the k-th, every store and transport operation blocks."""

    def __init__(self, after: int | None) -> None:
        self.after = after
        self.commits = 0
        self.frozen = False
        self._blocked: list[asyncio.Future[None]] = []

    async def gate(self) -> None:
        if self.frozen:
            blocked = asyncio.get_running_loop().create_future()
            self._blocked.append(blocked)
            await blocked  # until the kill cancels the task, or release()

    def release(self) -> None:
        """Unblock what the dead runtime left waiting (once its outcome has been read)."""
        for blocked in self._blocked:
            blocked.cancel()

    def committed(self) -> None:
        self.commits += 1
        if self.after is not None and self.commits >= self.after and not self.frozen:
            self.frozen = True


class _GatedStore(MemoryStore):
    def __init__(self, broker: MemoryBroker, trip: _Tripwire) -> None:
        super().__init__(broker)
        self._trip = trip

    async def load(self, *args: Any, **kwargs: Any) -> Any:
        await self._trip.gate()
        return await super().load(*args, **kwargs)

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        await self._trip.gate()
        result = await super().append(*args, **kwargs)
        self._trip.committed()
        await self._trip.gate()
        return result

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        await self._trip.gate()
        return await super().claim(*args, **kwargs)  # type: ignore[misc]


class _GatedTransport(MemoryTransport):
    def __init__(self, broker: MemoryBroker, trip: _Tripwire) -> None:
        super().__init__(broker)
        self._trip = trip

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        await self._trip.gate()
        return await super().send(*args, **kwargs)

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        await self._trip.gate()
        return await super().publish(*args, **kwargs)


class _Control:
    def __init__(self, run: _Run) -> None:
        self._run = run
        self.effects = run.effects

    async def until(self, label: str) -> None:
        await self.effects.when(label)

    async def cancel(self, entry: int) -> None:
        await self._run.handles[entry].cancel()


class _Run:
    """One dasync run of a scenario: the client's side and the waiting."""

    def __init__(self, scenario: Scenario, broker: MemoryBroker, effects: Effects) -> None:
        self.scenario = scenario
        self.broker = broker
        self.effects = effects
        self.handles: list[Any] = []
        self.results: list[asyncio.Task[Any]] = []
        self.driver: asyncio.Task[None] | None = None

    async def start(self, client: Any) -> None:
        for entry in self.scenario.entries:
            handle = await start_entry(client, entry)
            self.handles.append(handle)
            self.results.append(asyncio.create_task(result_of(handle)))
        if self.scenario.driver is not None:
            self.driver = asyncio.create_task(self.scenario.driver(_Control(self)))

    def _progress(self) -> tuple[Any, ...]:
        journal = sum(len(j) for j in self.broker.journals.values())
        return (self.broker.sent, journal, self.broker.clock.now(), len(self.effects.labels))

    async def settle(self, trip: _Tripwire | None, deadline: float) -> str:
        """``tripped``, ``settled`` (all done, nothing left to do), ``stuck`` (idle, or busy
        with nothing moving for ``STALL`` real seconds) or ``timeout``."""
        idle = 0
        last, since = self._progress(), time.monotonic()
        quiet_since: float | None = None
        while True:
            if trip is not None and trip.frozen:
                return "tripped"
            quiet = not self.broker.busy() and self.broker.next_scheduled() is None
            idle = idle + 1 if quiet else 0
            now = time.monotonic()
            if idle >= IDLE_ROUNDS:
                if all(t.done() for t in self.results):
                    return "settled"
                # the client reads the journal when a reply went astray (after 0.5 s); a
                # dead letter (a parked message) leaves nothing to wait for
                quiet_since = quiet_since or now
                if now - quiet_since > STUCK_GRACE or getattr(self.broker, "dead", None):
                    return "stuck"
                await asyncio.sleep(0.01)
                continue
            quiet_since = None
            if now > deadline:
                return "timeout"
            progress = self._progress()
            if progress != last:
                last, since = progress, now
            elif now - since > STALL:
                return "stuck with a message in flight"
            await asyncio.sleep(0)

    def outcome(self, mode: str, state: str, commits: int, notes: list[str]) -> Outcome:
        results: list[Any] = []
        for task in self.results:
            if not task.done():
                task.cancel()
                results.append(["incomplete", f"no result ({state})"])
            else:
                results.append(task.result())
        if self.driver is not None and not self.driver.done():
            self.driver.cancel()
        for queue, message, reason in getattr(self.broker, "dead", []):
            notes.append(f"dead letter on {queue} ({getattr(message, 'msg_id', '?')}): {reason}")
        if self.effects.after_death:
            notes.append(f"effects recorded by the killed runtime: {self.effects.after_death}")
        return Outcome(
            mode, results, list(self.effects.labels), commits, strays=list(self.effects.strays),
            diagnostics=notes,
        )  # fmt: skip


class _ProxyCall:
    """What ``client.proxy(C).method(...)`` gives: a result, and no handle."""

    def __init__(self, call: Any) -> None:
        self._task = asyncio.ensure_future(call)

    async def result(self) -> Any:
        return await self._task

    async def cancel(self) -> None:
        raise TypeError("an entry called through a proxy cannot be cancelled by the driver")


async def start_entry(client: Any, entry: Entry, suffix: str = "") -> Any:
    """Start one entry the way it says (``client.start`` or a proxy call)."""
    if entry.via == "proxy":
        return _ProxyCall(getattr(client.proxy(entry.contract), entry.method)(*entry.args))
    return await client.start(entry.function, *entry.args, routine_id=entry.routine_id + suffix)


async def result_of(handle: Any) -> list[Any]:
    """An entry's outcome as ``["ok", canon]`` or ``["raised", shape]``, CancelledError
    included (a cancelled routine's outcome, raised by ``handle.result()``)."""
    try:
        return ["ok", canon(await handle.result())]
    except asyncio.CancelledError as exc:
        me = asyncio.current_task()
        if me is not None and me.cancelling():
            raise
        return ["raised", shape(exc)]
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a BaseExceptionGroup (a TaskGroup's, with a cancel) too
        return ["raised", shape(exc)]


def _worker_notes(rt: Any, notes: list[str]) -> None:
    stats = getattr(getattr(rt, "worker", None), "stats", None)
    for item in getattr(stats, "rejected", []):
        notes.append(f"rejected: {item}")
    for item in getattr(stats, "failed", []):
        notes.append(f"failed with no caller: {item}")


async def run_dasync(
    scenario: Scenario, *, force_replay: bool = False, crash_after: int | None = None
) -> Outcome:
    """One dasync run; ``crash_after=k`` kills the runtime right after the k-th commit."""
    broker, clock = _new_broker()
    effects = Effects(durable=True)
    container = {"log": effects, **scenario.container}
    notes: list[str] = []
    graveyard: list[Any] = []
    trip: _Tripwire | None = None
    deadline = time.monotonic() + REAL_TIMEOUT
    run = _Run(scenario, broker, effects)
    mode = "forced" if force_replay else "live"
    if crash_after is not None:
        mode = f"crash@{crash_after}" + ("+forced" if force_replay else "")
    try:
        with observed(notes):
            if crash_after is None:
                outcome: Outcome | None = None
                try:
                    async with dasync.testing.runtime(
                        scenario.services,
                        container=container,
                        force_replay=force_replay,
                        broker=broker,
                    ) as rt:
                        await run.start(rt.client)
                        state = await run.settle(None, deadline)
                        _worker_notes(rt, notes)
                        commits = sum(len(j) for j in broker.journals.values())
                        outcome = run.outcome(mode, state, commits, notes)
                except Exception as exc:  # the test runtime refusing to close cleanly
                    if outcome is None:
                        raise
                    outcome.errors.append(f"{type(exc).__name__}: {exc}")
                assert outcome is not None
                return outcome
            trip = _Tripwire(crash_after)
            client = dasync.Client(MemoryTransport(broker), MemoryStore(broker), clock)
            await client.open()
            try:
                rt = dasync.Runtime(
                    scenario.services,
                    container=container,
                    broker=broker,
                    transport=_GatedTransport(broker, trip),
                    store=_GatedStore(broker, trip),
                    force_replay=force_replay,
                )
                await rt.start()
                await run.start(client)
                state = await run.settle(trip, deadline)
                if state == "tripped":
                    notes.append(f"killed right after commit {crash_after}")
                    clock.paused = True
                    _worker_notes(rt, notes)
                    # a killed process runs no more code: keep its live routines referenced
                    # (kill() drops its cache), or collecting them would run their finally
                    # blocks -- inside whatever routine is running at that moment
                    graveyard.extend(getattr(rt.worker, "_cache", {}).values())
                    effects.dying = True  # the dead unwind: nothing they record happened
                    rt.kill()
                    graveyard.append(rt)
                    getattr(broker, "claims", {}).clear()  # the dead worker's leases
                    for _ in range(20):
                        await asyncio.sleep(0)
                    effects.dying = False
                    rt = dasync.Runtime(
                        scenario.services,
                        container=container,
                        broker=broker,
                        force_replay=force_replay,
                    )
                    await rt.start()
                    clock.paused = False
                    state = await run.settle(None, deadline)
                _worker_notes(rt, notes)
                commits = sum(len(j) for j in broker.journals.values())
                outcome = run.outcome(mode, state, commits, notes)
                try:
                    await rt.close()
                except Exception as exc:
                    outcome.errors.append(f"{type(exc).__name__}: {exc}")
                return outcome
            finally:
                await client.close()
    finally:
        clock.stop()
        if graveyard:
            with observed([]):  # what dead routines do when collected is no outcome
                if trip is not None:
                    trip.release()
                    for _ in range(5):
                        await asyncio.sleep(0)
                for dead in graveyard:
                    evict = getattr(dead, "evict", None)
                    if evict is not None:
                        evict()  # unwound the engine's way: no durable call can leave
                graveyard.clear()
                gc.collect(1)
