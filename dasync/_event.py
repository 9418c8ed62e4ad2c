"""Domain events: ``dasync.Event[T]`` on contracts, fired at commit, subscribed with ``+=``.

On a contract, ``customer_registered: dasync.Event[CustomerInfo]`` declares an
event. Give it the value ``dasync.Event()`` (``= dasync.ExternalEvent()`` for an
external one) when a service subclasses the contract: mypy and pyright call a
Protocol attribute declared without a value abstract, so the subclass could not be
instantiated without a ``# type: ignore``; the value is only a marker.

The implementing service fires it with ``self.customer_registered(info)``; inside a
routine the event is put in the step's outbox and leaves only when the step commits.
Another service subscribes in its constructor with
``customers.customer_registered += self.on_registered``; the handler, a public
``async def`` of the subscriber, runs as a routine once per event.

An event is its service's statement, so only the service publishes it. A contract
may let outsiders (clients, the HTTP gateway, other services) fire one by declaring
it ``dasync.ExternalEvent[T]``: their fire is a request to the service, which checks
the payload and publishes the event itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from ._engine import current_instance, evicting_instance
from ._errors import ContractError

__all__ = [
    "BoundEvent",
    "Event",
    "EventAttribute",
    "EventBinding",
    "EventSpec",
    "ExternalEvent",
    "Subscription",
    "split_topic",
]

T = TypeVar("T")


@dataclass(frozen=True)
class EventSpec:
    """An event declared on a contract: its service, name and payload type."""

    service: str
    name: str
    payload: Any
    external: bool = False
    """Declared ``ExternalEvent``: others may ask the service to fire it."""

    @property
    def topic(self) -> str:
        return f"{self.service}.{self.name}"


def split_topic(topic: str) -> tuple[str, str]:
    """``(service, event)`` of a topic made by ``EventSpec.topic`` (event names have no dot)."""
    service, _, name = topic.rpartition(".")
    return service, name


@dataclass(frozen=True)
class Subscription:
    """``event`` handled by the method ``handler`` of the subscribing service class."""

    event: EventSpec
    subscriber: type
    handler: str


class Event(Generic[T]):
    """A domain event of type ``T``, declared as a contract attribute.

    On a service: ``self.event(payload)`` fires it (durably inside a routine;
    ``await`` it outside one). On a proxy: ``proxy.event += self.handler``
    subscribes a public ``async def`` method of the constructing service.
    """

    def __call__(self, payload: T) -> _Fired:
        raise ContractError(
            "this event is a declaration; fire it on the service instance that dasync hosts"
        )

    def __iadd__(self, handler: Callable[[T], Awaitable[Any]]) -> Event[T]:
        raise ContractError("subscribe with += on a contract proxy injected by dasync")

    def __isub__(self, handler: Callable[[T], Awaitable[Any]]) -> Event[T]:
        raise ContractError("unsubscribe with -= on a contract proxy injected by dasync")


class ExternalEvent(Event[T]):
    """An event that clients, the gateway and other services may also fire.

    Their fire is sent to the service as a request; the service validates the payload
    and publishes the event under an id derived from the request, so a fire repeated
    with the same id (a retried HTTP POST with its ``Idempotency-Key``) is one event.
    """


class _Fired:
    """What firing returns: already done inside a routine, a publish to await outside one."""

    __slots__ = ("_task",)

    def __init__(self, task: asyncio.Future[None] | None) -> None:
        self._task = task

    def __await__(self) -> Generator[Any, None, None]:
        if self._task is not None:
            yield from self._task.__await__()


class EventBinding(Protocol):
    """What event attributes of proxies and hosted services delegate to (the runtime)."""

    def subscribe(self, event: EventSpec, handler: Callable[..., Awaitable[Any]]) -> None: ...

    def unsubscribe(self, event: EventSpec, handler: Callable[..., Awaitable[Any]]) -> None: ...

    def publish(self, event: EventSpec, payload: bytes) -> asyncio.Future[None]:
        """Publish directly (outside a routine); the future completes once it is stored."""
        ...


class BoundEvent(Event[T]):
    """An event attribute of a proxy or of a hosted service instance."""

    __slots__ = ("_spec", "_binding")

    def __init__(self, spec: EventSpec, binding: EventBinding | None) -> None:
        self._spec = spec
        self._binding = binding

    @property
    def spec(self) -> EventSpec:
        return self._spec

    def __call__(self, payload: T) -> _Fired:
        from ._codec import encode_event  # the codec imports contracts, which import us

        data = encode_event(self._spec, payload)
        inst = current_instance()
        if inst is not None:
            if self._spec.service != inst.service and not self._spec.external:
                raise ContractError(
                    f"{inst.service} fired {self._spec.topic}, an event of another service: "
                    f"declare it dasync.ExternalEvent[...] on {self._spec.service}'s contract "
                    f"to let other services fire it"
                )
            # leaves with the step's commit: published, or asked of its service if not ours
            inst.emit(self._spec.topic, data)
            return _Fired(None)
        if evicting_instance() is not None:
            # a finally block run because its routine is dropped from memory: like any
            # command issued while unwinding, the event is not kept (it fired, or will fire,
            # in the routine's real run)
            return _Fired(None)
        if self._binding is None:
            raise ContractError(
                f"{self._spec.topic} was fired outside a routine on an object that is not "
                f"connected to a runtime; fire it from a service method or a client proxy"
            )
        return _Fired(self._binding.publish(self._spec, data))

    def __iadd__(self, handler: Callable[[T], Awaitable[Any]]) -> BoundEvent[T]:
        self._require_binding("subscribe with +=").subscribe(self._spec, handler)
        return self

    def __isub__(self, handler: Callable[[T], Awaitable[Any]]) -> BoundEvent[T]:
        self._require_binding("unsubscribe with -=").unsubscribe(self._spec, handler)
        return self

    def _require_binding(self, what: str) -> EventBinding:
        if self._binding is None:
            raise ContractError(
                f"cannot {what} on {self._spec.topic} here: subscriptions are made in a service "
                f"constructor, on a contract proxy that dasync injected"
            )
        return self._binding

    def __repr__(self) -> str:
        return f"<dasync event {self._spec.topic}>"


class EventAttribute:
    """Class attribute of proxy stubs: ``proxy.event`` is a ``BoundEvent``; ``+=`` sets it back."""

    def __init__(self, spec: EventSpec) -> None:
        self._spec = spec

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return BoundEvent(self._spec, getattr(obj, "_dasync_events", None))

    def __set__(self, obj: Any, value: Any) -> None:
        if not (isinstance(value, BoundEvent) and value.spec == self._spec):
            raise AttributeError(
                f"{self._spec.topic} is an event: subscribe with +=, unsubscribe with -="
            )
