"""What the runtime needs from a message transport and a journal store.

Structural types (``Protocol``), so an implementation needs no base class: the
conformance suite in ``dasync.testing`` checks behaviour instead. Queues are
named by the runtime (one per service, one per client inbox); the transport
does not interpret headers or bodies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "Claims",
    "DeadLetter",
    "DeadLetters",
    "Delivery",
    "Handler",
    "JournalStore",
    "Message",
    "Subscription",
    "Transport",
]


@dataclass(frozen=True, slots=True)
class Message:
    """An immutable message: a dedupe id, string headers and an opaque body."""

    msg_id: str
    """Same id = same message: a transport drops duplicates published within its window."""
    headers: Mapping[str, str]
    body: bytes = b""
    deliver_at: float | None = field(default=None, compare=False)
    """Wall-clock time (epoch seconds) before which the message must not be delivered."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message set aside because it could not be processed, with the reason."""

    id: str
    """Identifies the letter within its queue (for ``retry_dead_letter``)."""
    queue: str
    message: Message
    reason: str


@runtime_checkable
class Claims(Protocol):
    """Optional store capability: lease the first step of a routine to one worker.

    Without it, two deliveries of one call racing on two workers may both run
    the callee's first step before one of them commits (the journal still keeps
    one outcome). With it, the second waits and then finds the journal written.
    """

    async def claim(self, service: str, routine_id: str, owner: str) -> bool:
        """True if ``owner`` holds (or now takes) the lease; False while another does."""
        ...


@runtime_checkable
class DeadLetters(Protocol):
    """Optional transport capability: list poison messages and put one back in its queue."""

    async def dead_letters(self, queue: str) -> list[DeadLetter]: ...

    async def retry_dead_letter(self, queue: str, letter_id: str) -> None:
        """Re-queue the letter's message (under a new message id) and forget the letter."""


@runtime_checkable
class Delivery(Protocol):
    """One delivery of a message to a consumer; settle it exactly once."""

    @property
    def message(self) -> Message: ...

    @property
    def attempt(self) -> int:
        """1 on first delivery, then counts redeliveries."""
        ...

    async def ack(self) -> None:
        """Done: the message will not be delivered again."""

    async def nak(self, delay: float = 0.0) -> None:
        """Not done: deliver again after ``delay`` seconds."""

    async def in_progress(self) -> None:
        """Still working: postpone the redelivery that an unacked message gets."""

    async def term(self, reason: str) -> None:
        """Never deliver again (poison); ``reason`` is kept for operators."""


Handler = Callable[[Delivery], Awaitable[None]]


class Subscription(Protocol):
    async def stop(self) -> None:
        """Stop fetching; in-flight deliveries may still be settled."""


@runtime_checkable
class Transport(Protocol):
    """Durable, at-least-once queues with publish-side dedupe and delayed delivery."""

    async def declare(self, queue: str) -> None:
        """Create ``queue`` if it does not exist (idempotent)."""

    async def send(self, queue: str, message: Message) -> None:
        """Persist ``message`` on ``queue``; raises ``UnknownService`` if it was never declared."""

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
