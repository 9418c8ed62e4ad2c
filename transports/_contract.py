"""What the runtime needs from a message transport and a journal store.

Structural types (``Protocol``), so an implementation needs no base class: the
conformance suite in ``dasync.testing`` checks behaviour instead. Queues are
named by the runtime (one per service, one per client inbox); the transport
does not interpret headers or bodies.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

__all__ = [
    "Affinity",
    "Backlog",
    "Continuity",
    "Claims",
    "CrashCounter",
    "DeadLetter",
    "DeadLetters",
    "Delivery",
    "FailureNotes",
    "Handler",
    "INBOX_PREFIX",
    "JournalStore",
    "Message",
    "Origin",
    "PurgeReport",
    "Redelivery",
    "Retention",
    "RoutineEntry",
    "RoutineIndex",
    "Secrets",
    "StartClaims",
    "Subscription",
    "COPY",
    "REDELIVERED",
    "SOLE",
    "Transport",
    "UniqueDelivery",
    "check_name",
    "inbox_queue",
    "is_inbox",
    "split_inbox",
]

INBOX_PREFIX = "_inbox."
"""Queues whose name starts with this are client inboxes: ``_inbox.<identity>.<id>``."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_name(what: str, name: str) -> str:
    """``name`` if it can name a service or a client identity, else ``ValueError`` saying why.

    The same characters on every transport, so that a name is one subject token on NATS
    as it is (no escaping) and a sender's name can be compared with a journaled one.
    """
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def inbox_queue(identity: str, inbox_id: str) -> str:
    """The queue of one client inbox of ``identity``."""
    identity = check_name("client identity", identity)
    return f"{INBOX_PREFIX}{identity}.{check_name('inbox id', inbox_id)}"


def is_inbox(queue: str) -> bool:
    return queue.startswith(INBOX_PREFIX)


def split_inbox(queue: str) -> tuple[str, str]:
    """``_inbox.<identity>.<id>`` -> ``(identity, id)``; ``ValueError`` for anything else."""
    identity, _, inbox_id = queue[len(INBOX_PREFIX) :].partition(".")
    if not is_inbox(queue) or not _NAME.fullmatch(identity) or not _NAME.fullmatch(inbox_id):
        raise ValueError(f"not a client inbox queue: {queue!r}")
    return identity, inbox_id


@dataclass(frozen=True, slots=True)
class Message:
    """An immutable message: a dedupe id, string headers and an opaque body."""

    msg_id: str
    """Same id = same message: a transport drops duplicates published within its window."""
    headers: Mapping[str, str]
    body: bytes = b""
    deliver_at: float | None = field(default=None, compare=False)
    """Wall-clock time (epoch seconds) before which the message must not be delivered."""
    once: str = field(default="", compare=False)
    """A key that no other message of this sender to this queue carries while the routine
    it starts is kept (a call's start: its callee routine id). A transport that can keep
    one message per key stores the first and takes a later copy as sent already, and its
    deliveries say so (``UniqueDelivery``); any other transport ignores it."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Who sent a message, as the transport vouches for it, never as its headers claim.

    On NATS it is read from the subject a message arrived on, which the server's
    permissions let only that sender publish to (``docs/security.md``). ``kind`` is
    ``service`` (``name`` is the sending service), ``client`` (``name`` is the client's
    identity), ``operator``, or ``unknown``.
    """

    kind: str
    name: str = ""

    SERVICE: ClassVar[str] = "service"
    CLIENT: ClassVar[str] = "client"
    OPERATOR: ClassVar[str] = "operator"
    UNKNOWN: ClassVar[str] = "unknown"

    @classmethod
    def service(cls, name: str) -> Origin:
        return cls(cls.SERVICE, name)

    @classmethod
    def client(cls, identity: str) -> Origin:
        return cls(cls.CLIENT, identity)

    def __str__(self) -> str:
        return f"{self.kind} {self.name}" if self.name else self.kind


