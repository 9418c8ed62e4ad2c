"""Transports and journal stores (installed as ``dasync.transports``).

Engine-agnostic: they move opaque messages and journal entries. ``memory`` is
in-process; the NATS JetStream implementation lives in ``dasync.transports.nats``.
"""

from ._contract import INBOX_PREFIX as INBOX_PREFIX
from ._contract import UNKNOWN_ORIGIN as UNKNOWN_ORIGIN
from ._contract import Affinity as Affinity
from ._contract import Backlog as Backlog
from ._contract import Claims as Claims
from ._contract import Continuity as Continuity
from ._contract import CrashCounter as CrashCounter
from ._contract import DeadLetter as DeadLetter
from ._contract import DeadLetters as DeadLetters
from ._contract import Delivery as Delivery
from ._contract import FailureNotes as FailureNotes
from ._contract import Handler as Handler
from ._contract import JournalStore as JournalStore
from ._contract import Message as Message
from ._contract import Origin as Origin
from ._contract import PurgeReport as PurgeReport
from ._contract import Redelivery as Redelivery
from ._contract import Retention as Retention
from ._contract import RoutineEntry as RoutineEntry
from ._contract import RoutineIndex as RoutineIndex
from ._contract import Secrets as Secrets
from ._contract import StartClaims as StartClaims
from ._contract import Subscription as Subscription
from ._contract import Transport as Transport
from ._contract import UniqueDelivery as UniqueDelivery
from ._contract import check_name as check_name
from ._contract import inbox_queue as inbox_queue
from ._contract import is_inbox as is_inbox
from ._contract import split_inbox as split_inbox
from .memory import MemoryBroker as MemoryBroker
from .memory import MemoryStore as MemoryStore
from .memory import MemoryTransport as MemoryTransport

__all__ = [
    "Affinity",
    "Claims",
    "CrashCounter",
    "DeadLetter",
    "Backlog",
    "Continuity",
    "DeadLetters",
    "Delivery",
    "FailureNotes",
    "Handler",
    "JournalStore",
    "MemoryBroker",
    "MemoryStore",
    "MemoryTransport",
    "Message",
    "Origin",
    "PurgeReport",
    "Redelivery",
    "Retention",
    "RoutineEntry",
    "RoutineIndex",
    "Secrets",
    "StartClaims",
    "UNKNOWN_ORIGIN",
    "Subscription",
    "Transport",
    "UniqueDelivery",
    "INBOX_PREFIX",
    "check_name",
    "inbox_queue",
    "is_inbox",
    "split_inbox",
]
