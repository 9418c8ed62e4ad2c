"""Conformance checks for ``Transport`` and ``JournalStore`` implementations.

Written once, run against every backend (memory, NATS, yours)::

    @asynccontextmanager
    async def my_backend():
        server = await start_something()
        yield Backend(connect=lambda: MyTransport.connect(server.url),
                      store=lambda: MyStore.connect(server.url),
                      now=time.time)
        await server.stop()

    await dasync.testing.check_transport(my_backend)

Each check opens what it needs through the factory and closes it again; queue
and routine names are unique per check, so one server may serve them all.
Absence ("delivered once", "never again") is checked with a sentinel sent
after the message in question to a consumer taking one message at a time,
which assumes that a single such consumer receives a queue in order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from .._errors import JournalConflict, UnknownService
from ..transports import (
    CrashCounter,
    Delivery,
    FailureNotes,
    JournalStore,
    Message,
    Origin,
    PurgeReport,
    Retention,
    RoutineEntry,
    RoutineIndex,
    Secrets,
    Transport,
    inbox_queue,
)

__all__ = ["CHECKS", "Backend", "BackendFactory", "check_transport"]

TIMEOUT = 10.0
"""Real seconds any expected delivery may take before a check fails."""
DELAY = 0.3
"""Seconds of the delays the checks ask for (delayed delivery, nak with delay)."""


@dataclass(frozen=True)
class Backend:
    """How the checks reach one backend."""

    connect: Callable[[], Awaitable[Transport]]
    """A new, independent client of the backend (as another worker process would open)."""
    store: Callable[[], Awaitable[JournalStore]]
    """A new client of the backend's journal store."""
    now: Callable[[], float]
    """The clock the backend compares ``Message.deliver_at`` with."""
    ack_wait: float | None = None
    """The backend's ack wait in real seconds, when short enough to check that a delivery
    never settled comes back (``None``: not checked, e.g. in virtual time)."""
    pass_time: Callable[[float], Awaitable[None]] = asyncio.sleep
    """Let this many seconds pass on the backend's clock (a virtual clock: advance it)."""


BackendFactory = Callable[[], AbstractAsyncContextManager[Backend]]


@dataclass(eq=False)
class _Inbox:
    """Records deliveries; ``settle`` decides what to do with each (default: ack)."""

    now: Callable[[], float]
    settle: Callable[[Delivery], Awaitable[None]] | None = None
    received: list[tuple[Delivery, float]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, delivery: Delivery) -> None:
        self.received.append((delivery, self.now()))
        self.changed.set()
        if self.settle is None:
            await delivery.ack()
        else:
            await self.settle(delivery)

    def ids(self) -> list[str]:
        return [d.message.msg_id for d, _ in self.received]

    async def wait_for(self, what: str, condition: Callable[[], bool]) -> None:
        async def wait() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(wait(), TIMEOUT)
        except TimeoutError:
            raise AssertionError(
                f"timed out after {TIMEOUT}s waiting for {what}; received {self.ids()}"
            ) from None


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def _msg(msg_id: str, body: bytes = b"", **headers: str) -> Message:
    return Message(msg_id, {"check": "1", **headers}, body)


@asynccontextmanager
async def _opened(factory: BackendFactory) -> AsyncIterator[tuple[Backend, AsyncExitStack]]:
    async with factory() as backend, AsyncExitStack() as stack:
        yield backend, stack


async def _transport(backend: Backend, stack: AsyncExitStack) -> Transport:
    transport = await backend.connect()
    stack.push_async_callback(transport.close)
    return transport


async def _consume(
    stack: AsyncExitStack, transport: Transport, queue: str, inbox: _Inbox, concurrency: int = 1
) -> None:
    sub = await transport.consume(queue, inbox, concurrency=concurrency)
    stack.push_async_callback(sub.stop)


# --- the checks ---------------------------------------------------------------------------


