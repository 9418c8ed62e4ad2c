"""kill -9 and duplicate deliveries: every call id commits once, every routine finishes.

What "exactly once" means (DESIGN §4): a call id commits once; code a worker was
running when it was killed runs again, so side effects outside dasync are keyed
by ``dasync.call_id()``. The tests count both: effects keyed by call id (must
equal the number of calls) and executions (may exceed it only for calls that
were in flight at a kill, never because a message was delivered twice).

The transport and store used here yield to the event loop on every operation,
so a kill can land anywhere: mid-activation, between the journal commit and
the outbox send, between the send and the ack.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Iterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import dasync
from dasync._engine import Call, StepRecord, decode_step
from dasync.testing import VirtualClock
from dasync.transports import MemoryBroker, MemoryStore, MemoryTransport, Message, Origin

from ..semantics._helpers import wait_until

EXECUTIONS: Counter[str] = Counter()
"""Ledger.book runs, by call id; module-level, so it survives the runtimes."""
EFFECTS: dict[str, tuple[str, int]] = {}
"""The side effect, applied idempotently under the call id (as a payment API would)."""

WORKFLOWS = 50
BOOKS_PER_WORKFLOW = 5  # one call, a gather of three, one in a sub-routine


class Ledger(Protocol):
    async def book(self, account: str, amount: int) -> int: ...


class LedgerImpl(Ledger):
    def __init__(self) -> None:
        self.host = asyncio.get_running_loop()

    async def book(self, account: str, amount: int) -> int:
        key = dasync.call_id()
        EXECUTIONS[key] += 1
        # real I/O on the host loop: a kill may land here, after the execution began
        done = self.host.create_future()
        self.host.call_soon(done.set_result, None)
        await done
        EFFECTS.setdefault(key, (account, amount))
        return amount


class Flow(Protocol):
    async def run(self, n: int) -> int: ...
    async def sub(self, n: int) -> int: ...


class FlowImpl(Flow):
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def run(self, n: int) -> int:
        first = await self.ledger.book(f"acct-{n}", n)
        parts = await asyncio.gather(*(self.ledger.book(f"part-{n}", i) for i in range(3)))
        await asyncio.sleep(60.0 * (n % 5 + 1))
        return first + sum(parts) + await self.sub(n)

    async def sub(self, n: int) -> int:
        await asyncio.sleep(30.0)
        return await self.ledger.book(f"sub-{n}", 100)


def expected(n: int) -> int:
    return n + 0 + 1 + 2 + 100


class YieldingTransport(MemoryTransport):
    """The memory transport, suspending on every send (as a network client would)."""

    def __init__(self, broker: MemoryBroker, duplicate: bool = False) -> None:
        super().__init__(broker)
        self.duplicate = duplicate

    async def send(self, queue: str, message: Message, origin: Origin | None = None) -> None:
        await asyncio.sleep(0)
        await super().send(queue, message, origin)
        if self.duplicate and not queue.startswith("_inbox."):
            # the same message again under another id: publish-side dedupe cannot catch it
            copy = dataclasses.replace(message, msg_id=message.msg_id + "#dup")
            await super().send(queue, copy, origin)


class YieldingStore(MemoryStore):
    async def load(self, service: str, routine_id: str) -> list[bytes]:
        await asyncio.sleep(0)
        return await super().load(service, routine_id)

    async def append(self, service: str, routine_id: str, entry: bytes, expected: int) -> None:
        await asyncio.sleep(0)
        await super().append(service, routine_id, entry, expected)
        await asyncio.sleep(0)


def new_broker() -> MemoryBroker:
    # A start claimed by a killed worker waits for its lease (``ack_wait``) to lapse,
    # retried with backoff up to 1 s: each retry is a jump of the virtual clock, which
    # costs real milliseconds. 5 s instead of 30 keeps that to a handful per routine
    # (the test took 6-7 s of real time, and timed out on a loaded CI machine).
    clock = VirtualClock()
    broker = MemoryBroker(clock, ack_wait=5.0)
    clock.is_busy = broker.busy
    return broker


@asynccontextmanager
async def worker(
    broker: MemoryBroker, replay_mode: str, duplicate: bool = False, concurrency: int = 64
) -> Any:
    rt = dasync.Runtime(
        [LedgerImpl, FlowImpl],
        transport=YieldingTransport(broker, duplicate),
        store=YieldingStore(broker),
        broker=broker,
        force_replay=replay_mode == "forced",
        concurrency=concurrency,
    )
    rt.client._poll = 0.02  # handles from an earlier runtime read the journal; poll it often
    async with rt:
        yield rt


def journals(broker: MemoryBroker) -> Iterator[tuple[str, str, list[StepRecord]]]:
    for (service, rid), entries in list(broker.journals.items()):
        yield service, rid, [decode_step(e) for e in entries]


def ledger_calls(broker: MemoryBroker) -> set[str]:
    """The call ids of every committed call to Ledger (the callee's routine id)."""
    return {
        c.callee
        for _, rid, steps in journals(broker)
        for s in steps
        for c in s.commands
        if isinstance(c, Call) and c.service == "Ledger"
    }


def check_journals(broker: MemoryBroker) -> None:
    """Every input committed once per routine; every ledger call ran as one step."""
    for service, rid, steps in journals(broker):
        keys = [s.input.key for s in steps]
        assert len(keys) == len(set(keys)), (rid, keys)
        seqs = [c.seq for s in steps for c in s.commands]
        assert seqs == sorted(set(seqs)), (rid, seqs)
        if service == "Ledger":
            assert len(steps) == 1 and steps[0].commands[-1].ok, rid  # type: ignore[union-attr]


def inflight(rt: dasync.Runtime) -> int:
    return sum(len(c.inflight) for c in rt.transport._consumers)  # type: ignore[attr-defined]


def uncommitted_executions(broker: MemoryBroker) -> set[str]:
    """Ledger calls that began executing but whose step is not in the journal."""
    return {k for k in EXECUTIONS if not broker.journals.get(("Ledger", k))}


async def test_kill_at_any_point_then_resume(replay_mode):
    EXECUTIONS.clear()
    EFFECTS.clear()
    broker = new_broker()
    total = WORKFLOWS * BOOKS_PER_WORKFLOW
    rids = [f"wf-{n}" for n in range(WORKFLOWS)]
    cut_short: set[str] = set()  # ledger calls running at a kill
    committed_before_kill: set[str] = set()
    kills = 0

    async with worker(broker, replay_mode) as rt:
        for n, rid in enumerate(rids):
            await rt.client.start(Flow.run, n, routine_id=rid)
        await wait_until(lambda: len(EFFECTS) >= total // 5 and inflight(rt) > 0)
        cut_short |= uncommitted_executions(broker)
        committed_before_kill |= set(EXECUTIONS) - cut_short
        rt.kill()
        kills += 1

    # a second life, killed again further on
    async with worker(broker, replay_mode) as rt:
        await wait_until(lambda: len(EFFECTS) >= total // 2 and inflight(rt) > 0)
        cut_short |= uncommitted_executions(broker)
        committed_before_kill |= set(EXECUTIONS) - cut_short
        rt.kill()
        kills += 1

    # the last one, with fresh service instances, finishes everything
    async with worker(broker, replay_mode) as rt:
        results = await asyncio.gather(
            *(rt.client.handle(Flow.run, rid).result(timeout=30) for rid in rids)
        )
        assert results == [expected(n) for n in range(WORKFLOWS)]
        await wait_until(lambda: not broker.busy())

    assert kills == 2
    assert cut_short  # the kills did land in the middle of executions
    calls = ledger_calls(broker)
    assert len(calls) == total
    assert set(EFFECTS) == calls  # each call's effect happened, keyed by its call id
    assert EFFECTS[f"{rids[7]}/Flow.run.1"] == ("acct-7", 7)
    assert sum(EXECUTIONS.values()) >= total
    rerun = {k for k, v in EXECUTIONS.items() if v > 1}
    assert rerun  # executions cut short ran again after the restart...
    assert rerun <= cut_short  # ...but only those
    assert all(v <= kills + 1 for v in EXECUTIONS.values())
    assert all(EXECUTIONS[k] == 1 for k in committed_before_kill)  # never committed ones
    check_journals(broker)


async def test_two_workers_share_the_work_and_one_is_killed(replay_mode):
    """Competing consumers: two runtimes on one broker; one dies, the other finishes."""
    EXECUTIONS.clear()
    EFFECTS.clear()
    broker = new_broker()
    total = 30 * BOOKS_PER_WORKFLOW
    async with (
        worker(broker, replay_mode, concurrency=4) as survivor,
        worker(broker, replay_mode, concurrency=4) as doomed,
    ):
        handles = [
            await survivor.client.start(Flow.run, n, routine_id=f"two-{n}") for n in range(30)
        ]
        await wait_until(lambda: len(EFFECTS) >= total // 3 and inflight(doomed) > 0)
        cut_short = uncommitted_executions(broker)
        committed = set(EXECUTIONS) - cut_short
        doomed.kill()
        results = await asyncio.gather(*(h.result(timeout=30) for h in handles))
        assert results == [expected(n) for n in range(30)]
        await wait_until(lambda: not broker.busy())
        assert survivor.worker.stats.activations > 0
        assert doomed.worker.stats.activations > 0  # both did part of the work
    calls = ledger_calls(broker)
    assert len(calls) == total and set(EFFECTS) == calls
    assert {k for k, v in EXECUTIONS.items() if v > 1} <= cut_short
    assert all(EXECUTIONS[k] == 1 for k in committed)
    check_journals(broker)


async def test_duplicate_deliveries_run_nothing_twice(replay_mode):
    """Every message to a service is published twice under different ids, at once."""
    EXECUTIONS.clear()
    EFFECTS.clear()
    broker = new_broker()
    async with worker(broker, replay_mode, duplicate=True) as rt:
        handles = [await rt.client.start(Flow.run, n, routine_id=f"dup-{n}") for n in range(10)]
        results = await asyncio.gather(*(h.result(timeout=30) for h in handles))
        assert results == [expected(n) for n in range(10)]
        await wait_until(lambda: not broker.busy() and broker.next_scheduled() is None)
        assert rt.worker.stats.redeliveries_resent > 0  # the duplicates did arrive
    calls = ledger_calls(broker)
    assert len(calls) == 10 * BOOKS_PER_WORKFLOW
    assert set(EFFECTS) == calls
    assert EXECUTIONS == Counter({k: 1 for k in calls})  # no kill: exactly one execution each
    check_journals(broker)


async def test_redelivering_every_message_afterwards_changes_nothing(replay_mode):
    """Once all is done, every message ever sent arrives again under a new id."""
    EXECUTIONS.clear()
    EFFECTS.clear()
    broker = new_broker()
    sent: list[tuple[str, Message, Origin | None]] = []
    publish = broker.publish

    def recording_publish(queue: str, message: Message, origin: Origin | None = None) -> None:
        sent.append((queue, message, origin))
        publish(queue, message, origin)

    broker.publish = recording_publish  # type: ignore[method-assign]
    async with worker(broker, replay_mode) as rt:
        handles = [await rt.client.start(Flow.run, n, routine_id=f"re-{n}") for n in range(10)]
        results = await asyncio.gather(*(h.result(timeout=30) for h in handles))
        assert results == [expected(n) for n in range(10)]
        await wait_until(lambda: not broker.busy() and broker.next_scheduled() is None)
        before = {k: list(v) for k, v in broker.journals.items()}
        executions = Counter(EXECUTIONS)
        originals = [(q, m, o) for q, m, o in sent if not q.startswith("_inbox.")]
        assert len(originals) > 10 * BOOKS_PER_WORKFLOW
        for queue, message, origin in originals:
            publish(queue, dataclasses.replace(message, msg_id="again:" + message.msg_id), origin)
        await wait_until(lambda: not broker.busy() and broker.next_scheduled() is None)
        assert rt.worker.stats.rejected == []
    assert EXECUTIONS == executions
    assert broker.journals == before  # not one step more
    check_journals(broker)
