"""Sequential durable calls, results of many types, client start and idempotent start."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol
from uuid import UUID

import pydantic
import pytest

import dasync

from ._helpers import settled, steps


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


class Money(pydantic.BaseModel):
    amount: Decimal
    currency: str


class Values(Protocol):
    async def point(self, x: int, y: int) -> Point: ...
    async def money(self, amount: Decimal) -> Money: ...
    async def color(self, name: str) -> Color: ...
    async def ident(self, u: UUID) -> UUID: ...
    async def later(self, t: datetime, days: int) -> datetime: ...
    async def half(self, d: Decimal) -> Decimal: ...
    async def table(self, n: int) -> dict[str, list[int]]: ...
    async def maybe(self, give: bool) -> int | None: ...
    async def nothing(self) -> None: ...
    async def add(self, a: int, b: int) -> int: ...


class ValuesImpl(Values):
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def point(self, x: int, y: int) -> Point:
        return Point(x, y)

    async def money(self, amount: Decimal) -> Money:
        return Money(amount=amount, currency="EUR")

    async def color(self, name: str) -> Color:
        return Color[name]

    async def ident(self, u: UUID) -> UUID:
        return u

    async def later(self, t: datetime, days: int) -> datetime:
        return t + timedelta(days=days)

    async def half(self, d: Decimal) -> Decimal:
        return d / 2

    async def table(self, n: int) -> dict[str, list[int]]:
        return {str(i): list(range(i)) for i in range(n)}

    async def maybe(self, give: bool) -> int | None:
        return 7 if give else None

    async def nothing(self) -> None:
        self.calls.append("nothing")

    async def add(self, a: int, b: int) -> int:
        self.calls.append(f"add {a} {b}")
        return a + b


@dataclasses.dataclass
class Everything:
    point: Point
    money: Money
    color: Color
    ident: UUID
    later: datetime
    half: Decimal
    table: dict[str, list[int]]
    some: int | None
    none: int | None
    nothing: None


class Collector(Protocol):
    async def everything(self, u: UUID, t: datetime) -> Everything: ...
    async def chain(self, n: int) -> list[int]: ...


class CollectorImpl(Collector):
    def __init__(self, values: Values) -> None:
        self.values = values

    async def everything(self, u: UUID, t: datetime) -> Everything:
        v = self.values
        return Everything(
            point=await v.point(1, 2),
            money=await v.money(Decimal("10.10")),
            color=await v.color("GREEN"),
            ident=await v.ident(u),
            later=await v.later(t, 3),
            half=await v.half(Decimal("0.3")),
            table=await v.table(3),
            some=await v.maybe(True),
            none=await v.maybe(False),
            nothing=await v.nothing(),
        )

    async def chain(self, n: int) -> list[int]:
        """Each call depends on the previous result: the calls are strictly sequential."""
        out = [0]
        for i in range(1, n + 1):
            out.append(await self.values.add(out[-1], i))
        return out


async def test_sequential_calls_in_order(make_runtime):
    async with make_runtime([ValuesImpl, CollectorImpl]) as rt:
        assert await rt.client.proxy(Collector).chain(5) == [0, 1, 3, 6, 10, 15]
        values = rt.instance_of(ValuesImpl)
        assert values.calls == ["add 0 1", "add 1 2", "add 3 3", "add 6 4", "add 10 5"]


async def test_results_of_many_types(make_runtime):
    u = UUID("12345678-1234-5678-1234-567812345678")
    t = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    async with make_runtime([ValuesImpl, CollectorImpl]) as rt:
        got = await rt.client.proxy(Collector).everything(u, t)
    assert got == Everything(
        point=Point(1, 2),
        money=Money(amount=Decimal("10.10"), currency="EUR"),
        color=Color.GREEN,
        ident=u,
        later=datetime(2026, 3, 4, 12, 30, tzinfo=UTC),
        half=Decimal("0.15"),
        table={"0": [], "1": [0], "2": [0, 1]},
        some=7,
        none=None,
        nothing=None,
    )
    assert isinstance(got.point, Point) and isinstance(got.money, Money)
    assert isinstance(got.color, Color) and isinstance(got.ident, UUID)
    assert isinstance(got.half, Decimal)


async def test_client_proxy_returns_typed_values_directly(make_runtime):
    async with make_runtime([ValuesImpl]) as rt:
        values = rt.client.proxy(Values)
        assert await values.point(3, 4) == Point(3, 4)
        assert await values.color("RED") is Color.RED
        assert await values.maybe(False) is None


# --- client.start, handles, idempotent start ----------------------------------------------

EXECUTIONS: dict[str, int] = {}
PAUSE = 60.0
"""The durable sleep in ``Orders.place``: 60 s of virtual time on memory, 0.24 s on NATS."""


@pytest.fixture(autouse=True)
def _pause(timing):
    global PAUSE
    PAUSE = timing.scale(60.0)


class Effects(Protocol):
    async def charge(self, amount: int) -> str: ...


class EffectsImpl(Effects):
    async def charge(self, amount: int) -> str:
        key = dasync.call_id()
        EXECUTIONS[key] = EXECUTIONS.get(key, 0) + 1
        return f"charged {amount}"


class Orders(Protocol):
    async def place(self, amount: int) -> str: ...


class OrdersImpl(Orders):
    def __init__(self, effects: Effects) -> None:
        self.effects = effects

    async def place(self, amount: int) -> str:
        receipt = await self.effects.charge(amount)
        await asyncio.sleep(PAUSE)
        return receipt.upper()


async def test_start_returns_a_handle_whose_result_is_awaited(make_runtime):
    EXECUTIONS.clear()
    async with make_runtime([EffectsImpl, OrdersImpl]) as rt:
        handle = await rt.client.start(Orders.place, 5, routine_id="order-1")
        assert handle.routine_id == "order-1"
        assert handle.service == "Orders"
        assert await handle.result(timeout=10) == "CHARGED 5"
        # a second handle on the same id (e.g. from another client) sees the same outcome
        again = rt.client.handle(Orders.place, "order-1")
        assert await again.result(timeout=10) == "CHARGED 5"
    assert EXECUTIONS == {"order-1/Orders.place.1": 1}


async def test_idempotent_start_runs_the_routine_once(make_runtime):
    EXECUTIONS.clear()
    async with make_runtime([EffectsImpl, OrdersImpl]) as rt:
        first = await rt.client.start(Orders.place, 7, routine_id="order-7")
        second = await rt.client.start(Orders.place, 7, routine_id="order-7")
        results = await asyncio.gather(first.result(timeout=10), second.result(timeout=10))
        assert results == ["CHARGED 7", "CHARGED 7"]
        # starting it again once it finished still runs nothing and returns the stored result
        third = await rt.client.start(Orders.place, 7, routine_id="order-7")
        assert await third.result(timeout=10) == "CHARGED 7"
        await settled(rt)
        records = await steps(rt, "Orders", "order-7")
        assert [type(s.input).__name__ for s in records] == ["Start", "Resolve", "FireTimer"]
    assert EXECUTIONS == {"order-7/Orders.place.1": 1}


async def test_start_with_keyword_arguments_and_many_routines(make_runtime):
    EXECUTIONS.clear()
    async with make_runtime([EffectsImpl, OrdersImpl]) as rt:
        handles = [await rt.client.start(Orders.place, amount=i) for i in range(20)]
        assert len({h.routine_id for h in handles}) == 20
        results = await asyncio.gather(*(h.result(timeout=10) for h in handles))
        assert results == [f"CHARGED {i}" for i in range(20)]
        await settled(rt)
    assert sorted(EXECUTIONS.values()) == [1] * 20
