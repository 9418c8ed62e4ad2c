"""How engine inputs and commands become transport messages, and back.

Every message id is derived from stable routine ids and sequence numbers, so a
message re-sent after a crash has the id of the first send and is deduplicated.
"""

from __future__ import annotations

from dataclasses import dataclass

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
from ..transports import Message

__all__ = [
    "Envelope",
    "INBOX_PREFIX",
    "KIND",
    "call_message",
    "callee_of",
    "parse",
    "reply_message",
]

KIND = "dasync-kind"
ROUTINE = "dasync-routine"
METHOD = "dasync-method"
REPLY_TO = "dasync-reply-to"
REPLY_ROUTINE = "dasync-reply-routine"
REPLY_SEQ = "dasync-reply-seq"
SEQ = "dasync-seq"
OK = "dasync-ok"
DEPTH = "dasync-depth"
CONTEXT = "dasync-context"
CANCEL_ID = "dasync-cancel-id"
INBOX_PREFIX = "_inbox."
KINDS = ("start", "reply", "timer", "cancel", "retry")


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
    seq: int = 0
    ok: bool = True
    depth: int = 0
    context: bytes = b""
    cancel_id: str = ""


def parse(message: Message) -> Envelope:
    h = message.headers
    kind = h.get(KIND)
    routine = h.get(ROUTINE)
    if kind not in KINDS or not routine:
        raise MalformedMessage(
            f"message {message.msg_id!r} lacks valid {KIND}/{ROUTINE} headers: {dict(h)!r}"
        )
    try:
        return Envelope(
            kind=kind,
            routine_id=routine,
            method=h.get(METHOD, ""),
            reply_to=h.get(REPLY_TO, ""),
            reply_routine=h.get(REPLY_ROUTINE, ""),
            reply_seq=int(h.get(REPLY_SEQ, "0")),
            seq=int(h.get(SEQ, "0")),
            ok=h.get(OK, "1") == "1",
            depth=int(h.get(DEPTH, "0")),
            context=h.get(CONTEXT, "").encode(),
            cancel_id=h.get(CANCEL_ID, ""),
        )
    except ValueError as exc:
        raise MalformedMessage(
            f"message {message.msg_id!r}: bad number in headers ({exc})"
        ) from None


def call_message(
    routine_id: str,
    method: str,
    args: bytes,
    reply_to: str,
    reply_routine: str,
    reply_seq: int,
    *,
    depth: int = 0,
    context: bytes = b"",
) -> Message:
    headers = {KIND: "start", ROUTINE: routine_id, METHOD: method}
    if depth:
        headers[DEPTH] = str(depth)
    if context:
        headers[CONTEXT] = context.decode()
    if reply_to:
        headers.update(
            {REPLY_TO: reply_to, REPLY_ROUTINE: reply_routine, REPLY_SEQ: str(reply_seq)}
        )
    return Message(f"call:{routine_id}", headers, args)


def reply_message(env: Envelope, callee_id: str, done: Complete) -> Message:
    headers = {
        KIND: "reply",
        ROUTINE: env.reply_routine,
        SEQ: str(env.reply_seq),
        OK: "1" if done.ok else "0",
    }
    return Message(f"reply:{callee_id}", headers, done.payload)


def outgoing(
    routine_id: str, own_queue: str, command: Call | StartTimer | Postpone, depth: int = 0
) -> tuple[str, Message]:
    """The (queue, message) that a call, timer or retry command sends.

    ``depth`` is the sending routine's call depth; its callees are one deeper.
    """
    if isinstance(command, Call):
        callee = callee_of(routine_id, command)
        return command.service, call_message(
            callee,
            command.method,
            command.args,
            own_queue,
            routine_id,
            command.seq,
            depth=depth + 1,
            context=command.context,
        )
    if isinstance(command, Postpone):
        headers = {KIND: "retry", ROUTINE: routine_id, SEQ: str(command.attempt)}
        msg_id = f"retry:{routine_id}:{command.attempt}"
        return own_queue, Message(msg_id, headers, deliver_at=command.due)
    headers = {KIND: "timer", ROUTINE: routine_id, SEQ: str(command.seq)}
    msg_id = f"timer:{routine_id}:{command.seq}"
    return own_queue, Message(msg_id, headers, deliver_at=command.fire_at)


def cancel_message(callee_id: str, cancel_id: str) -> Message:
    """A request to cancel ``callee_id``; each cancel has its own id (a routine that caught
    one cancel can be cancelled again)."""
    headers = {KIND: "cancel", ROUTINE: callee_id, CANCEL_ID: cancel_id}
    return Message(f"cancel:{callee_id}:{cancel_id}", headers)


EVENT = "dasync-event"
EVENT_ID = "dasync-event-id"


def event_message(topic: str, event_id: str, payload: bytes) -> Message:
    """An event as published; ``event_id`` names it for dedupe and for its handler routines."""
    return Message(f"event:{event_id}", {EVENT: topic, EVENT_ID: event_id}, payload)


def event_id_of(routine_id: str, command: Emit) -> str:
    """The id of the event a routine fired: stable across re-sends."""
    return command.event_id or legacy_event_id(routine_id, command.seq)


def handler_routine_id(event_id: str, subscriber: str, handler: str) -> str:
    """One routine per event per subscribing handler: created once, whatever is redelivered."""
    return handler_id(event_id, subscriber, handler)
