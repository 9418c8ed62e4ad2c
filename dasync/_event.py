"""Domain events: ``dasync.Event[T]`` declared on contracts, fired at commit, subscribed with ``+=``.

On a contract, ``customer_registered: dasync.Event[CustomerInfo]`` declares an
event. The implementing service fires it with ``self.customer_registered(info)``;
inside a routine the event is put in the step's outbox and leaves only when the
step commits. Another service subscribes in its constructor with
``customers.customer_registered += self.on_registered``; the handler, a public
``async def`` of the subscriber, runs as a routine once per event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._errors import ContractError

__all__ = ["Event", "EventSpec", "Subscription"]

T = TypeVar("T")


@dataclass(frozen=True)
class EventSpec:
    """An event declared on a contract: its service, name and payload type."""

    service: str
    name: str
    payload: Any

    @property
    def topic(self) -> str:
        return f"{self.service}.{self.name}"


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


class _Fired:
    """What firing returns: already done inside a routine, a publish to await outside one."""

    __slots__ = ("_task",)

    def __init__(self, task: asyncio.Future[None] | None) -> None:
        self._task = task

    def __await__(self) -> Generator[Any, None, None]:
        if self._task is not None:
            yield from self._task.__await__()
