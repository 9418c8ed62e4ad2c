"""How engine inputs and commands become transport messages, and back.

Every message id is derived from stable routine ids and sequence numbers, so a
message re-sent after a crash has the id of the first send and is deduplicated.
A service tags its ids with its own key (``message_id``): anyone may publish a
message under a predictable id, but not under one that the server would take
for a message the service is going to send, and so drop the real one.

Who sent a message is not in its headers: the transport vouches for it
(``Envelope.origin``), and ``_authority`` decides what each sender may say.
Every message carries the wire format's version (``VERSION``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from .._engine import (
    Call,
    CancelCall,
    Complete,
    Emit,
    Postpone,
    StartTimer,
    handler_id,
    legacy_child_id,
    legacy_event_id,
)
from .._errors import MalformedMessage
from ..transports import INBOX_PREFIX, UNKNOWN_ORIGIN, Message, Origin, check_name
from . import _tracing

__all__ = [
    "Envelope",
    "INBOX_PREFIX",
    "message_id",
    "KIND",
    "call_message",
    "callee_of",
    "parse",
    "reply_message",
]

WIRE_VERSION = "2"
"""Version of the headers below; a worker refuses messages of any other version."""
VERSION = "dasync-v"
KIND = "dasync-kind"
ROUTINE = "dasync-routine"
METHOD = "dasync-method"
REPLY_TO = "dasync-reply-to"
REPLY_ROUTINE = "dasync-reply-routine"
REPLY_SEQ = "dasync-reply-seq"
REPLY_AT = "dasync-reply-at"
"""A call's: the lane of the caller's worker (``Affinity``), where its reply should go."""
SEQ = "dasync-seq"
OK = "dasync-ok"
DEPTH = "dasync-depth"
CONTEXT = "dasync-context"
CANCEL_ID = "dasync-cancel-id"
CALLEE = "dasync-callee"
SIGNAL = "dasync-signal"
SIGNAL_ID = "dasync-signal-id"
KINDS = ("start", "reply", "timer", "cancel", "retry", "fire", "signal")


def callee_of(routine_id: str, command: Call | CancelCall) -> str:
    """The routine id a call (or the cancel of one) addresses; journals before ids were
    journaled derive it from the caller's id and the call's sequence number."""
    if command.callee:
        return command.callee
    return legacy_child_id(routine_id, command.seq if isinstance(command, Call) else command.target)


@dataclass(frozen=True, slots=True)
class Envelope:
    """The routing part of a message, parsed and checked."""

    kind: str
    routine_id: str
    method: str = ""
    reply_to: str = ""
    reply_routine: str = ""
    reply_seq: int = 0
    reply_at: str = ""
    """A call's: the caller's worker lane, where the reply goes (a routing hint: the
    reply's origin and the caller's service do not depend on it)."""
    seq: int = 0
    ok: bool = True
    depth: int = 0
    context: bytes = b""
    cancel_id: str = ""
    callee: str = ""
    """A reply's: the routine of the callee that answers."""
    signal: str = ""
    """A signal's name."""
    signal_id: str = ""
    """A signal's own id (chosen by its sender: the same id twice is one signal)."""
    origin: Origin = field(default=UNKNOWN_ORIGIN)
    """Who sent it, as the transport vouches (never read from headers)."""


def message_id(base: str, key: bytes) -> str:
    """``base`` tagged with a digest keyed by ``key``: stable (a re-send has the id of the
    first send) and impossible to produce without the key."""
    if not key:
        return base
    tag = hashlib.blake2b(base.encode(), key=key, digest_size=8).hexdigest()
    return f"{base}#{tag}"


def parse(message: Message, origin: Origin = UNKNOWN_ORIGIN) -> Envelope:
    h = message.headers
    kind = h.get(KIND)
    routine = h.get(ROUTINE)
    if kind not in KINDS or not routine:
        raise MalformedMessage(
            f"message {message.msg_id!r} lacks valid {KIND}/{ROUTINE} headers: {dict(h)!r}"
        )
    version = h.get(VERSION)
    if version != WIRE_VERSION:
        raise MalformedMessage(
            f"message {message.msg_id!r} is of wire format version {version or '(none)'}; "
            f"this worker reads version {WIRE_VERSION} (deploy the same dasync release "
            f"everywhere, or drain the queue before upgrading)"
        )
    reply_at = h.get(REPLY_AT, "")
    if reply_at:
        try:
            check_name("worker lane", reply_at)
        except ValueError as exc:
            raise MalformedMessage(f"message {message.msg_id!r}: {exc}") from None
    try:
        return Envelope(
            kind=kind,
            routine_id=routine,
            method=h.get(METHOD, ""),
            reply_to=h.get(REPLY_TO, ""),
            reply_routine=h.get(REPLY_ROUTINE, ""),
            reply_seq=int(h.get(REPLY_SEQ, "0")),
            reply_at=reply_at,
            seq=int(h.get(SEQ, "0")),
            ok=h.get(OK, "1") == "1",
            depth=int(h.get(DEPTH, "0")),
            context=h.get(CONTEXT, "").encode(),
            cancel_id=h.get(CANCEL_ID, ""),
            callee=h.get(CALLEE, ""),
            signal=h.get(SIGNAL, ""),
            signal_id=h.get(SIGNAL_ID, ""),
            origin=origin,
        )
    except ValueError as exc:
        raise MalformedMessage(
            f"message {message.msg_id!r}: bad number in headers ({exc})"
        ) from None


def call_message(
    routine_id: str,
    method: str,
    args: bytes,
    reply_routine: str,
    reply_seq: int,
    *,
    msg_id: str,
    reply_to: str = "",
    depth: int = 0,
    context: bytes = b"",
    propagate: bool = True,
    reply_at: str = "",
    once: bool = False,
) -> Message:
    """A call (``start``). A service's reply goes to its caller's own queue, which the
    callee learns from the message's origin; only a client names its inbox (``reply_to``).

    ``propagate``: a client's start carries the caller's current trace context (W3C
    ``traceparent``), so the routine joins the caller's trace; a worker's calls get
    theirs from the span that sends them instead. ``once``: a call from a service, whose
    routine id derives from its caller's, so that it has one start (``Message.once``)."""
    headers = {VERSION: WIRE_VERSION, KIND: "start", ROUTINE: routine_id, METHOD: method}
    if propagate:
        _tracing.inject_current(headers)
    if depth:
        headers[DEPTH] = str(depth)
    if context:
        headers[CONTEXT] = context.decode()
    if reply_to:
        headers[REPLY_TO] = reply_to
    if reply_routine:
        headers.update({REPLY_ROUTINE: reply_routine, REPLY_SEQ: str(reply_seq)})
    if reply_at:
        headers[REPLY_AT] = reply_at
    return Message(msg_id, headers, args, once=routine_id if once else "")


def client_start_id(routine_id: str) -> str:
    """A client's start: random, so nobody can take its id first; the callee's journal (not
    the server's dedupe) makes a second start of one routine id run nothing."""
    return f"start:{routine_id}:{secrets.token_hex(8)}"


def reply_message(
    reply_routine: str,
    reply_seq: int,
    callee_id: str,
    done: Complete,
    key: bytes,
    *,
    variant: str = "",
    run: str = "",
) -> Message:
    """The reply of routine ``callee_id``; ``variant`` distinguishes replies that are not
    its outcome (a failure the worker reports for a message it set aside), ``run`` the
    run of the routine id (journaled with its start): a re-send of a reply keeps its id,
    but the reply of a routine id started again after its journal was removed is not
    dropped by the server's dedupe as the earlier run's."""
    headers = {
        VERSION: WIRE_VERSION,
        KIND: "reply",
        ROUTINE: reply_routine,
        SEQ: str(reply_seq),
        OK: "1" if done.ok else "0",
        CALLEE: callee_id,
    }
    base = f"reply:{callee_id}@{run}" if run else f"reply:{callee_id}"
    if variant:
        base = f"{base}:{variant}"
    return Message(message_id(base, key), headers, done.payload)


