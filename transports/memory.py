"""In-process transport and journal store, for unit tests and ``dasync.testing``.

``MemoryBroker`` is the durable part (queues, scheduled messages, dedupe ids,
journals) and outlives any runtime using it, as a NATS server outlives its
workers: drop a runtime with ``MemoryTransport.kill()`` and its unacknowledged
deliveries go back to their queues for the next runtime.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import secrets
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from dasync._clock import Clock, SystemClock
from dasync._errors import JournalConflict, UnknownService
from dasync.transports._contract import (
    UNKNOWN_ORIGIN,
    DeadLetter,
    Handler,
    Message,
    Origin,
    PurgeReport,
    RoutineEntry,
)

__all__ = ["MemoryBroker", "MemoryStore", "MemoryTransport"]


@dataclass
class _Entry:
    message: Message
    queue: str
    origin: Origin = UNKNOWN_ORIGIN
    attempt: int = 0
    generation: int = 0
    """Counts deliveries: a delivery whose entry was delivered again since is stale."""
    deadline: float = 0.0
    terminated: str | None = None


@dataclass
class _Queue:
    name: str
    pending: deque[_Entry] = field(default_factory=deque)
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    inflight: int = 0
    consumers: int = 0


class MemoryBroker:
    """Queues and journals kept in this process; shared by every runtime given it."""

    def __init__(
        self, clock: Clock | None = None, *, ack_wait: float = 30.0, dedupe_window: int = 100_000
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.ack_wait = ack_wait
        self.dedupe_window = dedupe_window
        self.queues: dict[str, _Queue] = {}
        self.journals: dict[tuple[str, str], list[bytes]] = {}
        self.written: dict[tuple[str, str], tuple[float, float]] = {}
        """When each journal's first and last entries were appended (``clock``), for retention."""
        self.notes: dict[tuple[str, str], tuple[int, bytes, float]] = {}
        self.index: dict[tuple[str, str], RoutineEntry] = {}
        """The routine index (``RoutineIndex``): an entry per routine, the highest rank kept."""
        """(service, routine) -> (journal entries, failure note, written at)."""
        self.dead: list[tuple[str, Message, str]] = []
        self.dead_origins: list[Origin] = []
        """The sender of each of ``dead``, for a retry to keep it."""
        self.secrets: dict[str, bytes] = {}
        self.crashes: dict[tuple[str, str], int] = {}
        self.topics: dict[str, set[str]] = {}
        self.claims: dict[tuple[str, str], tuple[str, float]] = {}
        """(service, routine) -> (worker, lease end): who runs a routine's first step."""
        """Event topic -> the queues of the groups subscribed to it."""
        self._scheduled: list[tuple[float, int, _Entry]] = []
        self._counter = itertools.count()
        self._scheduler: asyncio.Task[None] | None = None
        self.consumers: set[_Consumer] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._schedule_changed = asyncio.Event()
        self.sent = 0
        self.duplicates_dropped = 0

    # --- queues ---------------------------------------------------------------------------

    def declare(self, queue: str) -> None:
        if queue not in self.queues:
            self.queues[queue] = _Queue(queue)

    def publish(self, queue: str, message: Message, origin: Origin | None = None) -> None:
        q = self.queues.get(queue)
        if q is None:
            raise UnknownService(f"no service or inbox named {queue!r} is deployed")
        if message.msg_id in q.seen:
            self.duplicates_dropped += 1
            return
        q.seen[message.msg_id] = None
        if len(q.seen) > self.dedupe_window:
            q.seen.popitem(last=False)
        self.sent += 1
        entry = _Entry(message, queue, origin or Origin.service(queue))
        if message.deliver_at is not None and message.deliver_at > self.clock.now():
            self._schedule(message.deliver_at, entry)
        else:
            self._push(entry)

    def declare_topic(self, topic: str) -> None:
        self.topics.setdefault(topic, set())

    def group_queue(self, topic: str, group: str) -> str:
        queue = f"_topic.{topic}@{group}"
        self.declare_topic(topic)
        if queue not in self.topics[topic]:
            self.declare(queue)
            self.topics[topic].add(queue)
        return queue

    def publish_event(self, topic: str, message: Message) -> None:
        groups = self.topics.get(topic)
        if groups is None:
            raise UnknownService(f"no service declares the event {topic!r}")
        publisher = Origin.service(topic.partition(".")[0])
        for queue in sorted(groups):
            self.publish(queue, message, publisher)

    def redeliver_later(self, entry: _Entry, delay: float) -> None:
        if delay > 0:
            self._schedule(self.clock.now() + delay, entry)
        else:
            self._push(entry)

    def _push(self, entry: _Entry) -> None:
        q = self.queues[entry.queue]
        q.pending.append(entry)
        q.wakeup.set()

    def _schedule(self, at: float, entry: _Entry) -> None:
        heapq.heappush(self._scheduled, (at, next(self._counter), entry))
        self._schedule_changed.set()
        if self._scheduler is None or self._scheduler.done():
            self._scheduler = asyncio.get_running_loop().create_task(self._run_scheduler())

    async def _run_scheduler(self) -> None:
        while self._scheduled:
            at = self._scheduled[0][0]
            if at <= self.clock.now():
                _, _, entry = heapq.heappop(self._scheduled)
                self._push(entry)
                continue
            self._schedule_changed.clear()
            sleeper = asyncio.ensure_future(self.clock.sleep_until(at))
            changed = asyncio.ensure_future(self._schedule_changed.wait())
            await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
            sleeper.cancel()
            changed.cancel()

    def watch(self, consumer: _Consumer) -> None:
        """Redeliver ``consumer``'s deliveries that outlive ``ack_wait`` (a handler that
        never settles, as a worker that hangs would), as JetStream does."""
        self.consumers.add(consumer)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def unwatch(self, consumer: _Consumer) -> None:
        self.consumers.discard(consumer)
        if not self.consumers and self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def _sweep(self) -> None:
        # real time between sweeps, the broker's clock for deadlines: a virtual clock does
        # not move while a delivery is in flight (it is busy), so nothing expires there
        while self.consumers:
            await asyncio.sleep(min(1.0, self.ack_wait / 4))
            now = self.clock.now()
            for consumer in list(self.consumers):
                consumer.expire(now)

    def next_scheduled(self) -> float | None:
        return self._scheduled[0][0] if self._scheduled else None

    def busy(self) -> bool:
        """True while any message is queued or being handled (virtual clocks wait for idle).

        Messages on a queue nobody consumes (the inbox of a client that went away)
        cannot be handled, so they do not count.
        """
        return any((q.pending and q.consumers) or q.inflight for q in self.queues.values())

    # --- journals -------------------------------------------------------------------------

    def claim(self, service: str, routine_id: str, owner: str) -> bool:
        return self.claim_start(service, routine_id, owner) != "busy"

    def claim_start(self, service: str, routine_id: str, owner: str) -> str:
        """As on NATS: ``new`` the first time ever (kept as long as the journal), ``held``
        by ``owner`` now (renewed or taken over after it lapsed), or ``busy``."""
        now = self.clock.now()
        key = (service, routine_id)
        found = self.claims.get(key)
        if found is not None and found[0] != owner and found[1] > now:
            return "busy"
        self.claims[key] = (owner, now + self.ack_wait)  # new, renewed or taken over
        return "new" if found is None else "held"

    def load(self, service: str, routine_id: str) -> list[bytes]:
        return list(self.journals.get((service, routine_id), ()))

    def append(self, service: str, routine_id: str, entry: bytes, expected: int) -> None:
        journal = self.journals.setdefault((service, routine_id), [])
        if len(journal) != expected:
            raise JournalConflict(
                f"journal of {routine_id!r} has {len(journal)} entries, expected {expected}"
            )
        journal.append(entry)
        now = self.clock.now()
        first, _ = self.written.get((service, routine_id), (now, now))
        self.written[(service, routine_id)] = (first if expected else now, now)

    def purge_finished(
        self, service: str, older_than: float, finished: Callable[[bytes], bool], dry_run: bool
    ) -> PurgeReport:
        """As a pass over a NATS journal stream sees it: routines whose first entry is older
        than the cut-off are judged by their last one; newer routines are not met."""
        cutoff = self.clock.now() - older_than
        purged = running = recent = 0
        for key in [k for k in self.journals if k[0] == service]:
            journal = self.journals[key]
            first, last = self.written.get(key, (cutoff, cutoff))
            if not journal or first >= cutoff:
                continue
            if not finished(journal[-1]):
                running += 1
            elif last >= cutoff:
                recent += 1
            else:
                purged += 1
                if not dry_run:
                    del self.journals[key]
                    self.written.pop(key, None)
                    self.notes.pop(key, None)
                    self.index.pop(key, None)
                    self.claims.pop(key, None)  # with its journal: a new start is new again
        for key, (_, _, at) in list(self.notes.items()):
            if key[0] == service and key not in self.journals and at < cutoff:
                purged += 1  # a start set aside before it had a journal
                if not dry_run:
                    del self.notes[key]
                    self.index.pop(key, None)
        return PurgeReport(purged, running, recent)


