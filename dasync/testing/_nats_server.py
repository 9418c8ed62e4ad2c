"""A local ``nats-server`` for tests of code built on dasync, and a conformance backend on it.

``NatsServer`` is the controller the NATS transport uses itself (free port on
127.0.0.1, temporary JetStream store, log in a file, ``restart()`` on the same
port and store, and JetStream fsyncing every write before acknowledging it:
``sync="always"``, or ``sync=None`` for nats-server's default of every 2
minutes). ``nats_server()`` is the shortest way to get one::

    with nats_server() as server:
        transport, store = await connect_nats(server.url)

``nats_backend(url)`` adapts a server to ``check_transport`` (the conformance
suite): every ``connect``/``store`` call opens its own connection, as separate
worker processes would.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from ..transports.nats import (
    NatsOptions,
    NatsServer,
    NatsServerError,
    NatsStore,
    NatsTransport,
    connect_nats,
)
from ..transports.nats._server import SYNC_ALWAYS
from ._conformance import Backend

__all__ = ["NatsServer", "NatsServerError", "nats_backend", "nats_server"]


@contextmanager
def nats_server(
    store_dir: str | Path | None = None, *, sync: str | None = SYNC_ALWAYS
) -> Iterator[NatsServer]:
    """A started server, stopped (and its temporary store deleted) on exit.

    ``sync`` is JetStream's ``sync_interval`` (see ``NatsServer``): ``"always"``
    by default, ``None`` for nats-server's default.
    """
    with NatsServer(store_dir=store_dir, sync=sync) as server:
        yield server


def nats_backend(url: str, **options: Any) -> Callable[[], AbstractAsyncContextManager[Backend]]:
    """A conformance ``BackendFactory`` on the server at ``url`` (``NatsOptions`` overrides)."""
    settings = NatsOptions(servers=(url,), **options)

    @asynccontextmanager
    async def backend() -> AsyncIterator[Backend]:
        async def connect() -> NatsTransport:
            transport, store = await connect_nats(settings)
            await store.close()  # each side holds the shared connection; keep one
            return transport

        async def open_store() -> NatsStore:
            transport, store = await connect_nats(settings)
            await transport.close()
            return store

        yield Backend(connect=connect, store=open_store, now=time.time, ack_wait=settings.ack_wait)

    return backend
