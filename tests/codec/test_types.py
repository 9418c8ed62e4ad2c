"""Documented types round-trip exactly through arguments and results, or are refused at
start-up with a problem that says what to change."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import typing
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal, Optional, Protocol, Union
from zoneinfo import ZoneInfo

import orjson
import pydantic
import pytest
import typing_extensions
from hypothesis import given, settings
from hypothesis import strategies as st

import dasync
from dasync._codec import (
    check_method_types,
    decode_args,
    decode_result,
    encode_args,
    encode_result,
)
from dasync._contract import MethodSpec, ParamSpec

from ._shapes import canon

ROME = ZoneInfo("Europe/Rome")
NEW_YORK = ZoneInfo("America/New_York")
INF, NAN = float("inf"), float("nan")


def method_for(annotation: Any, name: str = "m") -> MethodSpec:
    """A method ``m(self, value: annotation) -> annotation``."""
    sig = inspect.Signature(
        [
            inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            inspect.Parameter("value", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ]
    )
    return MethodSpec(
        "Types", name, (ParamSpec("value", annotation, False, None),), annotation, sig
    )


def through_args(annotation: Any, value: Any) -> Any:
    method = method_for(annotation)
    return decode_args(method, _standard(encode_args(method, {"value": value})))["value"]


def through_result(annotation: Any, value: Any) -> Any:
    method = method_for(annotation)
    return decode_result(method, _standard(encode_result(method, value)))


def _standard(payload: bytes) -> bytes:
    """``payload``, checked to be standard JSON (orjson refuses NaN and Infinity tokens):
    other clients, the CLI and format-1 journals parse payloads."""
    orjson.loads(payload)
    return payload


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Stay:
    city: str
    arrival: datetime
    price: float
    photo: bytes
    guests: int
    tags: tuple[str, ...] = ()


@dataclasses.dataclass
class Trip:
    stays: list[Stay]
    notes: dict[str, datetime | None]


class Booking(typing_extensions.TypedDict):
    when: datetime
    total: Decimal
    ratio: float
    data: bytes


class Partial(typing_extensions.TypedDict, total=False):
    maybe: datetime


class Model(pydantic.BaseModel):
    name: str
    count: int
    when: date  # datetimes inside models: see test_inside_pydantic_models_their_own_config_rules
    ids: list[uuid.UUID]


ROME_GAP = datetime(2026, 3, 29, 2, 30, tzinfo=ROME)  # a wall time that never happened
ROME_DST = datetime(2026, 3, 29, 1, 30, tzinfo=ROME)  # half an hour before the change
NY_FOLD = datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NEW_YORK)  # the second 01:30

TYPES: list[tuple[str, Any, Any]] = [
    ("int", int, 42),
    ("int above 2**64", int, 2**64 + 1),
    ("int below -2**63", int, -(2**100) - 7),
    ("int 2**64-1", int, 2**64 - 1),
    ("float", float, 0.1),
    ("float -0.0", float, -0.0),
    ("float inf", float, INF),
    ("float -inf", float, -INF),
    ("float nan", float, NAN),
    ("bool", bool, True),
    ("str", str, "caf\u00e9 \U0001f600 \x00"),
    ("bytes non-UTF-8", bytes, b"\xff\x00\xfe"),
    ("bytes empty", bytes, b""),
    ("None", type(None), None),
    ("list", list[int], [1, 2**70, -3]),
    ("list of floats", list[float], [INF, NAN, -INF, 1.5]),
    ("dict", dict[str, float], {"a": INF, "b": 2.0}),
    ("dict int keys", dict[int, bytes], {1: b"\xff", 2**65: b""}),
    ("tuple", tuple[int, str, bytes], (1, "x", b"\x80")),
    ("tuple variadic", tuple[float, ...], (NAN, 1.0)),
    ("set", set[int], {1, 2, 3}),
    ("frozenset", frozenset[str], frozenset({"a", "b"})),
    ("Optional float", Optional[float], INF),  # noqa: UP045 - the spelling is the point
    ("Optional None", Optional[datetime], None),  # noqa: UP045
    ("union", Union[int, bytes], b"\xff"),  # noqa: UP007
    ("union pipe", int | list[bytes], [b"\x00"]),
    ("Literal", Literal["a", "b"], "b"),
    ("enum", Color, Color.BLUE),
    ("IntEnum", Level, Level.HIGH),
    ("UUID", uuid.UUID, uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("Decimal", Decimal, Decimal("1.10")),
    ("Decimal big", Decimal, Decimal("123456789012345678901234567890.000000001")),
    ("date", date, date(2026, 3, 29)),
    ("time", time, time(1, 2, 3, 456)),
    ("timedelta", timedelta, timedelta(days=-1, microseconds=7)),
    ("datetime naive", datetime, datetime(2026, 3, 29, 1, 30)),
    ("datetime UTC", datetime, datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),
    (
        "datetime offset",
        datetime,
        datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=5))),
    ),
    ("datetime zone", datetime, ROME_DST),
    ("datetime zone in gap", datetime, ROME_GAP),
    ("datetime zone fold", datetime, NY_FOLD),
    ("datetime zone UTC", datetime, datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC"))),
    ("zones in a list", list[datetime], [ROME_DST, NY_FOLD, datetime(2026, 1, 1)]),
    ("zones in a dict", dict[str, Optional[datetime]], {"a": ROME_DST, "b": None}),  # noqa: UP045
    ("zone in a union", Union[int, datetime], NY_FOLD),  # noqa: UP007
    ("dataclass", Stay, Stay("Rome", ROME_DST, INF, b"\xff", 2**70, ("x",))),
    (
        "nested dataclasses",
        Trip,
        Trip([Stay("Oslo", NY_FOLD, NAN, b"", -1)], {"x": ROME_GAP, "y": None}),
    ),
    (
        "TypedDict",
        Booking,
        {"when": ROME_DST, "total": Decimal("9.90"), "ratio": -INF, "data": b"\x00\xff"},
    ),
    ("TypedDict not total", Partial, {"maybe": NY_FOLD}),
    ("TypedDict empty", Partial, {}),
    (
        "list of TypedDicts",
        list[Booking],
        [{"when": NY_FOLD, "total": Decimal(0), "ratio": NAN, "data": b""}],
    ),
    (
        "pydantic model",
        Model,
        Model(name="n", count=3, when=date(2026, 1, 1), ids=[uuid.UUID(int=1)]),
    ),
]


@pytest.mark.parametrize(("annotation", "value"), [t[1:] for t in TYPES], ids=[t[0] for t in TYPES])
def test_value_round_trips_exactly_as_an_argument(annotation: Any, value: Any) -> None:
    assert not check_method_types(method_for(annotation))
    assert canon(through_args(annotation, value)) == canon(value)


@pytest.mark.parametrize(("annotation", "value"), [t[1:] for t in TYPES], ids=[t[0] for t in TYPES])
def test_value_round_trips_exactly_as_a_result(annotation: Any, value: Any) -> None:
    assert canon(through_result(annotation, value)) == canon(value)


_ZONES = [None, UTC, ROME, NEW_YORK, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("Asia/Kolkata")]


@dataclasses.dataclass
class Mixed:
    numbers: list[int]
    ratios: list[float]
    blobs: list[bytes]
    times: list[datetime]
    text: str


_mixed = st.builds(
    Mixed,
    st.lists(st.integers() | st.sampled_from([2**63 - 1, -(2**63), 2**64 - 1, 2**64, 10**19])),
    st.lists(st.floats()),
    st.lists(st.binary()),
    st.lists(st.datetimes(timezones=st.sampled_from(_ZONES))),
    st.text(),
)


@settings(max_examples=200, deadline=None)
@given(_mixed)
def test_generated_values_round_trip_exactly(value: Mixed) -> None:
    assert canon(through_result(Mixed, value)) == canon(value)
    assert canon(through_args(Mixed, value)) == canon(value)


def test_wire_forms_of_special_values() -> None:
    assert encode_result(method_for(float), INF) == b'"Infinity"'
    assert encode_result(method_for(float), NAN) == b'"NaN"'
    assert encode_result(method_for(bytes), b"\xff\x00") == b'"_wA="'
    assert encode_result(method_for(int), 2**64) == b"18446744073709551616"
    assert encode_result(method_for(int), 2**64 - 1) == b"18446744073709551615"
    assert (
        encode_result(method_for(datetime), ROME_DST) == b'"2026-03-29T01:30:00+01:00[Europe/Rome]"'
    )
    assert (
        encode_result(method_for(datetime), datetime(2026, 1, 1, tzinfo=UTC))
        == b'"2026-01-01T00:00:00Z"'
    )


def test_a_zoned_datetime_keeps_arithmetic_across_the_dst_change() -> None:
    back = through_result(datetime, ROME_DST)
    assert back.tzinfo is ROME
    assert (back + timedelta(days=1)).utcoffset() == timedelta(hours=2)  # summer time
    fixed = through_result(
        datetime, datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=1)))
    )
    assert (fixed + timedelta(days=1)).utcoffset() == timedelta(hours=1)  # stays as given


def test_rfc_9557_text_from_other_clients_is_accepted() -> None:
    method = method_for(datetime)
    got = decode_result(method, b'"2026-03-29T01:30:00+01:00[!Europe/Rome]"')
    assert got == ROME_DST and got.tzinfo is ROME
    naive_wall = decode_result(method, b'"2026-03-29T01:30:00[Europe/Rome]"')
    assert naive_wall.tzinfo is ROME and naive_wall.hour == 1
    wrong_offset = decode_result(method, b'"2026-03-29T01:30:00+05:00[Europe/Rome]"')
    assert wrong_offset.tzinfo is ROME  # the offset wins: same instant, the zone's wall time
    assert wrong_offset == datetime(2026, 3, 28, 20, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        b'"2026-03-29T01:30:00+01:00[Nowhere/City]"',
        b'"2026-03-29T01:30:00+01:00[../../etc/passwd]"',
        b'"2026-03-29T01:30:00+01:00[/etc/localtime]"',
        b'"2026-03-29T01:30:00+01:00[]"',
        b'"2026-03-29T01:30:00+01:00[' + b"A" * 300 + b']"',
        b'"not a date[Europe/Rome]"',
    ],
)
def test_bad_zone_text_is_a_clear_error(text: bytes) -> None:
    with pytest.raises(dasync.MalformedMessage, match="reply does not match"):
        decode_result(method_for(datetime), text)
    with pytest.raises(dasync.InvalidArguments, match="argument 'value'"):
        decode_args(method_for(datetime), b'{"value": ' + text + b"}")


def test_bytes_arguments_from_other_clients_are_base64() -> None:
    method = method_for(bytes)
    assert decode_args(method, b'{"value": "/wA="}') == {"value": b"\xff\x00"}
    assert decode_args(method, b'{"value": "_wA="}') == {"value": b"\xff\x00"}  # url-safe too


# --- decisions and limits -----------------------------------------------------------------


@dataclasses.dataclass
class Room:
    number: int


@dataclasses.dataclass
class Suite(Room):
    lounge: bool


class RoomModel(pydantic.BaseModel):
    number: int


class SuiteModel(RoomModel):
    lounge: bool


@pytest.mark.parametrize(
    ("base", "sub"), [(Room, Suite(7, True)), (RoomModel, SuiteModel(number=7, lounge=True))]
)
def test_the_annotation_wins_over_a_returned_subclass(base: type, sub: Any) -> None:
    back = through_result(base, sub)
    assert type(back) is base and back.number == 7
    back = through_args(base, sub)
    assert type(back) is base


@pytest.mark.parametrize(
    ("base", "sub"), [(Room, Suite(7, True)), (RoomModel, SuiteModel(number=7, lounge=True))]
)
def test_a_union_naming_the_subclass_keeps_it(base: type, sub: Any) -> None:
    union = Union[base, type(sub)]  # noqa: UP007
    back = through_result(union, sub)
    assert type(back) is type(sub) and back.lounge is True
    assert type(through_result(union, base(number=1))) is base


class LossyModel(pydantic.BaseModel):
    """A model keeps its own config: dasync's wire rules do not reach inside it."""

    ratio: float
    when: datetime