async def check_publish_consume_ack(factory: BackendFactory) -> None:
    """Messages keep id, headers and body; an acked message is not delivered again."""
    async with _opened(factory) as (backend, stack):
        t = await _transport(backend, stack)
        queue = _name("q")
        await t.declare(queue)
        await t.declare(queue)  # idempotent
        sent = [_msg(f"m{i}", f'{{"n": {i}}}'.encode(), kind=f"k{i}") for i in range(3)]
        for m in sent[:2]:
            await t.send(queue, m)  # sent before anyone consumes: kept
        inbox = _Inbox(backend.now)
        await _consume(stack, t, queue, inbox)
        await t.send(queue, sent[2])
        await inbox.wait_for("three messages", lambda: len(inbox.received) >= 3)
        got = {d.message.msg_id: d for d, _ in inbox.received}
        for m in sent:
            d = got[m.msg_id]
            assert d.message.body == m.body, (d.message.body, m.body)
            assert dict(d.message.headers) == dict(m.headers), d.message.headers
            assert d.attempt == 1, d.attempt
        await t.send(queue, _msg("sentinel"))
        await inbox.wait_for("the sentinel", lambda: "sentinel" in inbox.ids())
        assert sorted(inbox.ids()) == ["m0", "m1", "m2", "sentinel"], inbox.ids()


async def check_nak_redelivers(factory: BackendFactory) -> None:
    """nak() redelivers with attempt + 1; nak(delay) not before the delay has passed."""
    async with _opened(factory) as (backend, stack):
        t = await _transport(backend, stack)
        queue = _name("q")
        await t.declare(queue)
        naked_at: dict[str, float] = {}

        async def settle(d: Delivery) -> None:
            if d.message.msg_id == "now" and d.attempt < 3:
                await d.nak()
            elif d.message.msg_id == "later" and d.attempt == 1:
                naked_at["later"] = backend.now()
                await d.nak(DELAY)
            else:
                await d.ack()

        inbox = _Inbox(backend.now, settle)
        await _consume(stack, t, queue, inbox)
        await t.send(queue, _msg("now"))
        await t.send(queue, _msg("later"))
        await inbox.wait_for("three attempts", lambda: inbox.ids().count("now") == 3)
        attempts = [d.attempt for d, _ in inbox.received if d.message.msg_id == "now"]
        assert attempts == [1, 2, 3], attempts
        await inbox.wait_for("the delayed redelivery", lambda: inbox.ids().count("later") == 2)
        (_, first), (second, at) = [x for x in inbox.received if x[0].message.msg_id == "later"]
        assert second.attempt == 2, second.attempt
        assert at >= naked_at["later"] + DELAY, (naked_at["later"], at)


async def check_dedupe_by_msg_id(factory: BackendFactory) -> None:
    """A message sent twice under the same id is delivered once."""
    async with _opened(factory) as (backend, stack):
        t = await _transport(backend, stack)
        queue = _name("q")
        await t.declare(queue)
        await t.send(queue, _msg("same", b"1"))
        await t.send(queue, _msg("same", b"2"))
        inbox = _Inbox(backend.now)
        await _consume(stack, t, queue, inbox)
        await t.send(queue, _msg("same", b"3"))  # also after it was delivered and acked
        await t.send(queue, _msg("sentinel"))
        await inbox.wait_for("the sentinel", lambda: "sentinel" in inbox.ids())
        assert inbox.ids() == ["same", "sentinel"], inbox.ids()
        assert inbox.received[0][0].message.body == b"1"


async def check_delayed_delivery(factory: BackendFactory) -> None:
    """A message with ``deliver_at`` is not delivered before that time; others pass it."""
    async with _opened(factory) as (backend, stack):
        t = await _transport(backend, stack)
        queue = _name("q")
        await t.declare(queue)
        inbox = _Inbox(backend.now)
        await _consume(stack, t, queue, inbox)
        at = backend.now() + DELAY
        await t.send(queue, Message("delayed", {"check": "1"}, b"", deliver_at=at))
        await t.send(queue, Message("past", {"check": "1"}, b"", deliver_at=backend.now() - 60))
        await t.send(queue, _msg("now"))
        await inbox.wait_for("the delayed message", lambda: "delayed" in inbox.ids())
        assert inbox.ids()[-1] == "delayed" and sorted(inbox.ids()) == ["delayed", "now", "past"]
        received_at = inbox.received[-1][1]
        assert received_at >= at, (at, received_at)


async def check_unknown_queue(factory: BackendFactory) -> None:
    """Sending to a queue nobody declared raises ``UnknownService``."""
    async with _opened(factory) as (backend, stack):
        t = await _transport(backend, stack)
        try:
            await t.send(_name("nobody"), _msg("lost"))
        except UnknownService:
            pass
        else:
            raise AssertionError("send() to an undeclared queue did not raise UnknownService")


