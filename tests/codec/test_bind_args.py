"""``bind_args``' positional fast path binds exactly as ``inspect.Signature.bind`` does."""

from __future__ import annotations

from typing import Any, Protocol

import pytest

from dasync._codec import bind_args
from dasync._contract import spec_of
from dasync._errors import InvalidArguments


class Shapes(Protocol):
    async def plain(self, x: int, y: str = "d") -> int: ...
    async def only(self, x: int, /, z: int = 0) -> int: ...
    async def keyword(self, x: int, *, k: int = 1) -> int: ...
    async def none(self) -> int: ...


SPEC = spec_of(Shapes)


def _by_inspect(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    method = SPEC.methods[name]
    bound = method.signature.bind(None, *args, **kwargs)
    values = dict(bound.arguments)
    values.pop(next(iter(method.signature.parameters)))
    return values


CALLS = [
    ("plain", (1,), {}),
    ("plain", (1, "z"), {}),
    ("plain", (), {"x": 1}),
    ("plain", (1,), {"y": "k"}),
    ("only", (1,), {}),
    ("only", (1, 2), {}),
    ("keyword", (1,), {}),
    ("keyword", (1,), {"k": 2}),
    ("none", (), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), CALLS)
def test_binds_as_inspect_does(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    assert bind_args(SPEC.methods[name], args, kwargs) == _by_inspect(name, args, kwargs)


@pytest.mark.parametrize(
    ("name", "args", "why"),
    [
        ("plain", (), "missing a required argument: 'x'"),
        ("plain", (1, "a", 3), "too many positional arguments"),
        ("none", (1,), "too many positional arguments"),
    ],
)
def test_a_wrong_call_names_what_is_wrong(name: str, args: tuple[Any, ...], why: str) -> None:
    with pytest.raises(InvalidArguments, match=why):
        bind_args(SPEC.methods[name], args, {})
