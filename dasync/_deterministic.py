"""Values a routine must see identically on replay: ids, clocks, random numbers.

Inside a routine each value is recorded in the journal the first time and read
back on replay. Outside a routine (client code, plain unit tests) they are
ordinary values, so the same helper code works in both places.
"""

from __future__ import annotations

import random as _random
import uuid as _uuid
from datetime import UTC, datetime

from ._engine import current_instance
from ._errors import NotInRoutine

__all__ = ["call_id", "now", "random", "uuid4"]


def uuid4() -> _uuid.UUID:
    """A random UUID, the same one when the routine replays."""
    inst = current_instance()
    if inst is None:
        return _uuid.uuid4()
    return _uuid.UUID(hex=inst.record("uuid4", lambda: _uuid.uuid4().hex))


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
        return _random.random()
    value: float = inst.record("random", _random.random)
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