async def check_term(factory: BackendFactory) -> None:
    """A terminated message is never delivered again."""
    async with _opened(factory) as (backend, stack):
        t = await _transport(backend, stack)
        queue = _name("q")
        await t.declare(queue)

        async def settle(d: Delivery) -> None:
            if d.message.msg_id == "poison":
                await d.term("cannot be processed")
            else:
                await d.ack()

        inbox = _Inbox(backend.now, settle)
        await _consume(stack, t, queue, inbox)
        await t.send(queue, _msg("poison"))
        await t.send(queue, _msg("sentinel"))
        await inbox.wait_for("the sentinel", lambda: "sentinel" in inbox.ids())
        await t.send(queue, _msg("sentinel-2"))
        await inbox.wait_for("the second sentinel", lambda: "sentinel-2" in inbox.ids())
        assert inbox.ids() == ["poison", "sentinel", "sentinel-2"], inbox.ids()


async def check_competing_consumers(factory: BackendFactory) -> None:
    """Two clients consuming one queue share its messages: each is delivered once."""
    async with _opened(factory) as (backend, stack):
        first, second = await _transport(backend, stack), await _transport(backend, stack)
        queue = _name("q")
        await first.declare(queue)
        both = asyncio.Event()
        inboxes: list[_Inbox] = []
        starved: list[str] = []

        async def settle(d: Delivery) -> None:
            # hold the first message until the other consumer got one: that proves that
            # an unacknowledged message does not block the queue for other consumers
            if all(inbox.received for inbox in inboxes):
                both.set()
            if not both.is_set():
                try:
                    await asyncio.wait_for(both.wait(), TIMEOUT)
                except TimeoutError:
                    starved.append(d.message.msg_id)
                    both.set()  # stop holding: let the rest through and report
            await d.ack()

        changed = asyncio.Event()  # shared, so that waiting on one sees both inboxes
        inboxes.extend([_Inbox(backend.now, settle, changed=changed) for _ in range(2)])
        await _consume(stack, first, queue, inboxes[0])
        await _consume(stack, second, queue, inboxes[1])
        count = 40
        for i in range(count):
            await first.send(queue, _msg(f"m{i}"))
        collected = inboxes[0]
        await collected.wait_for(
            f"{count} messages over both consumers",
            lambda: sum(len(inbox.received) for inbox in inboxes) >= count,
        )
        ids = inboxes[0].ids() + inboxes[1].ids()
        assert sorted(ids) == sorted(f"m{i}" for i in range(count)), ids
        assert not starved, (
            f"while one consumer held {starved[0]!r} unacknowledged for {TIMEOUT}s, "
            f"the other consumer of the queue received nothing"
        )
        assert inboxes[0].received and inboxes[1].received, "one consumer got every message"


async def check_journal_order(factory: BackendFactory) -> None:
    """Entries load in append order; journals are separate per service and routine."""
    async with _opened(factory) as (backend, stack):
        store = await backend.store()
        stack.push_async_callback(store.close)
        service, rid = _name("svc"), _name("r")
        assert await store.load(service, rid) == []
        entries = [f'{{"step": {i}}}'.encode() for i in range(5)]
        for i, entry in enumerate(entries):
            await store.append(service, rid, entry, expected=i)
        assert await store.load(service, rid) == entries
        await store.append(service, rid + "x", b'"other routine"', expected=0)
        await store.append(service + "x", rid, b'"other service"', expected=0)
        assert await store.load(service, rid) == entries
        assert await store.load(service, rid + "x") == [b'"other routine"']
        again = await backend.store()  # another client sees the same journal
        stack.push_async_callback(again.close)
        assert await again.load(service, rid) == entries


async def check_journal_conflict(factory: BackendFactory) -> None:
    """An append with the wrong ``expected`` length raises JournalConflict and adds nothing."""
    async with _opened(factory) as (backend, stack):
        store = await backend.store()
        stack.push_async_callback(store.close)
        service, rid = _name("svc"), _name("r")
        await store.append(service, rid, b"0", expected=0)
        await store.append(service, rid, b"1", expected=1)
        for wrong in (0, 1, 3):
            try:
                await store.append(service, rid, b"bad", expected=wrong)
            except JournalConflict:
                pass
            else:
                raise AssertionError(f"append(expected={wrong}) on 2 entries did not conflict")
        assert await store.load(service, rid) == [b"0", b"1"]


