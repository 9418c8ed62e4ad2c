"""``dasync.testing.instantiate``: unit tests of real services, with no runtime.

Plain asyncio is the oracle: each test runs the same code with the fakes wired directly
(``_plain``) and checks that ``instantiate`` gives the same outcome, only faster (time is
virtual) and with the routine-only APIs (``call_id``, events, deterministic helpers)
working.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import pytest

import dasync
import dasync.testing
from dasync.testing import clock_of, fired, instantiate


@dataclass
class Trip:
    id: str
    seats: int


class Payments(Protocol):
    async def charge(self, key: str, amount: int) -> str: ...


class Trips(Protocol):
    trip_booked: dasync.Event[Trip] = dasync.Event()
    trip_cancelled: dasync.Event[str]  # no value: still a declaration at runtime

    async def book(self, trip_id: str, seats: int) -> str: ...

    async def book_slowly(self, trip_id: str) -> str: ...

    async def ids(self) -> list[str]: ...

    async def hold(self, seconds: float) -> str: ...

    async def twice(self, trip_id: str) -> list[str]: ...

    async def mutate(self, seats: list[int]) -> list[int]: ...

    async def charge_all(self, amounts: list[int]) -> list[str]: ...


class Booking(Exception):
    pass


class TripService(Trips):
    def __init__(self, payments: Payments) -> None:
        self.payments = payments
        self.log: list[str] = []

    async def book(self, trip_id: str, seats: int) -> str:
        if seats <= 0:
            raise Booking(f"no seats for {trip_id}")
        receipt = await self.payments.charge(dasync.call_id(), seats * 10)
        self.trip_booked(Trip(trip_id, seats))
        return receipt

    async def book_slowly(self, trip_id: str) -> str:
        await asyncio.sleep(3)
        self.log.append(f"slept {trip_id}")
        return await self.book(trip_id, 1)  # inline, as plain asyncio

    async def ids(self) -> list[str]:
        return [str(dasync.uuid4()), dasync.now().isoformat(), repr(dasync.random())]

    async def hold(self, seconds: float) -> str:
        try:
            async with asyncio.timeout(seconds):
                await asyncio.sleep(3600)
            return "woke"
        except TimeoutError:
            self.trip_cancelled("held")
            return "timed out"

    async def twice(self, trip_id: str) -> list[str]:
        return list(await asyncio.gather(self.book(trip_id, 1), self.book(trip_id, 2)))

    async def mutate(self, seats: list[int]) -> list[int]:
        seats.append(len(seats))
        return seats

    async def charge_all(self, amounts: list[int]) -> list[str]:
        async def one(i: int, amount: int) -> str:
            await asyncio.sleep(amount / 1000)
            return await self.payments.charge(f"k{i}", amount)

        tasks = [asyncio.create_task(one(i, a)) for i, a in enumerate(amounts)]
        done, _ = await asyncio.wait(tasks)
        return sorted(t.result() for t in done)


class FakePayments:
    def __init__(self, delay: float = 0.5) -> None:
        self.charged: list[tuple[str, int]] = []
        self.delay = delay

    async def charge(self, key: str, amount: int) -> str:
        await asyncio.sleep(self.delay)  # a slow API: virtual time under instantiate
        self.charged.append((key, amount))
        return f"receipt-{len(self.charged)}"


def _plain() -> tuple[TripService, FakePayments]:
    """The oracle: the same class, the fake wired directly, run by plain asyncio."""
    payments = FakePayments(delay=0.001)  # real time here
    return TripService(payments), payments


async def test_a_method_runs_with_the_fake_it_was_given() -> None:
    payments = FakePayments()
    svc = instantiate(TripService, payments=payments)
    assert svc.payments is payments
    assert await svc.book("t1", 2) == "receipt-1"
    [(key, amount)] = payments.charged
    assert amount == 20
    assert key == "test/Trips.book.1"  # dasync.call_id(): one id per call
    assert await svc.book("t2", 1) == "receipt-2"
    assert payments.charged[1][0] == "test/Trips.book.2"


async def test_sleeps_are_virtual() -> None:
    svc = instantiate(TripService, payments=FakePayments())
    clock = clock_of(svc)
    before, real = clock.now(), time.perf_counter()
    assert await svc.book_slowly("t1") == "receipt-1"
    assert clock.now() - before == pytest.approx(3.5)  # 3 s sleep + the fake's 0.5 s
    assert time.perf_counter() - real < 0.5
    assert svc.log == ["slept t1"]


async def test_fired_events_can_be_asserted() -> None:
    svc = instantiate(TripService, payments=FakePayments())
    await svc.book("t1", 2)
    await svc.book("t2", 1)
    assert fired(svc) == [("trip_booked", Trip("t1", 2)), ("trip_booked", Trip("t2", 1))]
    assert fired(svc, "trip_booked") == [Trip("t1", 2), Trip("t2", 1)]
    assert fired(svc, "trip_cancelled") == []
    with pytest.raises(KeyError, match="no event 'nope'"):
        fired(svc, "nope")


async def test_an_event_of_the_wrong_type_is_refused_where_it_is_fired() -> None:
    class Sloppy(TripService):
        async def book(self, trip_id: str, seats: int) -> str:
            self.trip_booked({"id": trip_id})  # type: ignore[arg-type]
            return ""

    svc = instantiate(Sloppy, payments=FakePayments())
    with pytest.raises(dasync.InvalidArguments, match="Trip"):
        await svc.book("t", 1)
    assert fired(svc) == []


async def test_timeouts_fire_in_virtual_time() -> None:
    svc = instantiate(TripService, payments=FakePayments())
    start = clock_of(svc).now()
    assert await svc.hold(5) == "timed out"
    assert clock_of(svc).now() - start == pytest.approx(5)
    assert fired(svc) == [("trip_cancelled", "held")]


async def test_deterministic_helpers_work() -> None:
    svc = instantiate(TripService, payments=FakePayments())
    uid, now, rnd = await svc.ids()
    uuid.UUID(uid)
    assert abs(datetime.fromisoformat(now).timestamp() - time.time()) < 60
    assert 0 <= float(rnd) < 1


async def test_exceptions_and_objects_are_those_of_plain_asyncio() -> None:
    svc = instantiate(TripService, payments=FakePayments())
    plain, _ = _plain()
    for run in (svc.book, plain.book):
        with pytest.raises(Booking, match="no seats for t") as info:
            await run("t", 0)
        assert type(info.value) is Booking
    seats = [1]
    assert await svc.mutate(seats) is seats  # not encoded: the very object
    assert seats == [1, 1]


async def test_concurrency_inside_a_method_matches_plain_asyncio() -> None:
    svc = instantiate(TripService, payments=FakePayments())
    plain, plain_payments = _plain()
    amounts = [30, 10, 20]
    assert await svc.charge_all(amounts) == await plain.charge_all(amounts)
    assert svc.payments.charged == plain_payments.charged == [("k1", 10), ("k2", 20), ("k0", 30)]
    assert await svc.twice("t") == ["receipt-4", "receipt-5"]  # self.book() inline


async def test_concurrent_calls_share_the_clock_in_deadline_order() -> None:
    svc = instantiate(TripService, payments=FakePayments())
    start = clock_of(svc).now()
    results = await asyncio.gather(svc.hold(7), svc.hold(2), svc.book_slowly("x"))
    assert results == ["timed out", "timed out", "receipt-1"]
    assert clock_of(svc).now() - start == pytest.approx(7)


async def test_cancelling_the_call_cancels_the_routine() -> None:
    class Careful(TripService):
        cleaned = False

        async def hold(self, seconds: float) -> str:
            try:
                await asyncio.sleep(seconds)
            finally:
                self.cleaned = True
            return "woke"

    svc = instantiate(Careful, payments=FakePayments())
    task = asyncio.create_task(svc.hold(100))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert svc.cleaned


async def test_a_missing_fake_is_a_clear_error_where_it_is_called() -> None:
    svc = instantiate(TripService)
    with pytest.raises(dasync.ContractError, match=r"Payments.charge\(\) .* pass a fake"):
        await svc.book("t", 1)


async def test_a_routine_waiting_for_nothing_is_an_error_not_a_hang() -> None:
    class Stuck(TripService):
        async def hold(self, seconds: float) -> str:
            await asyncio.Event().wait()
            return ""

    svc = instantiate(Stuck, payments=FakePayments())
    with pytest.raises(RuntimeError, match="cannot happen"):
        await svc.hold(1)


async def test_a_day_long_sleep_in_a_loop_is_fast() -> None:
    class Poller(TripService):
        async def hold(self, seconds: float) -> str:
            for _ in range(200):
                await asyncio.sleep(seconds)
            return "done"

    svc = instantiate(Poller, payments=FakePayments())
    real = time.perf_counter()
    assert await svc.hold(86_400) == "done"
    assert time.perf_counter() - real < 2
    assert clock_of(svc).now() - time.time() > 199 * 86_400


def test_fired_refuses_other_objects() -> None:
    with pytest.raises(TypeError, match="instantiate"):
        fired(object())
    svc = dasync.testing.instantiate(TripService)
    assert isinstance(svc.payments, Payments)  # a proxy of the contract