UNKNOWN_ORIGIN = Origin(Origin.UNKNOWN)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message set aside because it could not be processed, with the reason."""

    id: str
    """Identifies the letter within its queue (for ``retry_dead_letter``)."""
    queue: str
    message: Message
    reason: str
    subject: str = ""
    """Where the transport received it (NATS: the subject, which names its sender)."""


@runtime_checkable
class Claims(Protocol):
    """Optional store capability: lease the first step of a routine to one worker.

    Without it, two deliveries of one call racing on two workers may both run
    the callee's first step before one of them commits (the journal still keeps
    one outcome). With it, the second waits and then finds the journal written.
    """

    async def claim(self, service: str, routine_id: str, owner: str) -> bool:
        """True if ``owner`` holds the lease (then it is renewed) or now takes it; False
        while another owner does."""
        ...


@runtime_checkable
class StartClaims(Protocol):
    """Optional store capability: a claim that also says whether the routine is new.

    A store whose claims last as long as journals (both removed together) knows, from
    creating a claim, that no journal of the routine exists: the worker then skips the
    journal read that would otherwise recognise a duplicate start.
    """

    async def claim_start(self, service: str, routine_id: str, owner: str) -> str:
        """``new`` (the first claim ever: no journal exists), ``held`` (``owner`` holds the
        lease now; the journal may exist) or ``busy`` (another owner holds it)."""
        ...


@runtime_checkable
class Secrets(Protocol):
    """Optional store capability: a random key per service, shared by its workers only.

    Message ids are tagged with it, so that nobody else can publish a message under
    the id of one a service will send and have the real one dropped as a duplicate.
    """

    async def secret(self, service: str) -> bytes:
        """The key of ``service`` (created by the first worker that asks, then kept)."""
        ...


@runtime_checkable
class CrashCounter(Protocol):
    """Optional store capability: count processing runs that never finished.

    The worker records a run only when a message comes back without having been
    settled (its worker died), so that a message that kills every worker it reaches
    becomes a dead letter instead of taking the service down for good.
    """

    async def record_crash(self, service: str, key: str) -> int:
        """Count one more run of ``key`` that may not finish; return how many were counted
        before (the consecutive runs that never finished)."""
        ...

    async def forget_crash(self, service: str, key: str) -> None:
        """A counted run of ``key`` did finish: start counting from zero again."""


@runtime_checkable
class FailureNotes(Protocol):
    """Optional store capability: what a routine's caller was told when a message of the
    routine was set aside, readable by every client.

    Without it only the caller that started the routine learns that it failed; any
    other handle on it would wait until its own timeout for a journal that never ends.
    A note holds while the journal is as long as it was when the note was written: a
    step committed after it (a retried dead letter running) makes it stale.
    """

    async def note_failure(self, service: str, routine_id: str, entries: int, note: bytes) -> None:
        """Keep ``note`` (an encoded failure) for a routine whose journal has ``entries``."""
        ...

    async def noted_failure(self, service: str, routine_id: str) -> tuple[int, bytes] | None:
        """``(entries, note)`` last kept for the routine, or None."""
        ...

    async def forget_failure(self, service: str, routine_id: str) -> None:
        """Drop the routine's note (its dead letter was put back in the queue)."""


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What one pass of ``Retention.purge_finished`` found and did."""

    purged: int = 0
    """Finished routines whose journals (and notes) were removed (or would be, dry run)."""
    running: int = 0
    """Routines with entries older than the cut-off that are still running: kept."""
    recent: int = 0
    """Finished routines whose last entry is newer than the cut-off: kept."""


@runtime_checkable
class Retention(Protocol):
    """Optional store capability: remove the journals of routines that finished long ago.

    A journal is what makes a repeated start of the same routine id harmless, so it
    may go only once no caller will repeat that start: the retention is that window.
    """

    async def purge_finished(
        self,
        service: str,
        older_than: float,
        finished: Callable[[bytes], bool],
        *,
        dry_run: bool = False,
    ) -> PurgeReport:
        """Remove every journal of ``service`` whose last entry is older than ``older_than``
        seconds (by the store's clock) and ``finished`` (given that entry's bytes)."""
        ...


@dataclass(frozen=True, slots=True)
class RoutineEntry:
    """A routine as the index knows it: what ``dasync ls`` lists without reading journals.

    The store keeps one entry per routine and treats it as opaque but for ``rank``
    (which entry is newer) and ``finished``/``ended`` (retention).
    """

    service: str
    routine_id: str
    status: str
    """``running``, ``completed``, ``failed``, ``cancelled``, ``retrying``, ``parked`` or
    ``dead-lettered`` (``dasync._runtime._index.STATUSES``)."""
    method: str = ""
    started: float = 0.0
    """Epoch seconds of its start, as journaled."""
    ended: float | None = None
    """Epoch seconds of its completion (finished statuses only)."""
    parent: str = ""
    """``Service/routine_id`` of the routine that called it; empty for a client's start."""
    caller: str = ""
    """Who started it, ``kind:name`` (``client:<identity>``, ``service:<name>``)."""
    error: str = ""
    """A one-line summary of its failure, retry or dead letter."""
    rank: int = 0
    """Orders the entries written for one routine: a write with a rank not above the kept
    one's changes nothing, so a repeated or late report never moves a routine back."""
    updated: float = 0.0
    finished: bool = False
    """Completed in its journal (completed, failed, cancelled): retention may remove it."""


