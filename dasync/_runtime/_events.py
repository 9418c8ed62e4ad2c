"""The runtime's side of events: collecting ``+=`` subscriptions and publishing directly."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .._errors import ContractError
from .._event import EventSpec, Subscription
from ..transports import Transport
from . import _wire

__all__ = ["RuntimeEvents", "not_external", "publish_direct"]


def not_external(event: EventSpec) -> ContractError:
    """Firing a plain ``Event`` from outside its service: it is the service's statement."""
    return ContractError(
        f"{event.topic} is declared dasync.Event: only {event.service} fires it. Declare it "
        f"dasync.ExternalEvent[...] on the contract to let clients and other services fire it"
    )


def publish_direct(transport: Transport, event: EventSpec, payload: bytes) -> asyncio.Future[None]:
    """Fire an event outside any routine (a client, a service's constructor): it has no
    routine to derive its id from, so its id is random (``x<hex>``)."""
    message = _wire.event_message(event.topic, f"x{uuid.uuid4().hex}", payload)
    return asyncio.ensure_future(transport.publish(event.topic, message))


class RuntimeEvents:
    """Receives subscriptions while services are constructed, and direct publishes after."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.hosted: set[str] = set()
        """The services of this runtime: their events are published directly."""
        self.fire: Callable[[EventSpec, bytes], Awaitable[Any]] | None = None
        """How another service's ``ExternalEvent`` is fired (the runtime's client)."""
        self.subscriptions: list[Subscription] = []
        self.constructing: type | None = None
        self.frozen = False

    def subscribe(self, event: EventSpec, handler: Callable[..., Awaitable[Any]]) -> None:
        self.subscriptions.append(self._subscription(event, handler, "+="))

    def unsubscribe(self, event: EventSpec, handler: Callable[..., Awaitable[Any]]) -> None:
        sub = self._subscription(event, handler, "-=")
        if sub not in self.subscriptions:
            raise ContractError(f"{sub.handler} is not subscribed to {event.topic}")
        self.subscriptions.remove(sub)

    def publish(self, event: EventSpec, payload: bytes) -> asyncio.Future[None]:
        """Fired outside any routine (a constructor, ``main()``): a hosted service's own
        event is published; another service's is asked of it, if it is an ``ExternalEvent``."""
        if event.service in self.hosted:
            return publish_direct(self.transport, event, payload)
        if not event.external or self.fire is None:
            raise not_external(event)
        return asyncio.ensure_future(self._fire(self.fire, event, payload))

    @staticmethod
    async def _fire(
        fire: Callable[[EventSpec, bytes], Awaitable[Any]], event: EventSpec, payload: bytes
    ) -> None:
        await fire(event, payload)

    def _subscription(
        self, event: EventSpec, handler: Callable[..., Awaitable[Any]], op: str
    ) -> Subscription:
        where = f"{event.topic} {op} {getattr(handler, '__qualname__', handler)!r}"
        if self.frozen or self.constructing is None:
            raise ContractError(
                f"{where}: subscriptions are made in a service's constructor, before it serves"
            )
        owner = getattr(handler, "__self__", None)
        name = getattr(handler, "__name__", "")
        if type(owner) is not self.constructing:
            raise ContractError(
                f"{where}: the handler must be a method of the service being constructed "
                f"({self.constructing.__qualname__}), e.g. self.on_{event.name}"
            )
        if name.startswith("_") or not inspect.iscoroutinefunction(handler):
            raise ContractError(
                f"{where}: the handler must be a public 'async def' method (it runs as a routine)"
            )
        params = [
            p
            for p in list(inspect.signature(handler).parameters.values())
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if len(params) != 1:
            raise ContractError(f"{where}: the handler must take exactly one argument, the event")
        return Subscription(event, self.constructing, name)