async def check_journal_create_once(factory: BackendFactory) -> None:
    """Of many concurrent ``expected=0`` appends (from several clients) exactly one wins."""
    async with _opened(factory) as (backend, stack):
        stores = [await backend.store() for _ in range(3)]
        for store in stores:
            stack.push_async_callback(store.close)
        service, rid = _name("svc"), _name("r")

        async def create(i: int) -> bool:
            try:
                await stores[i % len(stores)].append(service, rid, f'"{i}"'.encode(), expected=0)
            except JournalConflict:
                return False
            return True

        won = await asyncio.gather(*(create(i) for i in range(9)))
        assert sum(won) == 1, won
        winner = won.index(True)
        assert await stores[0].load(service, rid) == [f'"{winner}"'.encode()]


async def check_origins(factory: BackendFactory) -> None:
    """Each delivery names the sender it was sent as (``send(..., origin)``), on a service's
    queue and on a client inbox; ``None`` is the queue's own service."""
    async with _opened(factory) as (backend, stack):
        t = await _transport(backend, stack)
        queue = _name("Q")
        await t.declare(queue)
        inbox = _Inbox(backend.now)
        await _consume(stack, t, queue, inbox)
        senders = {
            "own": None,
            "svc": Origin.service("Caller-1"),
            "client": Origin.client("web_2"),
            "operator": Origin(Origin.OPERATOR),
        }
        for msg_id, origin in senders.items():
            await t.send(queue, _msg(msg_id), origin)
        await inbox.wait_for("four senders", lambda: len(inbox.received) >= 4)
        got = {d.message.msg_id: d.origin for d, _ in inbox.received}
        expected = {k: v or Origin.service(queue) for k, v in senders.items()}
        assert got == expected, got
        identity = getattr(t, "identity", None)
        assert isinstance(identity, str) and identity, f"transport.identity is {identity!r}"
        client_inbox = inbox_queue(identity, uuid.uuid4().hex)
        await t.declare(client_inbox)
        replies = _Inbox(backend.now)
        await _consume(stack, t, client_inbox, replies)
        await t.send(client_inbox, _msg(_name("reply")), Origin.service(queue))
        await replies.wait_for("the reply", lambda: bool(replies.received))
        assert replies.received[0][0].origin == Origin.service(queue), replies.received[0][0]


async def check_store_capabilities(factory: BackendFactory) -> None:
    """``Secrets``: one key per service, the same for every client, different per service.
    ``CrashCounter``: counts per key, from any client, until forgotten. (Skipped for a
    store without the capability.)"""
    async with _opened(factory) as (backend, stack):
        stores = [await backend.store() for _ in range(2)]
        for store in stores:
            stack.push_async_callback(store.close)
        first, second = stores
        service = _name("svc")
        if isinstance(first, Secrets) and isinstance(second, Secrets):
            keys = await asyncio.gather(first.secret(service), second.secret(service))
            assert keys[0] == keys[1] and len(keys[0]) >= 16, keys
            assert await first.secret(service + "x") != keys[0]
        if isinstance(first, CrashCounter) and isinstance(second, CrashCounter):
            key = "r1#start"
            counts = [await (first, second)[i % 2].record_crash(service, key) for i in range(3)]
            assert counts == [0, 1, 2], counts
            assert await first.record_crash(service, "r1#reply:1") == 0  # per key
            await second.forget_crash(service, key)
            assert await first.record_crash(service, key) == 0


async def check_failure_notes(factory: BackendFactory) -> None:
    """``FailureNotes``: a note written by one client is read by another, per routine, the
    last one wins, and forgetting drops it. (Skipped for a store without the capability.)"""
    async with _opened(factory) as (backend, stack):
        stores = [await backend.store() for _ in range(2)]
        for store in stores:
            stack.push_async_callback(store.close)
        writer, reader = stores
        if not (isinstance(writer, FailureNotes) and isinstance(reader, FailureNotes)):
            return
        service = _name("svc")
        await writer.append(service, "r1", b"start", 0)  # notes live beside journals
        assert await reader.noted_failure(service, "r1") is None
        await writer.note_failure(service, "r1", 1, b"first")
        await writer.note_failure(service, "r1", 1, b"second")
        await writer.note_failure(service, "r2", 0, b"other")
        assert await reader.noted_failure(service, "r1") == (1, b"second")
        assert await reader.noted_failure(service, "r2") == (0, b"other")
        assert await reader.load(service, "r1") == [b"start"], "a note is no journal entry"
        await reader.forget_failure(service, "r1")
        assert await writer.noted_failure(service, "r1") is None
        assert await writer.noted_failure(service, "r2") == (0, b"other")
        await reader.forget_failure(service, "never-noted")  # nothing to forget: no error


