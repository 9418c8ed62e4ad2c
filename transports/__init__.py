"""Transports and journal stores (installed as ``dasync.transports``).

Engine-agnostic: they move opaque messages and journal entries. ``memory`` is
in-process; the NATS JetStream implementation lives in ``dasync.transports.nats``.
"""

from ._contract import Claims as Claims
from ._contract import DeadLetter as DeadLetter
from ._contract import DeadLetters as DeadLetters
from ._contract import Delivery as Delivery
from ._contract import Handler as Handler
from ._contract import JournalStore as JournalStore
from ._contract import Message as Message
from ._contract import Subscription as Subscription
from ._contract import Transport as Transport
from .memory import MemoryBroker as MemoryBroker
from .memory import MemoryStore as MemoryStore
from .memory import MemoryTransport as MemoryTransport

__all__ = [
    "Claims",
    "DeadLetter",
    "DeadLetters",
    "Delivery",
    "Handler",
    "JournalStore",
    "MemoryBroker",
    "MemoryStore",
    "MemoryTransport",
    "Message",
    "Subscription",
    "Transport",
]
