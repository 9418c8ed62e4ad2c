"""Values a routine must see identically on replay: ids, clocks, random numbers.

Inside a routine each value is recorded in the journal the first time and read
back on replay. Outside a routine (client code, plain unit tests) they are
ordinary values, so the same helper code works in both places.
"""

from __future__ import annotations

import uuid as _uuid
from datetime import UTC, datetime

from ._engine import current_instance
from ._engine._plain import real_random, real_uuid4
from ._errors import NotInRoutine

__all__ = ["call_id", "now", "random", "uuid4"]


def uuid4() -> _uuid.UUID:
    """A random UUID, the same one when the routine replays."""
    inst = current_instance()
    if inst is None:
        return real_uuid4()
    # journaled, so drawn from the process's generator, not the routine's: a replay reads it
    # back without drawing, and the routine's own sequence must not shift
    return _uuid.UUID(hex=inst.record("uuid4", lambda: real_uuid4().hex))


def now() -> datetime:
    """The current time (UTC), the same one when the routine replays."""
    inst = current_instance()
    if inst is None:
        return datetime.now(UTC)
    return datetime.fromtimestamp(inst.record("now", inst.time), UTC)


def random() -> float:
    """A float in [0, 1), the same one when the routine replays."""
    inst = current_instance()
    if inst is None:
        return real_random()
    value: float = inst.record("random", real_random)
    return value


def call_id() -> str:
    """The running routine's id: stable across retries and replays, unique per call.

    Use it as an idempotency key for side effects outside dasync (a payment
    API, a database upsert) so that a re-run after a crash does no harm.
    """
    inst = current_instance()
    if inst is None:
        raise NotInRoutine("dasync.call_id() is only meaningful inside a routine")
    return inst.routine_id
