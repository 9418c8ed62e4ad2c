"""Code that must type-check, with ``assert_type``, and lines that must not (each ends in a
``# type: ignore[code]``: ``warn_unused_ignores`` makes a line that stopped being an error
fail). Checked by ``test_typing.py`` with mypy, never imported by the suite."""

# pyright: reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, assert_type

import dasync
import dasync.testing
from dasync import Client, RoutineHandle


@dataclass
class Trip:
    id: str


@dataclass
class Receipt:
    total: int


class Trips(Protocol):
    trip_booked: dasync.Event[Trip] = dasync.Event()
    trip_offered: dasync.ExternalEvent[Trip] = dasync.ExternalEvent()

    async def book(self, trip_id: str) -> Trip: ...


class Shop(Protocol):
    async def buy(self, item: str, count: int = 1) -> Receipt: ...

    async def ping(self) -> None: ...

    async def find(self, *, sku: str) -> list[str]: ...


class TripService(Trips):
    async def book(self, trip_id: str) -> Trip:
        trip = Trip(trip_id)
        self.trip_booked(trip)
        self.trip_booked("no")  # type: ignore[arg-type]
        return trip


class Untyped(Protocol):
    trip_booked: dasync.Event[Trip]  # no value: abstract for type checkers


class UntypedService(Untyped):
    pass


def services() -> None:
    TripService()  # not abstract: the event has a value in the contract
    UntypedService()  # type: ignore[abstract]
    svc = dasync.testing.instantiate(TripService)
    assert_type(svc, TripService)
    assert_type(dasync.testing.fired(svc), list[tuple[str, Any]])
    assert_type(dasync.testing.fired(svc, "trip_booked"), list[Any])
    assert_type(dasync.testing.clock_of(svc), dasync.testing.VirtualClock)


async def starts(client: Client) -> None:
    assert_type(await client.start(Shop.buy, "book", 2), RoutineHandle[Receipt])
    assert_type(await client.start(Shop.buy, "book"), RoutineHandle[Receipt])
    assert_type(await client.start(Shop.buy, "book", count=2), RoutineHandle[Receipt])
    assert_type(await client.start(Shop.buy, "b", 2, routine_id="o-1"), RoutineHandle[Receipt])
    assert_type(await client.start(Shop.ping), RoutineHandle[None])
    assert_type(await client.start(Shop.ping, routine_id="p-1"), RoutineHandle[None])
    assert_type(await client.start(Shop.find, sku="x"), RoutineHandle[list[str]])
    handle: RoutineHandle[Receipt] = await client.start(Shop.buy, "book", 2)
    assert_type(await handle.result(), Receipt)
    assert_type(client.handle(Shop.buy, "o-1"), RoutineHandle[Receipt])

    await client.start(Shop.buy, 2)  # type: ignore[arg-type]
    await client.start(Shop.buy, "book", "2")  # type: ignore[arg-type]
    await client.start(Shop.buy, 2, routine_id="o-2")  # type: ignore[arg-type]
    await client.start(Shop.buy, "book", colour="red")  # type: ignore[call-arg]
    await client.start(Shop.buy)  # type: ignore[arg-type]
    await client.start(Shop.ping, 1)  # type: ignore[arg-type]
    wrong: RoutineHandle[str] = await client.start(Shop.buy, "book")  # type: ignore[arg-type]
    assert_type(wrong, RoutineHandle[str])
    assert_type(await client.start(Shop.buy, "book"), RoutineHandle[str])  # type: ignore[assert-type]
