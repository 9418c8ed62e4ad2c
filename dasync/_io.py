"""``dasync.io()``: run an awaitable on the process's event loop from inside a routine.

Routines run on a deterministic loop of their own. Futures of the real loop
can be awaited directly (a driver's pool created at start-up works as is), but
code that opens sockets itself or waits on primitives of the real loop
(``asyncio.open_connection``, anyio-based clients such as httpx, a host-loop
``asyncio.Event``) must run there: ``await dasync.io(client.get(url))``. The
step does not commit until it finishes. Its result is *not* journaled: on
replay it runs again, so keep it idempotent or put it in a service call.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable
from typing import TypeVar

from ._engine import current_instance

__all__ = ["io"]

T = TypeVar("T")


async def io(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` on the process's event loop (outside the routine's loop)."""
    inst = current_instance()
    if inst is None:
        return await awaitable
    host = inst.host_loop()
    # an empty context: durable calls inside real I/O code would not be journaled
    task = host.create_task(_await(awaitable), context=contextvars.Context())
    return await task


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable
