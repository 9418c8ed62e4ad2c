"""Through a runtime, on every transport and replay mode: a caller routine sees the callee's
exceptions rebuilt and its special values exactly (replay reads them back from the journal)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import pytest

from ._shapes import REMOTE_NOTE, canon

INF, NAN = float("inf"), float("nan")
ROME = ZoneInfo("Europe/Rome")


class HotelFull(Exception):
    def __init__(self, city: str) -> None:
        super().__init__(f"no room in {city}")
        self.city = city


@dataclass
class Specials:
    inf: float
    nan: float
    blob: bytes
    when: datetime
    big: int
    later: list[datetime]


SPECIALS = Specials(
    -INF,
    NAN,
    b"\xff\x00\xfe",
    datetime(2026, 3, 29, 1, 30, tzinfo=ROME),
    2**70 + 1,
    [datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=ROME)],
)


class Hotel(Protocol):
    async def book(self, city: str) -> str: ...
    async def book_all(self, cities: list[str]) -> str: ...
    async def chained(self, city: str) -> str: ...
    async def decode(self, data: bytes) -> str: ...
    async def specials(self) -> Specials: ...
    async def echo(self, value: Specials) -> Specials: ...
    async def inf(self) -> float: ...
    async def blob(self) -> bytes: ...
    async def when(self) -> datetime: ...
    async def big(self) -> int: ...


class HotelImpl(Hotel):
    async def book(self, city: str) -> str:
        raise HotelFull(city)

    async def book_all(self, cities: list[str]) -> str:
        raise ExceptionGroup("no rooms", [HotelFull(c) for c in cities] + [KeyError("desk")])

    async def chained(self, city: str) -> str:
        try:
            {}[city]
        except KeyError as exc:
            raise HotelFull(city) from exc
        return ""

    async def decode(self, data: bytes) -> str:
        return data.decode("utf-8")

    async def specials(self) -> Specials:
        return SPECIALS

    async def echo(self, value: Specials) -> Specials:
        return value

    async def inf(self) -> float:
        return INF

    async def blob(self) -> bytes:
        return b"\xff\x00"

    async def when(self) -> datetime:
        return SPECIALS.when

    async def big(self) -> int:
        return -(2**80)


class Travel(Protocol):
    async def try_book(self, city: str) -> list[str]: ...
    async def try_group(self) -> list[str]: ...
    async def try_chained(self) -> list[str]: ...
    async def try_decode(self) -> list[str]: ...
    async def check_specials(self) -> list[str]: ...
    async def relay(self) -> Specials: ...


class TravelImpl(Travel):
    def __init__(self, hotel: Hotel) -> None:
        self.hotel = hotel

    async def try_book(self, city: str) -> list[str]:
        try:
            await self.hotel.book(city)
        except HotelFull as exc:
            return [type(exc).__name__, exc.city, str(exc), str(_has_remote_note(exc))]
        return []

    async def try_group(self) -> list[str]:
        seen: list[str] = []
        try:
            await self.hotel.book_all(["Rome", "Oslo"])
        except* HotelFull as group:
            cities = sorted(e.city for e in group.exceptions if isinstance(e, HotelFull))
            seen += [type(group).__name__, group.message, *cities]
        except* KeyError as rest:
            seen += [type(e).__name__ for e in rest.exceptions]
        return seen

    async def try_chained(self) -> list[str]:
        try:
            await self.hotel.chained("Rome")
        except HotelFull as exc:
            cause = exc.__cause__
            return [
                exc.city,
                type(cause).__name__,
                repr(cause.args if cause else None),
                str(exc.__suppress_context__),
                str(exc.__context__ is cause),
            ]
        return []

    async def try_decode(self) -> list[str]:
        try:
            await self.hotel.decode(b"ok\xff\x00")
        except UnicodeDecodeError as exc:
            return [exc.encoding, repr(exc.object), str(exc.start), str(exc.end), exc.reason]
        return []

    async def check_specials(self) -> list[str]:
        """What differs from SPECIALS after each hop, seen inside the routine."""
        problems = []
        got = await self.hotel.specials()
        if canon(got) != canon(SPECIALS):
            problems.append(f"result: {got!r}")
        echoed = await self.hotel.echo(SPECIALS)
        if canon(echoed) != canon(SPECIALS):
            problems.append(f"argument: {echoed!r}")
        singles = [await self.hotel.inf(), await self.hotel.blob(), await self.hotel.big()]
        if canon(singles) != canon([INF, b"\xff\x00", -(2**80)]):
            problems.append(f"singles: {singles!r}")
        when = await self.hotel.when()
        if when.tzinfo is not ROME or (when + timedelta(days=1)).utcoffset() != timedelta(hours=2):
            problems.append(f"zone: {when!r}")
        return problems

    async def relay(self) -> Specials:
        return await self.hotel.specials()


def _has_remote_note(exc: BaseException) -> bool:
    return any(n.startswith(REMOTE_NOTE) for n in getattr(exc, "__notes__", []))


SERVICES = [HotelImpl, TravelImpl]


async def test_a_custom_exception_keeps_its_state(make_runtime):
    async with make_runtime(SERVICES) as rt:
        got = await rt.client.proxy(Travel).try_book("Rome")
        assert got == ["HotelFull", "Rome", "no room in Rome", "True"]
        with pytest.raises(HotelFull) as info:
            await rt.client.proxy(Hotel).book("Oslo")
        assert info.value.city == "Oslo"


async def test_an_exception_group_is_rebuilt(make_runtime):
    async with make_runtime(SERVICES) as rt:
        assert await rt.client.proxy(Travel).try_group() == [
            "ExceptionGroup",
            "no rooms",
            "Oslo",
            "Rome",
            "KeyError",
        ]
        with pytest.raises(ExceptionGroup) as info:
            await rt.client.proxy(Hotel).book_all(["Paris"])
        assert [type(e) for e in info.value.exceptions] == [HotelFull, KeyError]


async def test_a_chained_exception_keeps_its_cause(make_runtime):
    async with make_runtime(SERVICES) as rt:
        assert await rt.client.proxy(Travel).try_chained() == [
            "Rome",
            "KeyError",
            "('Rome',)",
            "True",
            "True",
        ]


async def test_unicode_decode_error_keeps_its_fields(make_runtime):
    async with make_runtime(SERVICES) as rt:
        got = await rt.client.proxy(Travel).try_decode()
        assert got == ["utf-8", "b'ok\\xff\\x00'", "2", "3", "invalid start byte"]


async def test_special_values_arrive_exactly(make_runtime):
    async with make_runtime(SERVICES) as rt:
        assert await rt.client.proxy(Travel).check_specials() == []
        relayed = await rt.client.proxy(Travel).relay()  # callee -> routine -> client
        assert canon(relayed) == canon(SPECIALS)
        assert relayed.when.tzinfo is ROME
