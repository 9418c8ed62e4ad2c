"""Who may send what: the checks a worker makes before a message changes a routine.

The sender (``Envelope.origin``) is what the transport vouches for: on NATS the
subject a message arrived on, which the server's permissions let only that
sender publish to. Headers only say *what* a message claims; these rules decide
whether that sender may claim it. One rule per message kind (``RULES``):

* **start**: a service may start only the routines of its own calls (ids whose
  last segment begins with its name, see ``dasync._engine._ids``), and its reply
  goes to its own queue; a client may start only ids it may choose (no ``/``),
  with its reply to one of its own inboxes;
* **reply**: only from the service the routine called at that sequence number,
  naming the callee routine the journal says it called;
* **cancel**: from the routine's caller, or an operator;
* **timer**, **retry**: from the service itself;
* **signal**: from anyone the transport lets reach the service (a client, an
  operator, a service): a signal is news *for* a routine, which decides what it
  accepts, and the routine takes each (sender, signal id) once.

A refused message names the sender and what it claimed; it becomes a dead letter
and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .._engine import owner_of
from ..transports import Origin, is_inbox, split_inbox
from ._disposition import Refused
from ._wire import Envelope

__all__ = ["CALLER", "Refused", "RULES", "Routine", "caller_of", "check", "check_start"]

CALLER = "caller"
"""The key of a routine's start metadata naming its caller (``kind:name``)."""


@dataclass(frozen=True, slots=True)
class Routine:
    """What the checks need to know about the addressed routine."""

    service: str
    """The service hosting it (the receiving worker's)."""
    meta: Mapping[str, str]
    """Its start's metadata (who called it)."""
    call_at: Callable[[int], tuple[str, str] | None]
    """``seq -> (service called, callee routine id)`` for the calls in its journal."""


def encode_caller(origin: Origin) -> str:
    return f"{origin.kind}:{origin.name}"


def caller_of(meta: Mapping[str, str]) -> Origin | None:
    """Who started a routine, from its start's metadata (``None``: nobody, e.g. an event).

    Journals written before callers were recorded name only the reply queue.
    """
    recorded = meta.get(CALLER)
    if recorded:
        kind, _, name = recorded.partition(":")
        return Origin(kind, name)
    reply_to = meta.get("reply_to", "")
    if not reply_to:
        return None
    if is_inbox(reply_to):
        try:
            return Origin.client(split_inbox(reply_to)[0])
        except ValueError:
            return Origin(Origin.CLIENT, "")  # an old inbox name: any client
    return Origin.service(reply_to)


def check_start(env: Envelope, service: str) -> None:
    """A start may come from the service whose call it is, or a client for an id of its own."""
    origin, routine_id = env.origin, env.routine_id
    owner = owner_of(routine_id)
    if origin.kind == Origin.SERVICE:
        if owner != origin.name:
            raise Refused(
                f"{origin} may start only the routines of its own calls (ids ending in "
                f"'/{origin.name}.<method>.<n>'), not {routine_id!r} of {service}"
            )
        return
    if origin.kind == Origin.CLIENT:
        if owner is not None:
            raise Refused(
                f"{origin} may not start {routine_id!r} of {service}: ids with '/' are those "
                f"of calls made by routines"
            )
        if env.reply_to and not _inbox_of(env.reply_to, origin.name):
            raise Refused(
                f"{origin} asked for the result of {routine_id!r} to go to {env.reply_to!r}, "
                f"which is not one of its inboxes"
            )
        return
    raise Refused(f"{origin} may not start routines ({routine_id!r} of {service})")


def _inbox_of(queue: str, identity: str) -> bool:
    try:
        return split_inbox(queue)[0] == identity
    except ValueError:
        return False


def _check_reply(env: Envelope, routine: Routine) -> None:
    origin = env.origin
    called = routine.call_at(env.seq)
    if called is None:
        raise Refused(
            f"{origin} sent a reply for call {env.seq} of {env.routine_id!r}, which made no "
            f"such call"
        )
    service, callee = called
    if origin.kind != Origin.SERVICE or origin.name != service or env.callee != callee:
        raise Refused(
            f"{origin} sent a reply (as {env.callee!r}) for call {env.seq} of "
            f"{env.routine_id!r}, which called {service} ({callee!r})"
        )


def _check_cancel(env: Envelope, routine: Routine) -> None:
    origin = env.origin
    if origin.kind == Origin.OPERATOR:
        return
    caller = caller_of(routine.meta)
    if caller is not None and origin.kind == caller.kind and caller.name in ("", origin.name):
        return
    raise Refused(
        f"{origin} may not cancel {env.routine_id!r} of {routine.service}: it was started by "
        f"{caller or 'no caller'}"
    )


def _check_own(env: Envelope, routine: Routine) -> None:
    if env.origin != Origin.service(routine.service):
        raise Refused(
            f"{env.origin} sent a {env.kind} for {env.routine_id!r}; only {routine.service} "
            f"itself sends those"
        )


def _check_signal(env: Envelope, routine: Routine) -> None:
    if not env.signal or not env.signal_id or len(env.signal) > 128 or len(env.signal_id) > 200:
        raise Refused(
            f"{env.origin} sent a signal for {env.routine_id!r} without a valid name and id "
            f"({env.signal!r}, {env.signal_id!r})"
        )


RULES: dict[str, Callable[[Envelope, Routine], None]] = {
    "reply": _check_reply,
    "cancel": _check_cancel,
    "timer": _check_own,
    "retry": _check_own,
    "signal": _check_signal,
}
"""The check of each kind of message addressed to an existing routine (``start`` is
checked before the routine exists: ``check_start``)."""


def check(env: Envelope, routine: Routine) -> None:
    """Raise ``Refused`` if ``env``'s sender may not send it to ``routine``."""
    RULES[env.kind](env, routine)
