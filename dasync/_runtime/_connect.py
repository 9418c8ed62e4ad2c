"""``dasync.connect()``: a client for routines running elsewhere."""

from __future__ import annotations

import os
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


def _default_url() -> str:
    """``$DASYNC_NATS_URL``, else the running embedded server of this directory."""
    if url := os.environ.get("DASYNC_NATS_URL", "").strip():
        return url
    from ..transports.nats import find_embedded

    server = find_embedded()
    if server is None:
        raise ConnectionError(
            "dasync.connect(): no NATS server to talk to: $DASYNC_NATS_URL is not set and no "
            f"'dasync run' serves from this directory ({os.getcwd()}/.dasync has no running "
            "server). Start the services here with 'dasync run FILE', give the URL "
            "(dasync.connect('nats://host:4222')), or use dasync.connect('memory://') for "
            "runtimes of this process"
        )
    return server.url


@asynccontextmanager
async def connect(
    url: str | NatsOptions | None = None,
    *,
    transport: Transport | None = None,
    store: JournalStore | None = None,
) -> AsyncIterator[Client]:
    """Connect a client: ``async with dasync.connect(url) as client: ...``.

    With no URL: ``$DASYNC_NATS_URL``, else the embedded server a ``dasync run``
    in the current directory started (as ``dasync call`` finds it), else
    ``ConnectionError`` saying how to start one. ``nats://host:4222``
    (comma-separate several servers; ``tls://`` for TLS) reaches runtimes
    anywhere through NATS JetStream, with credentials from the ``DASYNC_NATS_*``
    environment variables. ``memory://`` reaches runtimes of this process that
    use the default memory broker. A ``NatsOptions`` instead of a URL gives every
    connection setting in code. Pass ``transport`` and ``store`` to use your own.
    """
    owned: list[Transport | JournalStore] = []
    if (transport is None or store is None) and url is None:
        url = _default_url()
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
            raise ValueError(f"unsupported dasync URL {url!r}: use nats://host:port or memory://")
    client = Client(transport, store, SystemClock())
    try:
        await client.open()
        yield client
    finally:
        await client.close()
        for resource in owned:
            await resource.close()
