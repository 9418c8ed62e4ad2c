"""How a transport ``Message`` maps onto a NATS message and back.

The runtime's headers travel unchanged. The transport adds its own:
``Nats-Msg-Id`` (server-side dedupe), and for delayed messages
``Dasync-Deliver-At`` (epoch seconds) plus ``Dasync-Msg-Id`` because the
server drops ``Nats-Msg-Id`` from the message a schedule produces.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from dasync.transports._contract import Message

from ._connection import RawMsg

__all__ = [
    "DELIVER_AT",
    "MSG_ID",
    "NATS_MSG_ID",
    "ack_info",
    "at_spec",
    "header_safe",
    "to_message",
]

NATS_MSG_ID = "Nats-Msg-Id"
MSG_ID = "Dasync-Msg-Id"
DELIVER_AT = "Dasync-Deliver-At"
DEAD_REASON = "Dasync-Dead-Reason"
DEAD_QUEUE = "Dasync-Dead-Queue"
SCHEDULER = "Nats-Scheduler"
"""Set by the server on a message a schedule fired: the subject of that schedule."""
DEAD_SUBJECT = "Dasync-Dead-Subject"
"""The subject a dead letter arrived on: a retry goes back there, keeping its sender."""
KEPT = "Dasync-Kept"
"""On a call's start sent on its sender's lane because its starts stream keeps a copy of it
already (``UniqueDelivery.copy_of``: ``COPY``)."""
_OWN = frozenset({MSG_ID, DELIVER_AT, KEPT})


def to_message(raw: RawMsg, fallback_id: str) -> Message:
    """The ``Message`` a delivery carries: the runtime's headers only, the original id."""
    h = raw.headers
    msg_id = h.get(NATS_MSG_ID) or h.get(MSG_ID) or fallback_id
    deliver_at: float | None = None
    if (at := h.get(DELIVER_AT)) is not None:
        try:
            deliver_at = float(at)
        except ValueError:
            deliver_at = None
    headers = {k: v for k, v in h.items() if not k.startswith("Nats-") and k not in _OWN}
    return Message(msg_id, headers, raw.data, deliver_at)


def ack_info(reply: str) -> tuple[int, int]:
    """(times delivered, stream sequence) from a JetStream ack subject.

    Both ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...`` and the form
    with domain and account hash (``$JS.ACK.<domain>.<hash>.<stream>...``).
    """
    tokens = reply.split(".")
    if len(tokens) < 9 or tokens[0] != "$JS" or tokens[1] != "ACK":
        return 1, 0
    base = 2 if len(tokens) == 9 else 4
    try:
        return int(tokens[base + 2]), int(tokens[base + 3])
    except (ValueError, IndexError):
        return 1, 0


def at_spec(deliver_at: float) -> str:
    """The ``Nats-Schedule`` value for epoch ``deliver_at``, rounded up to the microsecond."""
    micros = math.ceil(deliver_at * 1_000_000)
    seconds, frac = divmod(micros, 1_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"@at {stamp}.{frac:06d}Z"


def header_safe(text: str, limit: int = 2000) -> str:
    """A header value: one line, bounded."""
    return " ".join(text.split())[:limit]
