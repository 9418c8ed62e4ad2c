"""Routine, call and event ids: stable on every replay, unique across services, bounded.

A callee's id names its caller's routine, the caller's service and method,
and the call's sequence number: ``order-7/Shop.place.3`` is the third command
of routine ``order-7`` of ``Shop.place``. Two services that use the same
business key as a routine id therefore never share a callee, and
``dasync.call_id()`` is unique across the whole deployment.

Ids stay readable and bounded at any call depth: past ``MAX_ID_LENGTH`` the
middle of an id is replaced by a digest of the whole, so it stays unique.
``/`` is reserved for derived ids: ids chosen by users may not contain it, so
no client can pick an id that collides with a call made by a routine.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "MAX_CALL_DEPTH",
    "MAX_ID_LENGTH",
    "check_user_id",
    "child_id",
    "event_id",
    "handler_id",
    "legacy_child_id",
    "legacy_event_id",
]

MAX_ID_LENGTH = 160
"""Longest routine id; longer derived ids keep their start and end around a digest."""

MAX_CALL_DEPTH = 200
"""Deepest chain of nested durable calls; a deeper call raises ``CallDepthExceeded``."""

SEPARATOR = "/"


def _bounded(full: str) -> str:
    if len(full) <= MAX_ID_LENGTH:
        return full
    digest = hashlib.blake2b(full.encode(), digest_size=12).hexdigest()
    keep = (MAX_ID_LENGTH - len(digest) - 2) // 2
    return f"{full[:keep]}~{digest}~{full[-keep:]}"


def child_id(parent: str, service: str, method: str, seq: int) -> str:
    """The routine id of the call issued at ``seq`` by routine ``parent`` of ``service.method``."""
    return _bounded(f"{parent}{SEPARATOR}{service}.{method}.{seq}")


def event_id(routine_id: str, service: str, seq: int) -> str:
    """The id of the event fired at ``seq`` by routine ``routine_id`` of ``service``."""
    return _bounded(f"{routine_id}{SEPARATOR}{service}.e{seq}")


def handler_id(event: str, subscriber: str, handler: str) -> str:
    """The routine that handles event ``event`` in ``subscriber.handler``: one per pair."""
    return _bounded(f"{event}{SEPARATOR}{subscriber}.{handler}")


def legacy_child_id(parent: str, seq: int) -> str:
    """Callee ids of journals written before ids were journaled (format 1)."""
    return f"{parent}-{seq}"


def legacy_event_id(routine_id: str, seq: int) -> str:
    return f"{routine_id}-e{seq}"


def check_user_id(routine_id: str) -> str:
    """``routine_id`` if a client may choose it, else ``ValueError`` saying why."""
    if not routine_id or len(routine_id) > MAX_ID_LENGTH:
        raise ValueError(f"routine_id must be 1 to {MAX_ID_LENGTH} characters, got {routine_id!r}")
    if SEPARATOR in routine_id:
        raise ValueError(
            f"routine_id {routine_id!r} contains {SEPARATOR!r}, which is reserved for the ids "
            f"dasync derives for calls made by routines"
        )
    return routine_id
