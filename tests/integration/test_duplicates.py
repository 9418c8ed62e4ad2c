"""Every message delivered twice, over NATS: results and counts do not change.

Two ways to duplicate, each applied to every message — calls (from the client
and between services), replies (to routines and to the client's inbox), timers:

* ``copies``: the transport publishes each message twice, the second time under
  another message id (``<id>#dup``), so the stream's dedupe cannot drop it;
* ``twice``: the consumer hands each delivery to the handler twice, at once
  (two deliveries of the same message, the second as a redelivery racing the first
  would be: ``Redelivered``).

The callee counts in SQLite (``_services.py``). With no kill, every call must
run exactly once — executions equal calls, not one more — every result must be
right and arrive as a reply, and every journal must hold each input once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from typing import Any

import pytest

import dasync
from dasync._engine import decode_step
from dasync.testing._nats_server import NatsServer
from dasync.transports import Delivery, Handler, Message, Origin, Subscription, Transport
from dasync.transports.nats import connect_nats

from ..chaos._duplicates import Redelivered
from ._cluster import RecordingClient, check_exactly_once, options, wait_for
from ._services import (
    CALLS_PER_FLOW,
    Flow,
    FlowService,
    LedgerService,
    Tally,
    call_ids,
    expected,
    flow_id,
)

FLOWS = 100
PAUSE = 0.05


class Duplicating:
    """A transport that duplicates every message, by publishing copies or by double delivery."""

    def __init__(self, inner: Transport, how: str) -> None:
        self.inner = inner
        self.how = how
        self.sent: Counter[str] = Counter()
        self.doubled: Counter[str] = Counter()

    async def send(self, queue: str, message: Message, origin: Origin | None = None) -> None:
        await self.inner.send(queue, message, origin)
        if self.how == "copies":
            copy = dataclasses.replace(message, msg_id=message.msg_id + "#dup")
            await self.inner.send(queue, copy, origin)
            self.sent[message.headers.get("dasync-kind", "?")] += 1

    async def send_at(self, queue: str, lane: str, message: Message, origin: Origin) -> None:
        await self.inner.send_at(queue, lane, message, origin)
        if self.how == "copies":
            copy = dataclasses.replace(message, msg_id=message.msg_id + "#dup")
            await self.inner.send_at(queue, lane, copy, origin)
            self.sent[message.headers.get("dasync-kind", "?")] += 1

    async def consume(self, queue: str, handler: Handler, **kw: Any) -> Subscription:
        if self.how == "twice":
            inner_handler = handler

            async def handler(delivery: Delivery) -> None:
                self.doubled[delivery.message.headers.get("dasync-kind", "?")] += 1
                again: Any = Redelivered(delivery)
                await asyncio.gather(inner_handler(delivery), inner_handler(again))

        return await self.inner.consume(queue, handler, **kw)

    def __getattr__(self, name: str) -> Any:  # declare, close, events...
        return getattr(self.inner, name)


TWO_WORKERS_BUG = (
    "dasync bug (worker, not transport): when one message is delivered to two workers at "
    "the same time, both run the routine's code before either commits; the journal's "
    "optimistic append keeps one commit (the loser gets JournalConflict), but the callee's "
    "code, and so its side effect, ran twice although no worker was killed (DESIGN section 4: "
    "executions may exceed calls only because of a kill). JetStream does deliver one message "
    "twice at once after a server crash (see test_server_restart.py[kill]) or when a worker "
    "cannot extend ack_wait in time; a first execution needs a claim (a lease) that other "
    "workers respect before they run the code."
)


@pytest.mark.parametrize(
    ("how", "workers"),
    [
        ("copies", 1),
        ("twice", 1),
        ("twice", 2),
        ("copies", 2),
    ],
)
async def test_every_message_twice_changes_nothing(tmp_path, how, workers):
    """With two workers, ``copies`` hands the two copies of a message to both at once;
    ``twice`` hands both deliveries of a message to the worker that received it."""
    started = time.monotonic()
    with NatsServer(store_dir=tmp_path / "nats") as server:
        opts = options(server.url, f"dup-{how}")
        container = {"tally_path": str(tmp_path / "tally.sqlite")}
        runtimes, duplicating = [], []
        for _ in range(workers):
            transport, store = await connect_nats(opts)
            duplicating.append(Duplicating(transport, how))
            runtimes.append(
                dasync.Runtime(
                    [LedgerService, FlowService],
                    transport=duplicating[-1],
                    store=store,
                    container=container,
                )
            )
            await runtimes[-1].start()
        try:
            client_transport, client_store = await connect_nats(opts)
            client = RecordingClient(Duplicating(client_transport, how), client_store)
            await client.client.open()
            try:
                handles = [
                    await client.client.start(Flow.run, n, PAUSE, routine_id=flow_id(n))
                    for n in range(FLOWS)
                ]
                results = await asyncio.wait_for(
                    asyncio.gather(*(h.result() for h in handles)), timeout=60
                )
                assert results == [expected(n) for n in range(FLOWS)]
                # every routine's reply reached the inbox, and its duplicate too
                both = Counter({flow_id(n): 2 for n in range(FLOWS)})
                await wait_for(lambda: client.replies == both, 10, f"{both} != {client.replies}")
            finally:
                await client.close()

            calls = call_ids(FLOWS, pause=True)
            store = runtimes[0].store
            journals = {
                (service, rid): [decode_step(e) for e in await store.load(service, rid)]
                for service, rids in (
                    ("Flow", [flow_id(n) for n in range(FLOWS)]),
                    ("Ledger", calls),
                )
                for rid in rids
            }
        finally:
            for rt in runtimes:
                await rt.close()

        tally = Tally(tmp_path / "tally.sqlite")
        report = check_exactly_once(tally, calls, cut_short=lambda e: False, first_seq=2)
        tally.close()
        # each journal holds every input once: start, timer, three replies; a ledger call is
        # one step
        for (service, rid), steps in journals.items():
            keys = [s.input.key for s in steps]
            assert len(keys) == len(set(keys)), (rid, keys)
            seqs = [c.seq for s in steps for c in s.commands]
            assert seqs == sorted(set(seqs)), (rid, seqs)
            if service == "Ledger":
                assert len(steps) == 1, rid
            else:
                assert sorted(keys) == sorted(
                    ["start", "timer:1", *(f"reply:{i}" for i in range(2, 2 + CALLS_PER_FLOW))]
                ), rid
        report.assert_explained()  # no kill: no call may run twice
        assert report.executions == report.calls == FLOWS * CALLS_PER_FLOW  # not one more
        assert report.effect_writes == report.calls

        kinds: Counter[str] = Counter()
        for d in duplicating:
            kinds += d.sent if how == "copies" else d.doubled
        resent = sum(rt.worker.stats.redeliveries_resent for rt in runtimes)
        # a second copy of a start that arrives while the first still runs its first step
        # meets the first's claim and is handed back (redelivered, it is resent then)
        held_back = sum(rt.worker.stats.claimed_elsewhere for rt in runtimes)
        # the duplicates were really there: of calls, replies and timers, and were noticed
        assert kinds["start"] >= FLOWS * CALLS_PER_FLOW
        assert kinds["reply"] >= FLOWS * CALLS_PER_FLOW
        assert kinds["timer"] >= FLOWS
        # every second copy was recognised as a duplicate: of each flow's start, timer and
        # replies, and of each ledger call's start
        assert resent + held_back >= FLOWS * (2 + CALLS_PER_FLOW) + FLOWS * CALLS_PER_FLOW
        assert all(rt.worker.stats.rejected == [] for rt in runtimes)

        elapsed = time.monotonic() - started
        print(
            f"\nduplicates ({how}, {workers} worker(s)): {FLOWS} flows, {report.calls} calls, "
            f"duplicated {dict(kinds)}, {resent} duplicates recognised, "
            f"{report.executions} executions, {elapsed:.1f}s"
        )