class BigModel(pydantic.BaseModel):
    count: int


class ExactModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        ser_json_inf_nan="strings", ser_json_bytes="base64", val_json_bytes="base64"
    )
    ratio: float
    data: bytes


def test_inside_pydantic_models_their_own_config_rules() -> None:
    method = method_for(LossyModel)
    assert encode_result(method, LossyModel(ratio=INF, when=ROME_DST)) == (
        b'{"ratio":null,"when":"2026-03-29T01:30:00+01:00"}'
    )
    with pytest.raises(dasync.MalformedMessage):  # null is not a float: loud, not wrong
        decode_result(method, encode_result(method, LossyModel(ratio=INF, when=ROME_DST)))
    back = through_result(LossyModel, LossyModel(ratio=1.0, when=ROME_DST))
    assert back.when == ROME_DST and not isinstance(back.when.tzinfo, ZoneInfo)  # offset only
    assert type(back.when.tzinfo) is not timezone  # pydantic's own TzInfo
    assert through_result(BigModel, BigModel(count=2**70 + 1)).count == 2**70 + 1  # exact
    exact = through_result(ExactModel, ExactModel(ratio=NAN, data=b"\xff"))
    assert canon(exact) == canon(ExactModel(ratio=NAN, data=b"\xff"))


def test_a_union_of_str_and_float_reads_inf_back_as_the_string() -> None:
    """Known ambiguity: inf/nan travel as strings, and the union's str branch wins."""
    assert through_result(Union[str, float], INF) == "Infinity"  # noqa: UP007
    assert through_result(Union[str, float], 1.5) == 1.5  # noqa: UP007
    assert type(through_result(Union[str, int], 2**64)) is int  # noqa: UP007 - a JSON number