async def check_retention(factory: BackendFactory) -> None:
    """``Retention``: a pass removes the journals (and notes) of routines that finished
    before the cut-off, keeps running ones however old and those finished since, and a
    removed routine can be created again. (Skipped for a store without the capability.)"""
    async with _opened(factory) as (backend, stack):
        store = await backend.store()
        stack.push_async_callback(store.close)
        if not isinstance(store, Retention):
            return
        service = _name("svc")

        def finished(entry: bytes) -> bool:
            return entry.startswith(b"end")

        for routine, entries in (("old-done", [b"start", b"end"]), ("old-running", [b"start"])):
            for i, entry in enumerate(entries):
                await store.append(service, routine, entry, i)
        notes = isinstance(store, FailureNotes)
        if isinstance(store, FailureNotes):
            await store.note_failure(service, "old-done", 2, b"told")
            await store.note_failure(service, "set-aside", 0, b"told")  # no journal at all
            await store.note_failure(service, "old-running", 1, b"told")
        await backend.pass_time(DELAY * 2)
        await store.append(service, "old-running", b"step", 1)  # running, lately active
        await store.append(service, "recent-done", b"start", 0)
        await store.append(service, "recent-done", b"end", 1)
        expected = PurgeReport(purged=2 if notes else 1, running=1, recent=0)

        dry = await store.purge_finished(service, DELAY, finished, dry_run=True)
        assert dry == expected, dry
        assert await store.load(service, "old-done") == [b"start", b"end"], "dry run removed"
        report = await store.purge_finished(service, DELAY, finished)
        assert report == expected, report
        assert await store.load(service, "old-done") == []
        assert await store.load(service, "old-running") == [b"start", b"step"]
        assert await store.load(service, "recent-done") == [b"start", b"end"]
        if notes:
            assert isinstance(store, FailureNotes)
            assert await store.noted_failure(service, "old-done") is None
            assert await store.noted_failure(service, "set-aside") is None
            assert await store.noted_failure(service, "old-running") == (1, b"told")
        await store.append(service, "old-done", b"again", 0)  # the id may start anew
        assert await store.load(service, "old-done") == [b"again"]
        again = await store.purge_finished(service, DELAY, finished)
        assert again == PurgeReport(running=1), again
        nothing = await store.purge_finished(_name("never-ran"), DELAY, finished)
        assert nothing == PurgeReport(), nothing


