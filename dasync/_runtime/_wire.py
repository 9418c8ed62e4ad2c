"""How engine inputs and commands become transport messages, and back.

Every message id is derived from stable routine ids and sequence numbers, so a
message re-sent after a crash has the id of the first send and is deduplicated.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._engine import Call, CancelCall, Complete, StartTimer
from .._errors import MalformedMessage
from ..transports import Message

__all__ = [
    "Envelope",
    "INBOX_PREFIX",
    "KIND",
    "call_message",
    "child_id",
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
INBOX_PREFIX = "_inbox."


def child_id(parent: str, seq: int) -> str:
    """A callee's routine id: its caller's id plus the step that called it."""
    return f"{parent}-{seq}"


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


def parse(message: Message) -> Envelope:
    h = message.headers
    kind = h.get(KIND)
    routine = h.get(ROUTINE)
    if kind not in ("start", "reply", "timer", "cancel") or not routine:
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
        )
    except ValueError as exc:
        raise MalformedMessage(
            f"message {message.msg_id!r}: bad number in headers ({exc})"
        ) from None


def call_message(
    routine_id: str, method: str, args: bytes, reply_to: str, reply_routine: str, reply_seq: int
) -> Message:
    headers = {KIND: "start", ROUTINE: routine_id, METHOD: method}
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
    routine_id: str, own_queue: str, command: Call | CancelCall | StartTimer
) -> tuple[str, Message]:
    """The (queue, message) that a call, cancel or timer command sends."""
    if isinstance(command, Call):
        callee = child_id(routine_id, command.seq)
        return command.service, call_message(
            callee, command.method, command.args, own_queue, routine_id, command.seq
        )
    if isinstance(command, CancelCall):
        raise TypeError("cancel commands are routed by the worker (it knows the callee's service)")
    headers = {KIND: "timer", ROUTINE: routine_id, SEQ: str(command.seq)}
    msg_id = f"timer:{routine_id}:{command.seq}"
    return own_queue, Message(msg_id, headers, deliver_at=command.fire_at)


def cancel_message(callee_id: str) -> Message:
    return Message(f"cancel:{callee_id}", {KIND: "cancel", ROUTINE: callee_id})


EVENT = "dasync-event"
EVENT_ID = "dasync-event-id"


def event_message(topic: str, event_id: str, payload: bytes) -> Message:
    """An event as published; ``event_id`` names it for dedupe and for its handler routines."""
    return Message(f"event:{event_id}", {EVENT: topic, EVENT_ID: event_id}, payload)


def event_id(routine_id: str, seq: int) -> str:
    """The id of the event a routine fired at ``seq``: stable across re-sends."""
    return f"{routine_id}-e{seq}"


def handler_routine_id(event_id: str, handler: str) -> str:
    """One routine per event per subscribing handler: created once, whatever is redelivered."""
    return f"{event_id}-{handler}"
