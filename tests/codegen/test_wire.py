"""The generated schemas describe the bytes dasync's codec really writes.

For generated values of every supported type, the codec's encoding of the
arguments, the result and the event validates against the schemas of the JSON
Schema document (jsonschema, draft 2020-12, formats checked), including the
wire rules that pydantic's own schemas do not know: inf/nan as strings,
URL-safe base64, RFC 9557 zoned datetimes, and the other rules inside pydantic
models. A few hand-made wrong values are refused, so the schemas are not
merely permissive.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal, NotRequired, Protocol
from uuid import UUID
from zoneinfo import ZoneInfo

import orjson
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typing_extensions import TypedDict

import dasync
from dasync._codec import decode_args, encode_args, encode_event, encode_result

from .schemas import errors, pool


class Color(enum.Enum):
    """A colour, by name."""

    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Node:
    """A tree of values: a recursive type."""

    value: int
    children: list[Node] = field(default_factory=list)


class Hexed(pydantic.BaseModel):
    """A pydantic model with its own config: it keeps it on the wire."""

    model_config = pydantic.ConfigDict(ser_json_bytes="hex")
    data: bytes
    ratio: float
    at: datetime


class Plain(pydantic.BaseModel):
    data: bytes
    ratio: float
    at: datetime
    node: Node | None = None


class Options(TypedDict):
    size: int
    label: NotRequired[str]


@dataclass
class Everything:
    """One field of each type the codec documents."""

    number: int
    real: float
    text: str
    flag: bool
    raw: bytes
    nothing: None
    money: Decimal
    uid: UUID
    moment: datetime
    day: date
    clock: time
    span: timedelta
    numbers: list[int]
    table: dict[str, float]
    pair: tuple[int, str]
    many: tuple[int, ...]
    unique: set[int]
    frozen: frozenset[str]
    literal: Literal["a", 1]
    color: Color
    level: Level
    maybe: int | None
    either: int | str
    tree: Node
    hexed: Hexed
    plain: Plain
    options: Options
    aware: pydantic.AwareDatetime
    naive: pydantic.NaiveDatetime
    positive: Annotated[float, pydantic.Field(gt=0)]
    finite: Annotated[float, pydantic.Field(allow_inf_nan=False)]
    default: int = 7


class Wire(Protocol):
    changed: dasync.Event[Everything]

    async def echo(
        self, value: Everything, scale: float = 1.0, when: datetime | None = None
    ) -> Everything:
        """Returns what it is given."""
        ...

    async def reals(self, values: list[float]) -> dict[str, float]: ...


DOC = pool(Wire)
ECHO = dasync.spec_of(Wire).methods["echo"]
REALS = dasync.spec_of(Wire).methods["reals"]
EVENT = dasync.spec_of(Wire).events["changed"]

# --- values ----------------------------------------------------------------------------------

offsets = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23))
zones = st.one_of(
    st.none(),
    st.just(UTC),
    st.builds(timezone, offsets),
    st.sampled_from([ZoneInfo(z) for z in ("Europe/Rome", "Europe/Amsterdam", "Asia/Kolkata")]),
)
aware_zones = zones.filter(lambda z: z is not None)
moments = st.datetimes(timezones=zones)
finite = st.floats(allow_nan=False, allow_infinity=False)
trees = st.recursive(
    st.builds(Node, st.integers(), st.just([])),
    lambda children: st.builds(Node, st.integers(), st.lists(children, max_size=3)),
    max_leaves=8,
)
models = {
    # inside a pydantic model its own config rules: inf is written as null and bytes as
    # UTF-8, which cannot be read back or written at all: not values the codec carries
    "data": st.text(max_size=8).map(str.encode),
    "ratio": finite,
    "at": moments,
}
everything = st.builds(
    Everything,
    number=st.integers(),
    real=st.floats(),
    text=st.text(max_size=20),
    flag=st.booleans(),
    raw=st.binary(max_size=32),
    nothing=st.none(),
    money=st.decimals(allow_nan=False, allow_infinity=False),
    uid=st.uuids(),
    moment=moments,
    day=st.dates(),
    clock=st.times(timezones=st.one_of(st.none(), st.just(UTC))),
    span=st.timedeltas(),
    numbers=st.lists(st.integers(), max_size=5),
    table=st.dictionaries(st.text(max_size=5), st.floats(), max_size=4),
    pair=st.tuples(st.integers(), st.text(max_size=5)),
    many=st.lists(st.integers(), max_size=4).map(tuple),
    unique=st.sets(st.integers(), max_size=4),
    frozen=st.frozensets(st.text(max_size=4), max_size=4),
    literal=st.sampled_from(["a", 1]),
    color=st.sampled_from(Color),
    level=st.sampled_from(Level),
    maybe=st.none() | st.integers(),
    either=st.integers() | st.text(max_size=5),
    tree=trees,
    hexed=st.builds(Hexed, **{**models, "data": st.binary(max_size=16)}),
    plain=st.builds(Plain, **models, node=st.none() | trees),
    options=st.fixed_dictionaries({"size": st.integers()}, optional={"label": st.text(max_size=4)}),
    aware=st.datetimes(timezones=aware_zones),
    naive=st.datetimes(),
    positive=st.floats(min_value=0, exclude_min=True),
    finite=finite,
    default=st.integers(),
)


def _json(data: bytes) -> Any:
    return orjson.loads(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=everything, scale=st.floats(), when=st.none() | moments)
def test_the_codec_writes_what_the_schemas_describe(
    value: Everything, scale: float, when: datetime | None
) -> None:
    arguments = encode_args(ECHO, {"value": value, "scale": scale, "when": when})
    decode_args(ECHO, arguments)  # what the service reads back
    assert errors(DOC, "Wire.echo.arguments", _json(arguments)) == []
    assert errors(DOC, "Wire.echo.result", _json(encode_result(ECHO, value))) == []
    assert errors(DOC, "Wire.changed.event", _json(encode_event(EVENT, value))) == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(), max_size=6))
def test_floats_that_json_has_no_number_for(values: list[float]) -> None:
    table = {str(i): v for i, v in enumerate(values)}
    assert errors(DOC, "Wire.reals.arguments", _json(encode_args(REALS, {"values": values}))) == []
    assert errors(DOC, "Wire.reals.result", _json(encode_result(REALS, table))) == []


def test_the_special_floats_are_strings_on_the_wire_and_in_the_schema() -> None:
    data = _json(encode_result(REALS, {"a": math.inf, "b": -math.inf, "c": math.nan}))
    assert data == {"a": "Infinity", "b": "-Infinity", "c": "NaN"}
    assert errors(DOC, "Wire.reals.result", data) == []
    assert errors(DOC, "Wire.reals.result", {"a": "inf"}) != []


def _wire_value(**changes: Any) -> dict[str, Any]:
    base = Everything(
        1, 1.0, "t", True, b"\xfb\xff", None, Decimal("1.5"),
        UUID(int=1), datetime(2026, 3, 29, 1, 30, tzinfo=ZoneInfo("Europe/Rome")),
        date(2026, 1, 1), time(1, 2, 3), timedelta(seconds=90), [1], {"x": 1.0}, (1, "a"),
        (1, 2), {1}, frozenset({"a"}), "a", Color.RED, Level.LOW, None, 1,
        Node(1, [Node(2)]),
        Hexed(data=b"\x01", ratio=0.5, at=datetime(2026, 1, 1)),
        Plain(data=b"ab", ratio=0.5, at=datetime(2026, 1, 1, tzinfo=UTC)),
        {"size": 1}, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1), 2.0, 3.0,
    )  # fmt: skip
    data: dict[str, Any] = _json(encode_result(ECHO, base))
    data.update(changes)
    return data


def test_the_wire_rules_are_in_the_schemas() -> None:
    data = _wire_value()
    assert data["moment"] == "2026-03-29T01:30:00+01:00[Europe/Rome]"
    assert data["raw"] == "-_8="  # URL-safe base64
    assert data["hexed"]["data"] == "01"  # the model's own config
    assert errors(DOC, "Wire.echo.result", data) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"raw": "+/8="},  # standard base64 is not what the codec writes
        {"aware": "2026-01-01T00:00:00"},  # an AwareDatetime has an offset
        {"naive": "2026-01-01T00:00:00Z"},  # a NaiveDatetime has none
        {"moment": "2026-01-01 00:00:00"},
        {"uid": "not-a-uuid"},
        {"finite": "Infinity"},  # allow_inf_nan=False
        {"positive": "-Infinity"},  # gt=0
        {"color": "green"},
        {"number": 1.5},
        {"pair": [1, "a", 2]},
        {"tree": {"value": 1, "children": [{"value": "x"}]}},  # recursive, deep
        {"money": "1,5"},
        {"hexed": {"data": "01", "ratio": 0.5, "at": "2026-01-01T00:00:00[Europe/Rome]"}},
    ],
    ids=lambda changes: next(iter(changes)),
)
def test_wrong_values_are_refused(changes: dict[str, Any]) -> None:
    assert errors(DOC, "Wire.echo.result", _wire_value(**changes)) != []


def test_arguments_follow_the_parameters() -> None:
    schema = DOC["$defs"]["Wire.echo.arguments"]
    assert schema["required"] == ["value"]  # scale and when have defaults
    assert list(schema["properties"]) == ["value", "scale", "when"]  # declaration order
    assert schema["properties"]["scale"]["default"] == 1.0
    assert schema["additionalProperties"] is False  # unknown arguments are refused
    assert schema["description"] == "Returns what it is given."
    assert errors(DOC, "Wire.echo.arguments", {"value": _wire_value(), "other": 1}) != []


def test_results_require_what_the_codec_always_writes() -> None:
    everything = DOC["$defs"]["Everything-Output"]
    assert "default" in everything["required"]  # written even when left at its default
    assert DOC["$defs"]["Everything-Input"]["required"].count("default") == 0


def test_docstrings_become_descriptions() -> None:
    defs = DOC["$defs"]
    assert defs["Node-Input"]["description"] == "A tree of values: a recursive type."
    assert defs["Node-Output"]["description"] == "A tree of values: a recursive type."
    assert defs["Color"]["description"] == "A colour, by name."
    assert "description" not in defs["Plain-Output"]  # no docstring: none made up


class Registry(Protocol):
    async def register(self, name: str) -> None: ...


def test_only_the_contracts_own_docstrings_are_used() -> None:
    # inspect.getdoc would lend Protocol's docstring to the contract and ABCMeta.register's
    # to the method
    from dasync.codegen import contracts_of, openapi_document

    document = openapi_document(contracts_of([Registry]))
    assert document["tags"][0] == {"name": "Registry"}
    operation = document["paths"]["/Registry/register"]["post"]
    assert operation["summary"] == "call Registry.register" and "description" not in operation
    schema = document["components"]["schemas"]["Registry.register.arguments"]
    assert "description" not in schema