async def check_routine_index(factory: BackendFactory) -> None:
    """``RoutineIndex``: an entry written by one client is read and listed by another, a
    write whose rank is not above the kept one's changes nothing (a repeated or late
    report), concurrent writers settle on the highest rank, listing is newest written
    first, services are listed, and a retention pass removes the entries of the journals
    it removed. (Skipped for a store without the capability.)"""
    async with _opened(factory) as (backend, stack):
        stores = [await backend.store() for _ in range(2)]
        for store in stores:
            stack.push_async_callback(store.close)
        writer, reader = stores
        if not (isinstance(writer, RoutineIndex) and isinstance(reader, RoutineIndex)):
            return
        service = _name("svc")
        assert await reader.index_get(service, "r1") is None
        assert [p async for p in reader.index_pages(service)] == []
        first = RoutineEntry(service, "r1", "running", method="run", started=1.0, rank=2)
        assert await writer.index_put(first)
        assert not await reader.index_put(first), "the same rank again changes nothing"
        done = RoutineEntry(service, "r1", "completed", method="run", rank=4, finished=True)
        assert await reader.index_put(done)
        assert not await writer.index_put(first), "a late report never moves it back"
        late = RoutineEntry(service, "r1", "running", method="run", rank=3)
        assert not await writer.index_put(late, first=True), "a wrong hint changes nothing"
        assert await writer.index_get(service, "r1") == done
        held = RoutineEntry(_name("svc"), "r1", "completed", method="run", rank=8, finished=True)
        assert await reader.index_put(held, first=True), "created as the hint says"
        assert await writer.index_get(held.service, "r1") == held
        racing = [RoutineEntry(service, "r2", "running", rank=r) for r in (2, 3, 5, 4)]
        writers: list[RoutineIndex] = [writer, reader] * 2
        await asyncio.gather(*(w.index_put(e) for w, e in zip(writers, racing, strict=True)))
        kept = await reader.index_get(service, "r2")
        assert kept is not None and kept.rank == 5, kept
        for n in range(3, 8):
            await writer.index_put(RoutineEntry(service, f"r{n}", "running", rank=2))
        listed = [e.routine_id async for page in reader.index_pages(service) for e in page]
        assert listed == ["r7", "r6", "r5", "r4", "r3", "r2", "r1"], listed
        assert service in await reader.index_services()
        await reader.index_remove(service, ["r3", "r4", "never"])
        assert await writer.index_get(service, "r3") is None
        assert await writer.index_get(service, "r5") is not None

        if not isinstance(writer, Retention):
            return
        for routine in ("old-done", "old-running"):
            await writer.append(service, routine, b"start", 0)
        await writer.append(service, "old-done", b"end", 1)
        for routine, finished in (("old-done", True), ("old-running", False)):
            status = "completed" if finished else "running"
            entry = RoutineEntry(service, routine, status, rank=4, finished=finished, ended=0.5)
            await writer.index_put(entry)
        await backend.pass_time(DELAY * 2)
        report = await writer.purge_finished(service, DELAY, lambda e: e.startswith(b"end"))
        assert report.purged == 1, report
        assert await reader.index_get(service, "old-done") is None, "removed with its journal"
        assert await reader.index_get(service, "old-running") is not None


async def check_redelivery_after_ack_wait(factory: BackendFactory) -> None:
    """A delivery its handler never settles (a hung or dead worker) is delivered again
    after the backend's ack wait, with attempt 2; settling a stale delivery does nothing."""
    async with _opened(factory) as (backend, stack):
        if backend.ack_wait is None:
            return
        t = await _transport(backend, stack)
        queue = _name("q")
        await t.declare(queue)
        first: list[Delivery] = []

        async def settle(d: Delivery) -> None:
            if d.attempt == 1:
                first.append(d)  # returns without settling
            else:
                await d.ack()

        inbox = _Inbox(backend.now, settle)
        await _consume(stack, t, queue, inbox)
        await t.send(queue, _msg("hung"))
        await inbox.wait_for("the redelivery", lambda: inbox.ids().count("hung") >= 2)
        (d1, at1), (d2, at2) = inbox.received[:2]
        assert d2.attempt == 2, d2.attempt
        assert at2 - at1 >= backend.ack_wait * 0.9, (at1, at2, backend.ack_wait)
        await first[0].ack()  # stale: changes nothing
        await t.send(queue, _msg("sentinel"))
        await inbox.wait_for("the sentinel", lambda: "sentinel" in inbox.ids())
        assert inbox.ids().count("hung") == 2, inbox.ids()


CHECKS: dict[str, Callable[[BackendFactory], Awaitable[None]]] = {
    "publish_consume_ack": check_publish_consume_ack,
    "nak_redelivers": check_nak_redelivers,
    "dedupe_by_msg_id": check_dedupe_by_msg_id,
    "delayed_delivery": check_delayed_delivery,
    "unknown_queue": check_unknown_queue,
    "term": check_term,
    "competing_consumers": check_competing_consumers,
    "journal_order": check_journal_order,
    "journal_conflict": check_journal_conflict,
    "journal_create_once": check_journal_create_once,
    "origins": check_origins,
    "redelivery_after_ack_wait": check_redelivery_after_ack_wait,
    "store_capabilities": check_store_capabilities,
    "failure_notes": check_failure_notes,
    "retention": check_retention,
    "routine_index": check_routine_index,
}
"""Every check by name, for test suites that want one test per check."""


async def check_transport(factory: BackendFactory, only: Iterable[str] | None = None) -> None:
    """Run the conformance checks (all, or those named in ``only``) against a backend.

    Raises ``AssertionError`` naming the first check that fails.
    """
    names = list(CHECKS) if only is None else list(only)
    for name in names:
        try:
            await CHECKS[name](factory)
        except AssertionError as exc:
            raise AssertionError(f"transport check {name!r} failed: {exc}") from exc