class _MemoryDelivery:
    __slots__ = ("_entry", "_consumer", "_settled", "_attempt", "_generation")

    def __init__(self, entry: _Entry, consumer: _Consumer) -> None:
        self._entry = entry
        self._consumer = consumer
        self._settled = False
        self._attempt = entry.attempt  # the entry's count moves on with later deliveries
        self._generation = entry.generation

    @property
    def message(self) -> Message:
        return self._entry.message

    @property
    def attempt(self) -> int:
        return self._attempt

    @property
    def origin(self) -> Origin:
        return self._entry.origin

    def _settle(self) -> bool:
        if self._settled or self._generation != self._entry.generation:
            return False  # settled, or expired and delivered again since
        self._settled = True
        self._consumer.finished(self._entry)
        return True

    async def ack(self) -> None:
        self._settle()

    async def nak(self, delay: float = 0.0) -> None:
        if self._settle():
            self._consumer.broker.redeliver_later(self._entry, delay)

    async def in_progress(self) -> None:
        if not self._settled and self._generation == self._entry.generation:
            broker = self._consumer.broker
            self._entry.deadline = broker.clock.now() + broker.ack_wait

    async def term(self, reason: str) -> None:
        if self._settle():
            self._entry.terminated = reason
            broker = self._consumer.broker
            broker.dead.append((self._entry.queue, self._entry.message, reason))
            broker.dead_origins.append(self._entry.origin)


