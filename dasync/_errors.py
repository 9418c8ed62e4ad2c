"""The exceptions dasync raises, as one tree.

    DasyncError
    ├── ContractError (TypeError)        a contract or service definition is wrong
    ├── InvalidArguments (TypeError)     call arguments do not fit the contract
    ├── MalformedMessage (ValueError)    a payload could not be decoded at all
    ├── UnknownService (LookupError)     no service of that name is deployed
    ├── UnknownMethod (LookupError)      the service has no such method
    ├── NonDeterminismError              replay issued other commands than the journal
    ├── RemoteError                      a callee raised an exception we cannot rebuild
    ├── CallFailed                       the callee could not process the call (poison message)
    ├── NotInRoutine (RuntimeError)      a routine-only API was used outside a routine
    ├── NotAwaited (RuntimeError)        a durable call was created and never awaited
    ├── UnsafeInRoutine (RuntimeError)   something that cannot replay was used in a routine
    ├── CallDepthExceeded (RecursionError)  durable calls nested deeper than the limit
    └── TransportError                   infrastructure failure (retried, never seen in routines)
        └── JournalConflict              another worker appended to the journal first

Control-flow signals of the engine derive from ``BaseException`` so that a
user's ``except Exception:`` cannot swallow them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CallDepthExceeded",
    "CallFailed",
    "ContractError",
    "DasyncError",
    "InvalidArguments",
    "JournalConflict",
    "MalformedMessage",
    "NonDeterminismError",
    "NotAwaited",
    "NotInRoutine",
    "RemoteError",
    "TransportError",
    "UnknownMethod",
    "UnsafeInRoutine",
    "UnknownService",
]


class DasyncError(Exception):
    """Root of every error raised by dasync."""


class ContractError(DasyncError, TypeError):
    """A contract or service class cannot be used; the message lists every problem."""


class InvalidArguments(DasyncError, TypeError):
    """Arguments of a call do not match the contract's signature or types."""


class MalformedMessage(DasyncError, ValueError):
    """A message payload is not decodable (not JSON, or not the expected shape)."""


class UnknownService(DasyncError, LookupError):
    """A call was addressed to a service that is not deployed."""


class UnknownMethod(DasyncError, LookupError):
    """A call named a method that the service's contract does not have."""


class NotInRoutine(DasyncError, RuntimeError):
    """A routine-only API (durable call, ``dasync.uuid4()``...) was used outside a routine."""


class TransportError(DasyncError):
    """The transport or store failed; workers retry these, routines never see them."""


class TransportRefused(TransportError):
    """The transport will not do this however often it is asked: it was closed by this
    process, or the server's permissions refuse it. Not retried by clients."""


class JournalConflict(TransportError):
    """Another worker committed a step of the same routine first (optimistic concurrency)."""


class NonDeterminismError(DasyncError):
    """A replayed routine issued other commands than its journal recorded.

    ``differs`` names what differs (kind, sequence number, args...), ``where`` the
    line of user code that issued the command on replay.
    """

    def __init__(
        self,
        routine_id: str,
        step: int,
        expected: str,
        actual: str,
        differs: str = "",
        where: str = "",
    ) -> None:
        self.routine_id = routine_id
        self.step = step
        self.expected = expected
        self.actual = actual
        self.differs = differs
        self.where = where
        detail = f" ({differs} differs)" if differs and differs != "nothing more" else ""
        at = f" at {where}" if where else ""
        super().__init__(
            f"routine {routine_id!r} step {step}: journal has {expected}, replay issued "
            f"{actual}{detail}{at}. The routine is not deterministic: values that change "
            f"between runs must come from its inputs, from calls to services, or from what "
            f"dasync makes deterministic (time.time(), random, uuid, dasync.now())."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.routine_id, self.step, self.expected, self.actual, self.differs, self.where),
        )


class RemoteError(DasyncError):
    """A callee raised an exception that is not rebuilt in the caller's process.

    Its class is not loaded here, is not an ``Exception`` (``SystemExit``,
    ``KeyboardInterrupt``... are never raised in a caller on a remote's behalf),
    or refused the carried state. Nothing the callee sent is lost: ``remote_args``
    and ``state`` (attributes and builtin fields) are the remote exception's, its
    notes are this error's notes, its cause and context are chained as usual.
    """

    def __init__(
        self,
        type_name: str,
        message: str,
        traceback: str = "",
        remote_args: tuple[Any, ...] | list[Any] = (),
        state: dict[str, Any] | None = None,
        notes: tuple[str, ...] | list[str] = (),
    ) -> None:
        self.type_name = type_name
        self.message = message
        self.traceback = traceback
        self.remote_args = tuple(remote_args)
        self.state = dict(state or {})
        self.notes = tuple(notes)
        super().__init__(f"{type_name}: {message}")
        if self.notes:
            self.__notes__ = list(self.notes)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (
                self.type_name,
                self.message,
                self.traceback,
                self.remote_args,
                self.state,
                self.notes,
            ),
        )


class CallFailed(DasyncError):
    """The callee could not process the call at all; its message was set aside as a dead letter.

    Raised at the caller's ``await`` instead of waiting forever. The dead letter
    keeps the message and the reason, so it can be retried once the cause is fixed.
    """

    def __init__(self, service: str, routine_id: str, reason: str) -> None:
        self.service = service
        self.routine_id = routine_id
        self.reason = reason
        super().__init__(f"{service} could not process routine {routine_id!r}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.service, self.routine_id, self.reason))


class _RoutineEvicted(BaseException):
    """Thrown into a routine's tasks when its live instance is dropped from the cache."""


class NotAwaited(DasyncError, RuntimeError):
    """A durable call was created inside a routine and dropped without being awaited.

    Under plain asyncio the call would silently never happen; in a routine it is
    an error that names the call and the line that made it.
    """


class UnsafeInRoutine(DasyncError, RuntimeError):
    """Code inside a routine used something whose result cannot be the same on replay."""


class CallDepthExceeded(DasyncError, RecursionError):
    """Durable calls are nested deeper than ``MAX_CALL_DEPTH`` (runaway recursion)."""


class RoutineFinished(DasyncError):
    """A signal was sent to a routine that has finished: nothing will wait for it."""
