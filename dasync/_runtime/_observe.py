"""What a worker tells observers of the routines it runs: a routine index, a live log.

Observers hear of a step once it is in the journal, before its outbox is sent and
its message acknowledged; an ``AlongsideObserver`` (the routine index) hears of it
while the outbox is sent, saving the worker a round trip per step, and may hand back
a future for which the acknowledgement waits (a write it holds back). A worker that
dies before the acknowledgement hears of it again: the
redelivery finds the step committed and reports it once more (``resent``), so an
observer sees every committed step at least once and must treat a repeat as one.
An observer that raises makes the delivery fail like any infrastructure error
(the message comes back), so that nothing it keeps can silently fall behind.

An observer may also define ``resumed`` (``ResumeObserver``): told when a worker
rebuilds a routine from its journal to run new input (after a crash, a restart, or
because another worker ran its previous step), not when a redelivery only re-sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from .._engine import StepRecord

__all__ = ["AlongsideObserver", "Observers", "ResumeObserver", "RoutineObserver"]


@runtime_checkable
class RoutineObserver(Protocol):
    async def committed(
        self, service: str, routine_id: str, index: int, record: StepRecord, *, resent: bool
    ) -> None:
        """Entry ``index`` (0: the routine's start) of the routine's journal is ``record``.

        ``resent``: a redelivery found it already committed (reported before, unless the
        worker died first); ``record.completion`` says whether the routine ended."""
        ...

    async def set_aside(
        self, service: str, routine_id: str, entries: int, reason: str, *, told: bool
    ) -> None:
        """A message of the routine became a dead letter while its journal had ``entries``:
        ``told`` when its caller got the failure (``CallFailed``), else it is parked until
        the letter is retried."""
        ...


@runtime_checkable
class ResumeObserver(Protocol):
    async def resumed(
        self, service: str, routine_id: str, method: str, entries: int, *, attempt: int
    ) -> None:
        """The routine's ``entries`` journal entries were replayed on this worker to run
        a new input, delivered for the ``attempt``-th time (above 1: a redelivery, its
        previous worker died or failed before acknowledging it)."""
        ...


@runtime_checkable
class AlongsideObserver(Protocol):
    """An observer whose report holds back no message: told of a fresh commit while the
    step's outbox is sent (the routine index)."""

    def committed_fresh(
        self, service: str, routine_id: str, index: int, record: StepRecord
    ) -> asyncio.Future[Any] | None:
        """As ``committed`` (``resent=False``) but without waiting: a future, if any, is
        the work under way that the delivery's acknowledgement waits for (if it fails,
        the delivery comes back and is reported again)."""
        ...

    async def flush(self) -> None:
        """Write what is held back now (the worker stops)."""
        ...


class Observers:
    """The worker's observers, called in order (none: nothing is done)."""

    def __init__(self, observers: Sequence[RoutineObserver] = ()) -> None:
        self.observers = tuple(observers)
        self._resume = tuple(o for o in self.observers if isinstance(o, ResumeObserver))
        self.alongside = tuple(o for o in self.observers if isinstance(o, AlongsideObserver))
        """Told of a commit while its outbox is sent (they hold back no message)."""
        self.before = tuple(o for o in self.observers if not isinstance(o, AlongsideObserver))
        """Told of a commit before its outbox is sent (a failure holds the messages back)."""

    def __bool__(self) -> bool:
        return bool(self.observers)

    async def committed_before(
        self, service: str, routine_id: str, index: int, record: StepRecord
    ) -> None:
        """A fresh commit, to the observers that hear of it before its messages leave."""
        for observer in self.before:
            await observer.committed(service, routine_id, index, record, resent=False)

    def committed_alongside(
        self, service: str, routine_id: str, index: int, record: StepRecord
    ) -> list[asyncio.Future[Any]]:
        """A fresh commit, to the observers that hear of it while its messages leave; what
        the delivery's acknowledgement must wait for."""
        holds = []
        for observer in self.alongside:
            hold = observer.committed_fresh(service, routine_id, index, record)
            if hold is not None:
                holds.append(hold)
        return holds

    async def flush(self) -> None:
        for observer in self.alongside:
            await observer.flush()

    async def committed(
        self, service: str, routine_id: str, index: int, record: StepRecord, *, resent: bool
    ) -> None:
        for observer in self.observers:
            await observer.committed(service, routine_id, index, record, resent=resent)

    async def set_aside(
        self, service: str, routine_id: str, entries: int, reason: str, *, told: bool
    ) -> None:
        for observer in self.observers:
            await observer.set_aside(service, routine_id, entries, reason, told=told)

    async def resumed(
        self, service: str, routine_id: str, method: str, entries: int, *, attempt: int
    ) -> None:
        for observer in self._resume:
            await observer.resumed(service, routine_id, method, entries, attempt=attempt)
