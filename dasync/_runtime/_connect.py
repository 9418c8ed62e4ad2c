"""``dasync.connect()``: a client for routines running elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .._clock import SystemClock
from ..transports import JournalStore, MemoryStore, MemoryTransport, Transport
from ..transports.memory import default_broker
from ._client import Client

__all__ = ["connect"]


@asynccontextmanager
async def connect(
    url: str = "memory://",
    *,
    transport: Transport | None = None,
    store: JournalStore | None = None,
) -> AsyncIterator[Client]:
    """Connect a client: ``async with dasync.connect(url) as client: ...``.

    ``memory://`` reaches runtimes of this process that use the default memory
    broker. Pass ``transport`` and ``store`` to use your own.
    """
    if transport is None or store is None:
        if not url.startswith("memory://"):
            raise ValueError(f"unsupported dasync URL {url!r}: only memory:// is available")
        broker = default_broker()
        transport = transport or MemoryTransport(broker)
        store = store or MemoryStore(broker)
    client = Client(transport, store, SystemClock())
    await client.open()
    try:
        yield client
    finally:
        await client.close()