@runtime_checkable
class RoutineIndex(Protocol):
    """Optional store capability: one small entry per routine, kept as routines commit, so
    that listing routines reads the index instead of every journal."""

    async def index_put(self, entry: RoutineEntry, *, first: bool = False) -> bool:
        """Keep ``entry`` unless the routine's kept entry has a rank as high or higher;
        True if written. Concurrent writers of one routine: the highest rank wins.
        ``first``: the caller wrote nothing of this routine before and expects no entry
        (a hint: a store may try creating it before reading what is kept)."""
        ...

    async def index_get(self, service: str, routine_id: str) -> RoutineEntry | None: ...

    def index_pages(
        self,
        service: str,
        *,
        status: str | None = None,
        method: str | None = None,
        newest_first: bool = True,
    ) -> AsyncIterator[list[RoutineEntry]]:
        """The entries of ``service`` (in ``status``, running ``method``: None for any), in
        pages, the most recently written first, so that a listing of the latest routines
        stops after its first page however large the index (nothing if it has no index).
        ``newest_first=False``: in any order, for a reader that wants them all (a store
        may then read them in one pass)."""
        ...

    async def index_services(self) -> list[str]:
        """The services that have an index, sorted."""
        ...

    async def index_remove(self, service: str, routine_ids: list[str]) -> None:
        """Drop the entries of these routines (their journals were removed)."""


@runtime_checkable
class DeadLetters(Protocol):
    """Optional transport capability: list poison messages and put one back in its queue."""

    async def dead_letters(self, queue: str) -> list[DeadLetter]: ...

    async def retry_dead_letter(self, queue: str, letter_id: str) -> None:
        """Re-queue the letter's message (under a new message id) and forget the letter."""


@runtime_checkable
class Redelivery(Protocol):
    """Optional transport capability: hand a dead letter to a handler in place, as sent.

    For a worker retrying routines parked by other code: the delivery has the letter's
    message and its original sender (``Delivery.origin``), so the checks a worker makes
    of a message apply as on its first delivery. ``ack`` forgets the letter; ``term``
    keeps it with the new reason; ``nak`` keeps it as it was.
    """

    async def redeliver_dead_letter(
        self, queue: str, letter: DeadLetter, handler: Handler
    ) -> None: ...


@runtime_checkable
class Delivery(Protocol):
    """One delivery of a message to a consumer; settle it exactly once."""

    @property
    def message(self) -> Message: ...

    @property
    def attempt(self) -> int:
        """1 on first delivery, then counts redeliveries."""
        ...

    @property
    def origin(self) -> Origin:
        """Who sent the message, as the transport established it."""
        ...

    async def ack(self) -> None:
        """Done: the message will not be delivered again."""

    async def nak(self, delay: float = 0.0) -> None:
        """Not done: deliver again after ``delay`` seconds."""

    async def in_progress(self) -> None:
        """Still working: postpone the redelivery that an unacked message gets."""

    async def term(self, reason: str) -> None:
        """Never deliver again (poison); ``reason`` is kept for operators."""


SOLE = "sole"
"""``UniqueDelivery.copy_of``: the first delivery of the only copy of a start that can
exist while its routine is kept: no journal of the routine exists, and no other worker has
it."""
REDELIVERED = "redelivered"
"""``UniqueDelivery.copy_of``: the only copy, delivered before: its first delivery ran
without a claim and may have written the journal, or may still be running."""
COPY = "copy"
"""``UniqueDelivery.copy_of``: a start sent again once the kept copy was refused as stored
already (after the dedupe window): the kept copy runs the routine; this one only has the
journal's outcome sent again if there is one, and runs nothing."""


@runtime_checkable
class UniqueDelivery(Protocol):
    """Optional delivery capability: the transport kept one copy of this start.

    A message sent with ``Message.once`` is stored once per key; the first delivery of
    that copy needs neither the claim nor the journal read that otherwise guard a start
    against a second copy running at once or a run that happened already.
    """

    def copy_of(self, key: str) -> str:
        """``SOLE`` or ``REDELIVERED`` if this delivery is of the one copy kept for ``key``
        (checked against where the transport stored it, never against headers), ``COPY``
        for a copy of a kept start sent on another way, else ``""``."""
        ...


