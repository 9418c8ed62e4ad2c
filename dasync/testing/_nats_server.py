"""A local ``nats-server`` for tests of code built on dasync.

``NatsServer`` is the controller the NATS transport uses itself (free port on
127.0.0.1, temporary JetStream store, log in a file, ``restart()`` on the same
port and store). ``nats_server()`` is the shortest way to get one::

    with nats_server() as server:
        transport, store = await connect_nats(server.url)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..transports.nats import NatsServer, NatsServerError

__all__ = ["NatsServer", "NatsServerError", "nats_server"]


@contextmanager
def nats_server(store_dir: str | Path | None = None) -> Iterator[NatsServer]:
    """A started server, stopped (and its temporary store deleted) on exit."""
    with NatsServer(store_dir=store_dir) as server:
        yield server
