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
    └── TransportError                   infrastructure failure (retried, never seen in routines)
        └── JournalConflict              another worker appended to the journal first

Control-flow signals of the engine derive from ``BaseException`` so that a
user's ``except Exception:`` cannot swallow them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CallFailed",
    "ContractError",
    "DasyncError",
    "InvalidArguments",
    "JournalConflict",
    "MalformedMessage",
    "NonDeterminismError",
    "NotInRoutine",
    "RemoteError",
    "TransportError",
    "UnknownMethod",
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


class JournalConflict(TransportError):
    """Another worker committed a step of the same routine first (optimistic concurrency)."""


class NonDeterminismError(DasyncError):
    """A replayed routine issued other commands than its journal recorded."""

    def __init__(self, routine_id: str, step: int, expected: str, actual: str) -> None:
        self.routine_id = routine_id
        self.step = step
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"routine {routine_id!r} step {step}: journal has {expected}, replay issued "
            f"{actual}. Check that the routine is deterministic: values that change between "
            f"runs must come from dasync.uuid4()/now()/random() or from calls to services."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.routine_id, self.step, self.expected, self.actual))


class RemoteError(DasyncError):
    """A callee raised an exception whose class cannot be rebuilt in the caller's process."""

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        self.type_name = type_name
        self.message = message
        self.traceback = traceback
        super().__init__(f"{type_name}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type_name, self.message, self.traceback))


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
