"""Declared errors and failure payloads: the schemas describe what ``encode_failure`` writes.

``@dasync.raises`` puts error types on a contract method; each gets a schema of
the exception object a failure payload holds for it (``type``, ``message``,
``args``, ``state`` with its typed fields...), and the method's failure schema
names them. Generated exceptions, with values of every kind tagged JSON
carries, are encoded by dasync and validated against those schemas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dasync
from dasync._failures import encode_failure
from dasync._values import _TAGS
from dasync.codegen._failure import TAG_BODIES

from .schemas import errors, pool


class OutOfStock(Exception):
    """Not enough of an item."""

    def __init__(self, item: str, requested: int, available: int) -> None:
        super().__init__(item, requested, available)
        self.item, self.requested, self.available = item, requested, available


@dataclass
class Declined(Exception):
    """A payment was refused."""

    reason: str
    amount: Decimal
    codes: list[int]
    pair: tuple[int, str]
    table: dict[str, float]
    tags: set[str]
    raw: bytes
    when: datetime
    retry: int | None = None
    kind: Literal["soft", "hard"] = "soft"


class Plain(Exception):
    pass


class Shop(Protocol):
    @dasync.raises(OutOfStock, Declined)
    async def buy(self, item: str) -> int:
        """Buys one."""
        ...

    @dasync.raises(Plain)
    @dasync.raises(Plain, OutOfStock)
    async def other(self) -> None: ...

    async def free(self) -> None: ...


DOC = pool(Shop)
OUT_OF_STOCK = f"{__name__}.OutOfStock.error"
DECLINED = f"{__name__}.Declined.error"


def _failure(exc: BaseException) -> Any:
    return orjson.loads(encode_failure(exc))


def test_raises_is_recorded_on_the_method_spec() -> None:
    methods = dasync.spec_of(Shop).methods
    assert methods["buy"].raises == (OutOfStock, Declined)
    assert methods["other"].raises == (Plain, OutOfStock)  # stacked: in order, once each
    assert methods["free"].raises == ()


def test_raises_takes_exception_classes_only() -> None:
    with pytest.raises(TypeError, match="exception classes"):
        dasync.raises(ValueError("no"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="exception classes"):
        dasync.raises(int)  # type: ignore[arg-type]


def test_declared_errors_have_schemas_and_the_method_a_failure_schema() -> None:
    defs = DOC["$defs"]
    assert {OUT_OF_STOCK, DECLINED, f"{__name__}.Plain.error"} <= set(defs)
    assert "Shop.buy.failure" in defs and "Shop.free.failure" not in defs
    declined = defs[DECLINED]
    assert declined["properties"]["type"] == {"const": f"{__name__}:Declined"}
    assert declined["description"] == "A payment was refused."
    state = declined["properties"]["state"]
    assert list(state["properties"]) == [
        "reason", "amount", "codes", "pair", "table", "tags", "raw", "when", "retry", "kind",
    ]  # fmt: skip
    assert state["required"] == list(state["properties"])  # a dataclass sets every field
    typed = defs[OUT_OF_STOCK]["properties"]["state"]
    assert list(typed["properties"]) == ["item", "requested", "available"]
    assert "required" not in typed  # an __init__ may keep its parameters under other names


@pytest.mark.parametrize(
    "exc",
    [
        OutOfStock("book", 2, 1),
        Declined(
            "card expired", Decimal("9.50"), [1, 2**70], (1, "a"), {"x": math.inf}, {"b", "a"},
            b"\x00\xff", datetime(2026, 1, 1, tzinfo=UTC), None, "hard",
        ),  # fmt: skip
        Plain("just a message"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_declared_errors_validate(exc: BaseException) -> None:
    payload = _failure(exc)
    assert errors(DOC, "Shop.buy.failure", payload) == []
    assert errors(DOC, "dasync.Failure", payload) == []
    if not isinstance(exc, Plain):
        root = OUT_OF_STOCK if isinstance(exc, OutOfStock) else DECLINED
        assert errors(DOC, root, payload["exceptions"][0]) == []


def test_a_declared_schema_refuses_another_type_or_a_wrong_field() -> None:
    node = _failure(OutOfStock("book", 2, 1))["exceptions"][0]
    assert errors(DOC, DECLINED, node) != []
    wrong = {**node, "state": {**node["state"], "requested": "two"}}
    assert errors(DOC, OUT_OF_STOCK, wrong) != []
    assert errors(DOC, "dasync.Exception", wrong) == []  # any exception still is one


def test_a_chain_a_group_and_notes_validate() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise OutOfStock("book", 2, 1) from inner
    except OutOfStock as exc:
        exc.add_note("a note")
        group = ExceptionGroup("several", [exc, ValueError("v")])
    payload = _failure(group)
    assert len(payload["exceptions"]) >= 4
    assert errors(DOC, "Shop.buy.failure", payload) == []


def test_every_tag_of_tagged_json_is_described() -> None:
    assert set(TAG_BODIES) == set(_TAGS)


class _Thing:
    def __repr__(self) -> str:
        return "<a thing>"


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**64),
    st.floats(),
    st.text(max_size=8),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3),
    st.binary(max_size=8),
    st.decimals(allow_nan=False),
    st.builds(_Thing),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=4), inner, max_size=3),
        st.dictionaries(st.integers() | st.just("$x"), inner, max_size=2),
        st.frozensets(st.integers(), max_size=3),
        st.sets(st.text(max_size=3), max_size=3),
    ),
    max_leaves=10,
)


@settings(max_examples=60, deadline=None)
@given(args=st.lists(values, max_size=3), attribute=values)
def test_any_value_an_exception_carries_validates(args: list[Any], attribute: Any) -> None:
    exc = Plain(*args)
    exc.extra = attribute  # type: ignore[attr-defined]
    exc.cause = ValueError("linked")  # type: ignore[attr-defined]  # an $exc value
    assert errors(DOC, "dasync.Failure", _failure(exc)) == []


@settings(max_examples=40, deadline=None)
@given(
    st.builds(
        Declined,
        reason=st.text(max_size=8),
        amount=st.decimals(allow_nan=False),
        codes=st.lists(st.integers(), max_size=3),
        pair=st.tuples(st.integers(), st.text(max_size=3)),
        table=st.dictionaries(st.text(max_size=3), st.floats(), max_size=3),
        tags=st.sets(st.text(max_size=3), max_size=3),
        raw=st.binary(max_size=8),
        when=st.datetimes(),
        retry=st.none() | st.integers(),
        kind=st.sampled_from(["soft", "hard"]),
    )
)
def test_typed_fields_validate(exc: Declined) -> None:
    node = _failure(exc)["exceptions"][0]
    assert errors(DOC, DECLINED, node) == []
