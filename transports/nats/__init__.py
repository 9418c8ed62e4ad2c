"""The NATS JetStream transport and journal store (``dasync.transports.nats``).

``connect_nats(options)`` gives a ``(NatsTransport, NatsStore)`` pair sharing
one connection; ``NatsServer`` runs a local ``nats-server`` (tests, the
embedded default of ``dasync run``). Every stream, subject and consumer is
described in ``docs/nats.md``; the names come from ``_naming``.
"""

from . import _naming as naming
from ._consume import NatsDelivery
from ._find import find_embedded
from ._open import connect_nats
from ._options import NatsOptions
from ._server import (
    EmbeddedServer,
    NatsServer,
    NatsServerError,
    ensure_embedded,
    release_embedded,
    stop_embedded,
)
from ._store import NatsStore
from ._transport import NatsTransport

__all__ = [
    "EmbeddedServer",
    "NatsDelivery",
    "NatsOptions",
    "NatsServer",
    "NatsServerError",
    "NatsStore",
    "NatsTransport",
    "connect_nats",
    "ensure_embedded",
    "find_embedded",
    "naming",
    "release_embedded",
    "stop_embedded",
]
