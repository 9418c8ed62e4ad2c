"""A fire request: someone asks a service to publish one of its ``ExternalEvent``\\ s.

An event is its service's statement, so nobody else publishes on its topic (the
NATS permissions say the same). A contract that declares ``ExternalEvent[T]``
lets others ask: the request arrives in the service's queue like a call, the
worker checks that the event is one its contract opens to outsiders and that
the payload is a ``T``, and publishes it under an id derived from who asked and
the fire's id (``_wire.fired_event_id``). A redelivered request is published
again under the same id, which the event stream's dedupe and the handlers'
routine ids (derived from the event id) turn into one event.
"""

from __future__ import annotations

from .._codec import decode_event, encode_event
from .._contract import ServiceSpec
from .._engine import check_user_id
from .._errors import UnknownService
from ..transports import Message, Origin, Transport
from . import _wire
from ._authority import encode_caller
from ._disposition import Refused

__all__ = ["publish_fired"]


async def publish_fired(
    transport: Transport, spec: ServiceSpec, env: _wire.Envelope, body: bytes
) -> str:
    """Publish the event ``env`` asks for; the event's id. ``Refused`` names what was wrong
    with the request (the event, the id or the payload): it is set aside, never retried."""
    event = spec.events.get(env.method)
    if event is None or not event.external:
        what = "declares no event" if event is None else "does not open the event"
        raise Refused(
            f"{env.origin} asked {spec.name} to fire {env.method!r}, but its contract {what} "
            f"to outsiders (declare it dasync.ExternalEvent[...])"
        )
    try:
        if env.origin.kind != Origin.SERVICE:  # a routine's fire id is its event's id
            check_user_id(env.routine_id)
        payload = encode_event(event, decode_event(event, body))  # hostile until checked
    except Exception as exc:
        raise Refused(f"{env.origin} asked to fire {event.topic}: {exc}") from None
    event_id = _wire.fired_event_id(env.origin, env.routine_id)
    message = _wire.event_message(event.topic, event_id, payload)
    message = Message(
        message.msg_id, {**message.headers, _wire.FIRED_BY: encode_caller(env.origin)}, payload
    )
    try:
        await transport.publish(event.topic, message)
    except UnknownService:  # no subscriber declared the topic yet: it is declared
        await transport.declare_topic(event.topic)
        await transport.publish(event.topic, message)
    return event_id