class _LetterDelivery:
    """A dead letter handed back (``Redelivery``): settling it settles the letter."""

    def __init__(self, broker: MemoryBroker, index: int, message: Message) -> None:
        self._broker, self._index, self._message = broker, index, message
        self._settled = False

    @property
    def message(self) -> Message:
        return self._message

    @property
    def attempt(self) -> int:
        return 1

    @property
    def origin(self) -> Origin:
        return self._broker.dead_origins[self._index]

    async def ack(self) -> None:
        if not self._settled:
            self._settled = True
            q, _message, reason = self._broker.dead[self._index]
            self._broker.dead[self._index] = (q, None, reason)  # type: ignore[assignment]

    async def nak(self, delay: float = 0.0) -> None:
        self._settled = True

    async def in_progress(self) -> None:
        pass

    async def term(self, reason: str) -> None:
        if not self._settled:
            self._settled = True
            q, message, _old = self._broker.dead[self._index]
            self._broker.dead[self._index] = (q, message, reason)


class _Consumer:
    def __init__(
        self, broker: MemoryBroker, queue: str, handler: Handler, concurrency: int
    ) -> None:
        self.broker = broker
        self.queue = broker.queues[queue]
        self.handler = handler
        self.slots = asyncio.Semaphore(concurrency)
        self.inflight: dict[int, _Entry] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.queue.consumers += 1
        self._attached = True
        self.pump = asyncio.get_running_loop().create_task(self._pump())
        broker.watch(self)

    def _detach(self) -> None:
        if self._attached:
            self._attached = False
            self.queue.consumers -= 1
            self.broker.unwatch(self)

    def expire(self, now: float) -> None:
        """Hand back the deliveries whose ``ack_wait`` passed without a settle."""
        for entry in [e for e in self.inflight.values() if e.deadline <= now]:
            self.finished(entry)
            entry.generation += 1
            self.broker.redeliver_later(entry, 0.0)

    async def _pump(self) -> None:
        q = self.queue
        while True:
            if not q.pending:
                q.wakeup.clear()
                await q.wakeup.wait()
                continue
            await self.slots.acquire()
            if not q.pending:
                self.slots.release()
                continue
            entry = q.pending.popleft()
            entry.attempt += 1
            entry.generation += 1
            entry.deadline = self.broker.clock.now() + self.broker.ack_wait
            self.inflight[id(entry)] = entry
            q.inflight += 1
            task = asyncio.get_running_loop().create_task(self._handle(entry))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _handle(self, entry: _Entry) -> None:
        delivery = _MemoryDelivery(entry, self)
        try:
            await self.handler(delivery)
        finally:
            self.slots.release()

    def finished(self, entry: _Entry) -> None:
        if self.inflight.pop(id(entry), None) is not None:
            self.queue.inflight -= 1

    @property
    def consumer(self) -> str:
        return self.queue.name

    async def backlog(self) -> int:
        """``Backlog``: what waits in the queue (a group's queue, for an event group)."""
        return len(self.queue.pending)

    async def stop(self) -> None:
        self._detach()
        self.pump.cancel()
        await asyncio.gather(self.pump, return_exceptions=True)

    def kill(self) -> None:
        """Drop everything in flight as a crashed process would; the broker redelivers it."""
        self._detach()
        self.pump.cancel()
        for task in list(self.tasks):
            task.cancel()
        for entry in list(self.inflight.values()):
            self.finished(entry)
            entry.generation += 1
            self.broker.redeliver_later(entry, 0.0)