Handler = Callable[[Delivery], Awaitable[None]]


class Subscription(Protocol):
    async def stop(self) -> None:
        """Stop fetching; in-flight deliveries may still be settled."""


@runtime_checkable
class Affinity(Protocol):
    """Optional transport capability: a lane per worker, for the routines it holds.

    A routine's concurrent calls answer at once; on a shared queue their replies reach
    different workers of its service, and each one that finds the routine elsewhere costs
    a journal conflict and a replay. A worker names its lane in the calls it sends (and
    its timers use it); the replies go there. When the lane's worker is gone, the others
    take its lane over, so nothing waits on a dead worker for longer than that takes.
    """

    def lane_of(self, queue: str) -> str:
        """This transport's own lane for the service ``queue`` it consumes (``""``: none,
        send to the shared queue)."""
        ...

    async def send_at(self, queue: str, lane: str, message: Message, origin: Origin) -> None:
        """``send`` to worker ``lane`` of ``queue`` (the shared queue if that lane cannot be
        reached: a stream without lanes)."""


@runtime_checkable
class Continuity(Protocol):
    """Optional subscription capability: a count of the times it may have missed messages.

    ``breaks`` grows when the subscription lost its place (its connection came back, its
    consumer or stream had to be created again): a client that waits on its inbox reads
    a routine's journal only then (and rarely besides), not on a timer (issue 14).
    """

    @property
    def breaks(self) -> int: ...


@runtime_checkable
class Backlog(Protocol):
    """Optional subscription capability: how far its consumer is behind (consumer lag)."""

    @property
    def consumer(self) -> str:
        """The consumer's name, as operators see it (the metric's attribute)."""
        ...

    async def backlog(self) -> int:
        """Messages stored for this consumer and not yet delivered to any of its workers."""
        ...


@runtime_checkable
class Transport(Protocol):
    """Durable, at-least-once queues with publish-side dedupe and delayed delivery."""

    async def declare(self, queue: str) -> None:
        """Create ``queue`` if it does not exist (idempotent): from then on, messages sent
        to it are kept until someone consumes them. A caller declares its callee's queue
        this way when the callee was never deployed, so that its calls wait for it."""

    identity: str
    """The client identity this connection speaks as (``Origin.client``): its inboxes are
    ``_inbox.<identity>.<id>``, and a server's permissions let only it use them."""

    async def send(self, queue: str, message: Message, origin: Origin | None = None) -> None:
        """Persist ``message`` on ``queue`` as sent by ``origin``.

        ``None`` means the queue's own service (timers, retries). Raises
        ``UnknownService`` if the queue was never declared.
        """

    async def consume(self, queue: str, handler: Handler, *, concurrency: int = 64) -> Subscription:
        """Deliver messages of ``queue`` to ``handler``, shared with other consumers of it."""
        ...

    async def declare_topic(self, topic: str) -> None:
        """Create the event topic ``topic`` (``Service.event``) if it does not exist."""

    async def publish(self, topic: str, message: Message) -> None:
        """Persist an event for every group subscribed to ``topic`` (dedupe by ``msg_id``).

        Raises ``UnknownService`` if the topic was never declared.
        """

    async def subscribe(
        self, topic: str, group: str, handler: Handler, *, concurrency: int = 64
    ) -> Subscription:
        """Deliver every event of ``topic`` published from now on once to ``group``.

        The group is durable: consumers of the same group (the workers of one
        subscribing service) share its events, and a group that was away gets
        what was published meanwhile when it comes back.
        """
        ...

    async def close(self) -> None: ...


@runtime_checkable
class JournalStore(Protocol):
    """Append-only journals with optimistic concurrency, one per routine."""

    async def load(self, service: str, routine_id: str) -> list[bytes]:
        """Every entry of the routine's journal, in order (empty if it does not exist)."""
        ...

    async def append(self, service: str, routine_id: str, entry: bytes, expected: int) -> None:
        """Append one entry if the journal has exactly ``expected`` entries.

        Raises ``JournalConflict`` otherwise: another worker won the race, so the
        caller must reload. ``expected == 0`` is how a routine is created once.
        """

    async def close(self) -> None: ...
