"""What clients tell a running routine (signals) and read from it (progress).

Both live in the routine's journal: a signal is an input the worker journals
with the step it starts, a progress update a command of the step that
published it. So a client reading progress reads the journal, from any offset,
and sees each update once and in order, however often the routine was replayed
or resumed elsewhere; and sending a signal needs no channel of its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .._codec import decode_value, encode_value
from .._engine import Progress, Signal, check_user_id, completion_of, decode_step
from .._errors import RoutineFinished
from . import _wire
from ._authority import encode_caller

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["read_progress", "send_signal"]


async def send_signal(
    client: Client,
    service: str,
    routine_id: str,
    name: str,
    value: Any,
    *,
    signal_id: str | None = None,
) -> str:
    """Send signal ``name`` with ``value`` to a routine of ``service``; the signal's id.

    ``LookupError`` for a routine that has no journal (never started, or removed after
    the retention), ``RoutineFinished`` for one that has finished (unless it took this
    very signal before: sending it again is idempotent). ``signal_id`` (default: a new
    one) makes sending idempotent: the routine takes one id once.
    """
    if not name or len(name) > 128:
        raise ValueError("a signal's name is 1 to 128 characters")
    signal_id = check_user_id(signal_id) if signal_id else uuid.uuid4().hex
    payload = encode_value(value, what=f"signal {name!r}")
    entries = await client._store.load(service, routine_id)
    if not entries:
        raise LookupError(f"no routine {routine_id!r} of {service} to signal (no journal)")
    if completion_of([decode_step(e) for e in entries[-1:]]) is not None:
        mine = f"{encode_caller(client.origin)}/{signal_id}"
        if any(isinstance((r := decode_step(e)).input, Signal) and r.input.id == mine
               for e in entries):  # fmt: skip
            return signal_id  # sent again after it was taken: idempotent, not an error
        raise RoutineFinished(
            f"routine {routine_id!r} of {service} has finished; signal {name!r} would "
            f"reach nothing"
        )
    message = _wire.signal_message(routine_id, name, signal_id, payload)
    await client._send(service, message, declare=False)
    return signal_id


async def read_progress(
    client: Client,
    service: str,
    routine_id: str,
    *,
    after: int = 0,
    kind: Any = Any,
    poll: float = 0.2,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[tuple[int, Any]]:
    """``(n, update)`` for each progress update of the routine, the ``n``-th from 1, those
    after ``after`` only, until the routine finishes (or ``stop`` is set); reconnect with
    the last ``n`` seen."""
    seen, n, read = after, 0, 0
    while True:
        entries = await client._store.load(service, routine_id)
        finished = False
        for entry in entries[read:]:  # a journal only grows: decode each entry once
            record = decode_step(entry)
            finished = finished or record.completion is not None
            for command in record.commands:
                if isinstance(command, Progress):
                    n += 1
                    if n > seen:
                        seen = n
                        yield n, decode_value(kind, command.payload, what="progress update")
        read = len(entries)
        if finished or (stop is not None and stop.is_set()):
            return
        if stop is None:
            await asyncio.sleep(poll)
        else:
            try:
                await asyncio.wait_for(stop.wait(), poll)
            except TimeoutError:
                pass
