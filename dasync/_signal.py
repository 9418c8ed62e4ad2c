"""Signals: a routine waits for a named, typed value that someone sends it later.

``approved = await dasync.signal("approval", bool)`` waits inside a routine;
``client.signal(Service, routine_id, "approval", True)`` (or ``dasync signal``,
or ``POST /routines/{id}/signals/{name}`` on the gateway) sends one. A signal is
an input of the routine like a call's reply: it is journaled with the step it
starts, so replay feeds it at the same point. One sent before the routine waits
is kept until it does (in the order sent); one sent twice under the same id is
taken once. Combine with ``asyncio.wait_for``/``asyncio.timeout`` for a deadline
(a durable timer) and with ``asyncio.wait`` over several.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

from ._codec import decode_value
from ._engine import current_instance
from ._errors import NotInRoutine

__all__ = ["signal"]

T = TypeVar("T")


@overload
async def signal(name: str, kind: type[T]) -> T: ...


@overload
async def signal(name: str) -> Any: ...


async def signal(name: str, kind: Any = Any) -> Any:
    """The value of the next signal ``name`` sent to this routine, read as ``kind``.

    A value that is not a ``kind`` raises ``InvalidArguments`` here, naming the field.
    """
    inst = current_instance()
    if inst is None:
        raise NotInRoutine(f"dasync.signal({name!r}) waits inside a routine only")
    if not name or len(name) > 128:
        raise ValueError("a signal's name is 1 to 128 characters")
    payload = await inst.wait_signal(name)
    return decode_value(kind, payload, what=f"signal {name!r}")