class MemoryTransport:
    """``Transport`` over a ``MemoryBroker``."""

    def __init__(self, broker: MemoryBroker, identity: str = "local") -> None:
        self.broker = broker
        self.identity = identity
        self.ack_wait = broker.ack_wait
        self._consumers: list[_Consumer] = []

    async def declare(self, queue: str) -> None:
        self.broker.declare(queue)

    async def send(self, queue: str, message: Message, origin: Origin | None = None) -> None:
        self.broker.publish(queue, message, origin)

    async def consume(self, queue: str, handler: Handler, *, concurrency: int = 64) -> _Consumer:
        self.broker.declare(queue)
        consumer = _Consumer(self.broker, queue, handler, concurrency)
        self._consumers.append(consumer)
        return consumer

    async def declare_topic(self, topic: str) -> None:
        self.broker.declare_topic(topic)

    async def publish(self, topic: str, message: Message) -> None:
        self.broker.publish_event(topic, message)

    async def subscribe(
        self, topic: str, group: str, handler: Handler, *, concurrency: int = 64
    ) -> _Consumer:
        queue = self.broker.group_queue(topic, group)
        return await self.consume(queue, handler, concurrency=concurrency)

    async def dead_letters(self, queue: str) -> list[DeadLetter]:
        return [
            DeadLetter(str(i), q, message, reason)
            for i, (q, message, reason) in enumerate(self.broker.dead)
            if q == queue and message is not None
        ]

    async def retry_dead_letter(self, queue: str, letter_id: str) -> None:
        try:
            q, message, reason = self.broker.dead[int(letter_id)]
        except (ValueError, IndexError):
            raise LookupError(f"no dead letter {letter_id!r} in {queue!r}") from None
        if q != queue or message is None:
            raise LookupError(f"no dead letter {letter_id!r} in {queue!r}")
        retried = Message(f"{message.msg_id}~retry{letter_id}", message.headers, message.body)
        self.broker.publish(queue, retried, self.broker.dead_origins[int(letter_id)])
        self.broker.dead[int(letter_id)] = (q, None, reason)  # type: ignore[assignment]

    async def redeliver_dead_letter(self, queue: str, letter: DeadLetter, handler: Handler) -> None:
        """``Redelivery``: the letter, from its first sender, to ``handler``."""
        index = int(letter.id)
        q, message, _reason = self.broker.dead[index]
        if q != queue or message is None:
            raise LookupError(f"no dead letter {letter.id!r} in {queue!r}")
        await handler(_LetterDelivery(self.broker, index, message))

    async def close(self) -> None:
        for consumer in self._consumers:
            await consumer.stop()
        tasks = [t for c in self._consumers for t in c.tasks]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self.kill()

    def kill(self) -> None:
        """Simulate ``kill -9`` of every worker using this transport."""
        for consumer in self._consumers:
            consumer.kill()
        self._consumers.clear()