def outgoing(
    routine_id: str,
    own_queue: str,
    command: Call | StartTimer | Postpone,
    key: bytes,
    depth: int = 0,
    lane: str = "",
) -> tuple[str, Message]:
    """The (queue, message) that a call, timer or retry command sends.

    ``depth`` is the sending routine's call depth; its callees are one deeper. ``lane``:
    the sending worker's (``Affinity``), where a call asks its reply to go.
    """
    if isinstance(command, Call):
        callee = callee_of(routine_id, command)
        return command.service, call_message(
            callee,
            command.method,
            command.args,
            routine_id,
            command.seq,
            msg_id=message_id(f"call:{callee}", key),
            depth=depth + 1,
            context=command.context,
            propagate=False,
            reply_at=lane,
            once=True,
        )
    if isinstance(command, Postpone):
        headers = {VERSION: WIRE_VERSION, KIND: "retry", ROUTINE: routine_id}
        headers[SEQ] = str(command.attempt)
        msg_id = message_id(f"retry:{routine_id}:{command.attempt}", key)
        return own_queue, Message(msg_id, headers, deliver_at=command.due)
    headers = {VERSION: WIRE_VERSION, KIND: "timer", ROUTINE: routine_id, SEQ: str(command.seq)}
    msg_id = message_id(f"timer:{routine_id}:{command.seq}", key)
    return own_queue, Message(msg_id, headers, deliver_at=command.fire_at)


def cancel_message(callee_id: str, cancel_id: str, key: bytes = b"") -> Message:
    """A request to cancel ``callee_id``; each cancel has its own id (a routine that caught
    one cancel can be cancelled again)."""
    headers = {VERSION: WIRE_VERSION, KIND: "cancel", ROUTINE: callee_id, CANCEL_ID: cancel_id}
    return Message(message_id(f"cancel:{callee_id}:{cancel_id}", key), headers)


def signal_message(routine_id: str, name: str, signal_id: str, payload: bytes) -> Message:
    """A signal ``name`` for ``routine_id``; its message id is random (as a client's start),
    and the routine takes each (sender, ``signal_id``) once."""
    headers = {
        VERSION: WIRE_VERSION,
        KIND: "signal",
        ROUTINE: routine_id,
        SIGNAL: name,
        SIGNAL_ID: signal_id,
    }
    _tracing.inject_current(headers)
    return Message(f"signal:{signal_id}:{secrets.token_hex(8)}", headers, payload)


EVENT = "dasync-event"
EVENT_ID = "dasync-event-id"


def event_message(topic: str, event_id: str, payload: bytes) -> Message:
    """An event as published; ``event_id`` names it for dedupe and for its handler routines."""
    headers = {VERSION: WIRE_VERSION, EVENT: topic, EVENT_ID: event_id}
    return Message(f"event:{event_id}", headers, payload)


def event_id_of(routine_id: str, command: Emit) -> str:
    """The id of the event a routine fired: stable across re-sends."""
    return command.event_id or legacy_event_id(routine_id, command.seq)


def handler_routine_id(event_id: str, subscriber: str, handler: str) -> str:
    """One routine per event per subscribing handler: created once, whatever is redelivered."""
    return handler_id(event_id, subscriber, handler)


FIRED_BY = "dasync-fired-by"
"""On an event a service published for someone else (an ``ExternalEvent`` fired from
outside): who asked (``kind:name``), as the transport vouched for it."""


def fire_message(fire_id: str, event: str, payload: bytes, msg_id: str) -> Message:
    """A request to the service that declares ``event`` (an ``ExternalEvent``) to publish
    it with ``payload``; ``fire_id`` names the fire, so a repeated one is one event."""
    headers = {VERSION: WIRE_VERSION, KIND: "fire", ROUTINE: fire_id, METHOD: event}
    _tracing.inject_current(headers)
    return Message(msg_id, headers, payload)


def client_fire_id(fire_id: str) -> str:
    """A client's fire request: a random message id (as ``client_start_id``); the event's
    own id, derived from the fire id, is what makes a repeated fire one event."""
    return f"fire:{fire_id}:{secrets.token_hex(8)}"


def fired_event_id(origin: Origin, fire_id: str) -> str:
    """The id under which a service publishes an event fired by ``origin`` as ``fire_id``:
    one per (sender, fire id), so two senders cannot collide and neither can choose the id
    of an event the service fires itself (those name its routines, these start with
    ``x``)."""
    digest = hashlib.blake2b(
        f"{origin.kind}:{origin.name}\n{fire_id}".encode(), digest_size=16
    ).hexdigest()
    return f"x{digest}"
