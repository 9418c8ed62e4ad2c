"""``dasync.connect()``: a client for routines running elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from .._clock import SystemClock
from ..transports import JournalStore, MemoryStore, MemoryTransport, Transport
from ..transports.memory import default_broker
from ._client import Client

if TYPE_CHECKING:
    from ..transports.nats import NatsOptions

__all__ = ["connect"]

NATS_SCHEMES = ("nats://", "tls://", "ws://", "wss://")


@asynccontextmanager
async def connect(
    url: str | NatsOptions = "memory://",
    *,
    transport: Transport | None = None,
    store: JournalStore | None = None,
) -> AsyncIterator[Client]:
    """Connect a client: ``async with dasync.connect(url) as client: ...``.

    ``memory://`` reaches runtimes of this process that use the default memory
    broker. ``nats://host:4222`` (comma-separate several servers; ``tls://``
    for TLS) reaches runtimes anywhere through NATS JetStream, with credentials
    from the ``DASYNC_NATS_*`` environment variables. A ``NatsOptions`` instead
    of a URL gives every connection setting in code (servers, user and
    password, token, credentials file, TLS files). Pass ``transport`` and
    ``store`` to use your own.
    """
    owned: list[Transport | JournalStore] = []
    if transport is None or store is None:
        if isinstance(url, str) and url.startswith("memory://"):
            broker = default_broker()
            transport = transport or MemoryTransport(broker)
            store = store or MemoryStore(broker)
        elif not isinstance(url, str) or url.startswith(NATS_SCHEMES):
            from ..transports.nats import connect_nats

            nats_transport, nats_store = await connect_nats(url)
            owned = [nats_transport, nats_store]
            transport = transport or nats_transport
            store = store or nats_store
        else:
            raise ValueError(f"unsupported dasync URL {url!r}: use memory:// or nats://host:port")
    client = Client(transport, store, SystemClock())
    try:
        await client.open()
        yield client
    finally:
        await client.close()
        for resource in owned:
            await resource.close()
