"""``connect_nats``: one connection, shared by a transport and a journal store."""

from __future__ import annotations

from ._connection import Connection
from ._options import NatsOptions
from ._provision import Provisioner
from ._store import NatsStore
from ._transport import NatsTransport

__all__ = ["connect_nats"]


async def connect_nats(options: NatsOptions | str | None = None) -> tuple[NatsTransport, NatsStore]:
    """Connect and return ``(transport, store)``; closing both drains and closes the connection.

    ``options`` may be a URL (``nats://host:4222``, comma-separated for several
    servers), a ``NatsOptions``, or ``None`` for ``NatsOptions.from_env()``.
    """
    if options is None:
        options = NatsOptions.from_env()
    elif isinstance(options, str):
        options = NatsOptions.from_env().with_servers(options)
    conn = await Connection.open(options)
    provisioner = Provisioner(conn)
    return NatsTransport(conn, provisioner), NatsStore(conn, provisioner)
