"""Routine, call and event ids: stable on every replay, unique across services, bounded.

A callee's id names its caller's routine, the caller's service and method,
and the call's sequence number: ``order-7/Shop.place.3`` is the third command
of routine ``order-7`` of ``Shop.place``. Two services that use the same
business key as a routine id therefore never share a callee, and
``dasync.call_id()`` is unique across the whole deployment.

Ids stay readable and bounded at any call depth: past ``MAX_ID_LENGTH`` the
start of an id is shortened around a digest of the whole, so it stays unique,
and its last segment (after the last ``/``) is kept whole: it begins with the
service that made the id (``owner_of``), which is how a callee checks that a
caller asks for an id of its own and not for one of another service's calls.
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
    "owner_of",
]

MAX_ID_LENGTH = 160
"""Longest routine id; longer derived ids keep their start and end around a digest."""

MAX_CALL_DEPTH = 200
"""Deepest chain of nested durable calls; a deeper call raises ``CallDepthExceeded``."""

SEPARATOR = "/"


_DIGEST = 24
_MAX_TAIL = MAX_ID_LENGTH - _DIGEST - 24


def _bounded(parent: str, tail: str) -> str:
    """``parent/tail``, shortened if long; ``tail`` starts with the owning service's name."""
    full = f"{parent}{SEPARATOR}{tail}"
    if len(full) <= MAX_ID_LENGTH:
        return full
    digest = hashlib.blake2b(full.encode(), digest_size=_DIGEST // 2).hexdigest()
    if len(tail) > _MAX_TAIL:  # a very long method name: keep the owner, digest the rest
        owner, _, rest = tail.partition(".")
        tail = f"{owner}.{rest[: max(0, _MAX_TAIL - len(owner) - 1)]}"
    room = MAX_ID_LENGTH - len(tail) - len(digest) - 2
    return f"{parent[:room]}~{digest}{SEPARATOR}{tail}"


def child_id(parent: str, service: str, method: str, seq: int) -> str:
    """The routine id of the call issued at ``seq`` by routine ``parent`` of ``service.method``."""
    return _bounded(parent, f"{service}.{method}.{seq}")


def event_id(routine_id: str, service: str, seq: int) -> str:
    """The id of the event fired at ``seq`` by routine ``routine_id`` of ``service``."""
    return _bounded(routine_id, f"{service}.e{seq}")


def handler_id(event: str, subscriber: str, handler: str) -> str:
    """The routine that handles event ``event`` in ``subscriber.handler``: one per pair."""
    return _bounded(event, f"{subscriber}.{handler}")


def owner_of(derived_id: str) -> str | None:
    """The service that made a derived id (a call's or an event's), ``None`` for ids users
    choose (they have no ``/``)."""
    if SEPARATOR not in derived_id:
        return None
    return derived_id.rpartition(SEPARATOR)[2].partition(".")[0]


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