def test_a_value_of_the_wrong_type_is_refused_when_encoding() -> None:
    with pytest.raises(dasync.ContractError, match="does not match its annotated return type"):
        encode_result(method_for(int), "x")
    with pytest.raises(dasync.InvalidArguments, match="argument 'value.city'"):
        encode_args(method_for(Stay), {"value": {"city": 1}})


# --- start-up problems ---------------------------------------------------------------------


class OldTypedDict(typing.TypedDict):
    when: datetime


class Opaque:
    pass


def test_typing_typed_dict_is_reported_with_the_fix() -> None:
    problems = check_method_types(method_for(OldTypedDict))
    assert len(problems) == 2  # the parameter and the return type
    assert "parameter 'value'" in problems[0]
    assert "use typing_extensions.TypedDict instead" in problems[0]
    assert "Python < 3.12" in problems[0]
    assert "return type OldTypedDict" in problems[1]


def test_unknown_types_are_reported_not_raised() -> None:
    problems = check_method_types(method_for(list[Opaque]))
    assert problems and all("cannot be encoded" in p for p in problems)
    assert "Opaque" in problems[0] and "__get_pydantic_core_schema__" in problems[0]


def test_a_service_with_such_a_type_fails_at_definition() -> None:
    class Bad(Protocol):
        async def book(self, booking: OldTypedDict) -> None: ...

    class BadImpl(Bad):
        async def book(self, booking: OldTypedDict) -> None:
            return None

    with pytest.raises(dasync.ContractError, match="typing_extensions.TypedDict"):
        dasync.Runtime([BadImpl])