class MemoryStore:
    """``JournalStore`` over a ``MemoryBroker``."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker

    async def load(self, service: str, routine_id: str) -> list[bytes]:
        return self.broker.load(service, routine_id)

    async def append(self, service: str, routine_id: str, entry: bytes, expected: int) -> None:
        self.broker.append(service, routine_id, entry, expected)

    async def claim(self, service: str, routine_id: str, owner: str) -> bool:
        return self.broker.claim(service, routine_id, owner)

    async def claim_start(self, service: str, routine_id: str, owner: str) -> str:
        return self.broker.claim_start(service, routine_id, owner)

    async def secret(self, service: str) -> bytes:
        return self.broker.secrets.setdefault(service, secrets.token_bytes(32))

    async def record_crash(self, service: str, key: str) -> int:
        count = self.broker.crashes.get((service, key), 0)
        self.broker.crashes[(service, key)] = count + 1
        return count

    async def forget_crash(self, service: str, key: str) -> None:
        self.broker.crashes.pop((service, key), None)

    async def note_failure(self, service: str, routine_id: str, entries: int, note: bytes) -> None:
        self.broker.notes[(service, routine_id)] = (entries, note, self.broker.clock.now())

    async def noted_failure(self, service: str, routine_id: str) -> tuple[int, bytes] | None:
        found = self.broker.notes.get((service, routine_id))
        return None if found is None else (found[0], found[1])

    async def forget_failure(self, service: str, routine_id: str) -> None:
        self.broker.notes.pop((service, routine_id), None)

    async def purge_finished(
        self,
        service: str,
        older_than: float,
        finished: Callable[[bytes], bool],
        *,
        dry_run: bool = False,
    ) -> PurgeReport:
        return self.broker.purge_finished(service, older_than, finished, dry_run)

    async def index_put(self, entry: RoutineEntry, *, first: bool = False) -> bool:
        key = (entry.service, entry.routine_id)
        kept = self.broker.index.get(key)
        if kept is not None and kept.rank >= entry.rank:
            return False
        self.broker.index.pop(key, None)  # the dict's order is the order of writes
        self.broker.index[key] = entry
        return True

    async def index_get(self, service: str, routine_id: str) -> RoutineEntry | None:
        return self.broker.index.get((service, routine_id))

    async def index_pages(
        self,
        service: str,
        *,
        status: str | None = None,
        method: str | None = None,
        newest_first: bool = True,
    ) -> AsyncIterator[list[RoutineEntry]]:
        found = [
            e
            for (s, _), e in reversed(self.broker.index.items())
            if s == service and status in (None, e.status) and method in (None, e.method)
        ]
        for i in range(0, len(found), 1000):
            yield found[i : i + 1000]

    async def index_services(self) -> list[str]:
        return sorted({s for s, _ in self.broker.index})

    async def index_remove(self, service: str, routine_ids: list[str]) -> None:
        for routine_id in routine_ids:
            self.broker.index.pop((service, routine_id), None)

    async def close(self) -> None:
        pass


_default: MemoryBroker | None = None


def default_broker() -> MemoryBroker:
    """The process-wide broker that ``dasync.connect("memory://")`` and ``dasync run`` share."""
    global _default
    if _default is None:
        _default = MemoryBroker()
    return _default
