"""The tagged JSON encoding of untyped values: exact round trips, strict decoding."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dasync import MalformedMessage
from dasync._values import MAX_DEPTH, ValueDecoder, ValueEncoder, safe_repr

from ._shapes import canon


def round_trip(value: Any) -> Any:
    wire = orjson.dumps(ValueEncoder().encode(value))
    assert orjson.dumps(orjson.loads(wire)) == wire  # the journal re-parses payloads
    return ValueDecoder().decode(orjson.loads(wire))


_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=8)
_hashable = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _text | st.binary(max_size=8),
    lambda children: st.tuples(children, children) | st.frozensets(children, max_size=3),
    max_leaves=6,
)
_values = st.recursive(
    _hashable,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(_text, children, max_size=4)
        | st.dictionaries(_hashable, children, max_size=3)
        | st.sets(_hashable, max_size=4)
        | st.frozensets(_hashable, max_size=3)
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(_values)
def test_values_round_trip_exactly(value: Any) -> None:
    assert canon(round_trip(value)) == canon(value)


@settings(max_examples=200, deadline=None)
@given(_values)
def test_encoding_is_deterministic(value: Any) -> None:
    assert orjson.dumps(ValueEncoder().encode(value)) == orjson.dumps(ValueEncoder().encode(value))


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (b"\xff\x00", {"$bytes": "/wA="}),
        ((1, 2), {"$tuple": [1, 2]}),
        ([1, 2], [1, 2]),
        (2**64 - 1, 2**64 - 1),
        (2**64, {"$int": "18446744073709551616"}),
        (-(2**63) - 1, {"$int": "-9223372036854775809"}),
        (float("inf"), {"$float": "inf"}),
        (float("-inf"), {"$float": "-inf"}),
        (float("nan"), {"$float": "nan"}),
        ({"a": 1}, {"a": 1}),
        ({"$a": 1}, {"$dict": [["$a", 1]]}),
        ({1: "x"}, {"$dict": [[1, "x"]]}),
        ({"b", "a"}, {"$set": ["a", "b"]}),
        (frozenset({2, 1}), {"$frozenset": [1, 2]}),
        ("\udc80", {"$str": "7bKA"}),
        (OrderedDict(a=1), {"$repr": repr(OrderedDict(a=1))}),
        (ValueError("x"), {"$repr": "ValueError('x')"}),  # no payload to point into
    ],
)
def test_wire_forms(value: Any, wire: Any) -> None:
    assert ValueEncoder().encode(value) == wire


def test_subclasses_of_builtins_become_their_repr() -> None:
    class Name(str):
        pass

    assert round_trip(Name("n")) == "'n'"
    assert round_trip(True) is True and round_trip(1) == 1 and type(round_trip(1)) is int


def test_deep_and_cyclic_values_are_cut() -> None:
    deep: list[Any] = []
    for _ in range(MAX_DEPTH + 10):
        deep = [deep]
    got = round_trip(deep)
    for _ in range(MAX_DEPTH):
        got = got[0]
    assert got == "<list of 1 items, not encoded>"
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    assert round_trip(cyclic) == [1, "<list of 2 items, not encoded>"]


def test_budget_bounds_the_output() -> None:
    encoder = ValueEncoder(budget=1000)
    wire = orjson.dumps(encoder.encode(["x" * 600, "y" * 600, b"z" * 600, [1] * 10]))
    assert len(wire) < 1000
    assert b"over the payload's size budget" in wire


@pytest.mark.parametrize(
    "data",
    [
        {"$nope": 1},
        {"$bytes": "a", "b": 1},
        {"a": 1, "$b": 2},
        {"$tuple": "ab"},
        {"$set": {"a": 1}},
        {"$int": " 1"},
        {"$int": "1.0"},
        {"$float": "Infinity"},
        {"$bytes": "not base64!"},
        {"$exc": 0},  # no exceptions to refer to here
        {"$repr": 5},
    ],
)
def test_decoding_is_strict(data: Any) -> None:
    with pytest.raises(MalformedMessage):
        ValueDecoder().decode(data)


def test_safe_repr_cuts_addresses_and_length() -> None:
    assert "0x" not in safe_repr(object())
    assert len(safe_repr("x" * 10_000)) == 2000
