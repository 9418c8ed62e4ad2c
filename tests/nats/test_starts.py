"""The starts of calls between services: one copy per routine, kept by the server.

A call from service P to service S is stored on ``<root>.S.start.P.<routine>`` in S's
starts stream, which keeps one message per subject and refuses any other until the
retention pass removes it with the routine's journal. Its first delivery therefore runs
without a claim and without reading the journal; a redelivery claims and reads; a copy
sent once the kept one was refused (after the dedupe window) only has the journal's
outcome sent again. Client starts keep their claim.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Protocol

import dasync
from dasync.transports import Message, Origin
from dasync.transports._contract import COPY, REDELIVERED, SOLE
from dasync.transports.nats import naming

from ._helpers import Recorder, wait_until

ACK_WAIT = 2.0
KEY = "client-1/Svc.run.1"


def _namespace() -> str:
    return f"s{uuid.uuid4().hex[:8]}"


async def _subjects(transport: Any, stream: str, subjects: str) -> dict[str, int]:
    info = await transport.conn.api(f"STREAM.INFO.{stream}", {"subjects_filter": subjects})
    return dict((info.get("state") or {}).get("subjects") or {})


async def _kept(transport: Any, ns: str) -> dict[str, int]:
    """The starts stored for service ``Svc``, by subject."""
    every = naming.start_subjects("Svc", namespace=ns)
    return await _subjects(transport, naming.starts_stream("Svc", ns), every)


def _start(msg_id: str, key: str = KEY) -> Message:
    headers = {"dasync-test": "1"}
    return Message(msg_id, headers, b"args", once=key)


async def test_a_calls_start_is_stored_once_and_a_later_copy_comes_as_a_copy(connect):
    ns = _namespace()
    worker, _ = await connect(namespace=ns)
    caller, _ = await connect(namespace=ns)
    got = Recorder()
    await worker.consume("Svc", got)
    sender = Origin.service("Caller")
    await caller.send("Svc", _start("call-1"), sender)
    first = await got.next()
    assert first.delivery.origin == sender
    assert first.delivery.copy_of(KEY) == SOLE  # type: ignore[attr-defined]
    assert first.delivery.copy_of("client-1/Svc.run.2") == ""  # type: ignore[attr-defined]
    kept = naming.start_subject("Svc", "Caller", KEY, ns)
    assert await _kept(worker, ns) == {kept: 1}
    # acknowledged, it stays; a copy under another id (a resend after the dedupe window)
    # is refused by the server and goes on the lane, marked as a copy
    await caller.send("Svc", _start("call-1-again"), sender)
    copy = await got.next()
    assert copy.message.msg_id == "call-1-again"
    assert copy.delivery.copy_of(KEY) == COPY  # type: ignore[attr-defined]
    assert copy.delivery.origin == sender
    assert "Dasync-Kept" not in copy.message.headers  # the transport's own header
    assert await _kept(worker, ns) == {kept: 1}
    # the same id again is the server's duplicate: nothing more arrives
    await caller.send("Svc", _start("call-1"), sender)
    await got.nothing_within(0.5)


async def test_only_calls_from_services_use_the_starts_stream(connect):
    ns = _namespace()
    worker, _ = await connect(namespace=ns)
    caller, _ = await connect(namespace=ns)
    got = Recorder()
    await worker.consume("Svc", got)
    await caller.send("Svc", _start("from-client"), Origin.client("someone"))
    await caller.send("Svc", Message("no-key", {"dasync-test": "1"}), Origin.service("Caller"))
    await caller.send(
        "Svc", Message("later", {}, once=KEY, deliver_at=time.time() + 0.3), Origin.service("P")
    )
    for _ in range(3):
        received = await got.next()
        assert received.delivery.copy_of(KEY) == ""  # type: ignore[attr-defined]
    assert await _kept(worker, ns) == {}


async def test_a_redelivered_start_is_marked_and_held_back_after_an_outage(connect):
    """Its first delivery ran without a claim: after an outage (here: what a reconnection
    records) its worker may live and still be running it, so the redelivery waits
    ``ack_wait`` from when the server was back before it is handled."""
    ns = _namespace()
    worker, _ = await connect(namespace=ns, ack_wait=ACK_WAIT)
    caller, _ = await connect(namespace=ns)

    async def settle(delivery: Any) -> None:
        if delivery.attempt == 1:
            worker.conn.unavailable_at = time.time()  # as a reconnection right now would
            await delivery.nak()
        else:
            await delivery.ack()

    got = Recorder(settle)
    await worker.consume("Svc", got)
    await caller.send("Svc", _start("call-1"), Origin.service("Caller"))
    first = await got.next()
    naked = time.time()
    again = await got.next(within=ACK_WAIT * 4)
    assert again.attempt > 1
    assert again.delivery.copy_of(KEY) == REDELIVERED  # type: ignore[attr-defined]
    assert again.at - naked >= ACK_WAIT * 0.9
    assert first.delivery.copy_of(KEY) == SOLE  # type: ignore[attr-defined]


# --- through the runtime ---------------------------------------------------------------------


class Leaf(Protocol):
    async def work(self, n: int) -> int: ...


class Root(Protocol):
    async def run(self, n: int) -> int: ...


class LeafImpl(Leaf):
    runs = 0
    """Runs of ``work`` in this process, whichever runtime ran them."""

    async def work(self, n: int) -> int:
        type(self).runs += 1
        return n + 1


class RootImpl(Root):
    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def run(self, n: int) -> int:
        return await self.leaf.work(n) + await self.leaf.work(n + 10)


async def _claims(transport: Any, service: str, ns: str) -> int:
    journal = naming.journal_stream(service, ns)
    found = await _subjects(transport, journal, naming.journal_subjects(service, ns)[0])
    mark = f".{naming.CLAIM_MARK}"
    return sum(1 for subject in found if mark in subject)


async def test_calls_between_services_run_without_claims_and_a_clients_start_claims(connect):
    ns = _namespace()
    transport, store = await connect(namespace=ns)
    LeafImpl.runs = 0
    async with dasync.Runtime([LeafImpl, RootImpl], transport=transport, store=store) as rt:
        root = rt.client.proxy(Root)
        assert await asyncio.wait_for(root.run(1), 20) == 2 + 12
        assert await asyncio.wait_for(root.run(2), 20) == 3 + 13
        assert LeafImpl.runs == 4
        assert await _claims(transport, "Leaf", ns) == 0  # four calls, no claim
        assert await _claims(transport, "Root", ns) == 2  # a claim per client start
        starts = naming.starts_stream("Leaf", ns)
        kept = await _subjects(transport, starts, naming.start_subjects("Leaf", "Root", ns))
        assert len(kept) == 4 and set(kept.values()) == {1}


async def test_a_start_whose_worker_died_before_committing_is_claimed_and_run_again(connect):
    ns = _namespace()
    options = {"namespace": ns, "ack_wait": ACK_WAIT}
    first_t, first_s = await connect(**options)
    second_t, second_s = await connect(**options)
    root_t, root_s = await connect(**options)
    never = asyncio.Event()

    async def stuck(*args: Any) -> None:
        await never.wait()  # the first step ran its code; its worker dies before committing

    first_s.append = stuck  # type: ignore[method-assign]
    LeafImpl.runs = 0
    first = dasync.Runtime([LeafImpl], transport=first_t, store=first_s)
    await first.start()
    try:
        async with dasync.Runtime([RootImpl], transport=root_t, store=root_s) as roots:
            call = asyncio.ensure_future(roots.client.proxy(Root).run(5))
            await wait_until(lambda: LeafImpl.runs == 1)
            async with dasync.Runtime([LeafImpl], transport=second_t, store=second_s):
                first.kill()  # it never claimed the start, nor committed it
                assert await asyncio.wait_for(call, 30) == 6 + 16
                assert LeafImpl.runs == 3  # the dead run, the redelivered one, the next call
                assert await _claims(second_t, "Leaf", ns) == 1  # only the redelivery's
    finally:
        first.kill()


async def test_a_copy_of_a_kept_start_resends_the_outcome_and_never_runs_the_routine(connect):
    """A copy comes once the kept start was refused as stored already: if the routine
    committed, its outcome is sent again (a caller that lost it gets it); if not, the kept
    start runs it, and the copy runs nothing."""
    ns = _namespace()
    transport, store = await connect(namespace=ns)
    LeafImpl.runs = 0
    async with dasync.Runtime([LeafImpl, RootImpl], transport=transport, store=store) as rt:
        assert await asyncio.wait_for(rt.client.proxy(Root).run(1), 20) == 2 + 12
        resent = rt.worker.stats.redeliveries_resent
        kept = await _subjects(
            transport,
            naming.starts_stream("Leaf", ns),
            naming.start_subjects("Leaf", "Root", ns),
        )
        assert len(kept) == 2
        # a copy of the first call's start under another message id, as a resend after
        # the dedupe window sends it: the server refuses it, the lane carries it as a copy
        raw = await transport.conn.request(
            f"$JS.API.DIRECT.GET.{naming.starts_stream('Leaf', ns)}", b'{"seq": 1}'
        )
        headers = {k: v for k, v in raw.headers.items() if not k.startswith("Nats-")}
        routine = headers["dasync-routine"]
        copy = Message("call-copy", headers, raw.data, once=routine)
        await transport.send("Leaf", copy, Origin.service("Root"))
        await wait_until(lambda: rt.worker.stats.redeliveries_resent == resent + 1)
        assert LeafImpl.runs == 2
        # a copy of a start that never committed (no journal): nothing runs, nothing is sent
        lane = naming.call_subject("Leaf", "Root", ns)
        orphan = {**headers, "dasync-routine": routine + "x", "Dasync-Kept": "1"}
        await transport.conn.publish(lane, raw.data, {**orphan, "Nats-Msg-Id": "orphan"})
        await asyncio.sleep(0.5)
        assert LeafImpl.runs == 2
        assert rt.worker.stats.redeliveries_resent == resent + 1
        assert await store.load("Leaf", routine + "x") == []


async def test_retention_removes_a_finished_routines_start_and_settled_orphans(connect):
    ns = _namespace()
    transport, store = await connect(namespace=ns)
    starts = naming.starts_stream("Leaf", ns)
    every = naming.start_subjects("Leaf", namespace=ns)
    async with dasync.Runtime([LeafImpl, RootImpl], transport=transport, store=store) as rt:
        assert await asyncio.wait_for(rt.client.proxy(Root).run(1), 20) == 2 + 12
    mine, mine_store = await connect(namespace=ns)
    # a start set aside before it had a journal (here: acknowledged by hand), and one
    # still waiting for a worker
    settled = naming.start_subject("Leaf", "Elsewhere", "orphan", ns)
    waiting = naming.start_subject("Leaf", "Elsewhere", "waiting", ns)
    for subject in (settled, waiting):
        await mine.conn.publish(subject, b"", {"Nats-Msg-Id": subject})

    async def settle(delivery: Any) -> None:
        if delivery.message.msg_id == settled:
            await delivery.ack()
        else:
            await delivery.nak(60)

    got = Recorder(settle)
    consumer = await mine.consume("Leaf", got)
    seen = {(await got.next()).message.msg_id for _ in range(2)}
    await wait_until(lambda: not consumer.inflight)
    assert seen == {settled, waiting}
    await consumer.stop()
    assert len(await _subjects(mine, starts, every)) == 4
    await asyncio.sleep(1.1)
    report = await mine_store.purge_finished("Leaf", 1.0, lambda entry: True)
    assert report.purged == 2
    assert await _subjects(mine, starts, every) == {waiting: 1}
