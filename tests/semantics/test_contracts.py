"""Contract and service validation: every problem is reported at once."""

from __future__ import annotations

from typing import Protocol

import pytest

import dasync
from dasync.testing import runtime


def test_contract_problems_are_listed_together():
    class Bad(Protocol):
        async def no_annotation(self, x) -> int: ...  # type: ignore[no-untyped-def]
        def not_async(self, x: int) -> int: ...
        async def no_return(self, y: int): ...  # type: ignore[no-untyped-def]
        async def varargs(self, *rest: int) -> None: ...

    with pytest.raises(dasync.ContractError) as info:
        dasync.spec_of(Bad)
    message = str(info.value)
    assert "Bad.no_annotation: parameter 'x' has no type annotation" in message
    assert "Bad.not_async" in message and "async def" in message
    assert "Bad.no_return" in message and "return type" in message
    assert "Bad.varargs" in message and "*rest" in message
    assert isinstance(info.value, TypeError)


async def test_service_problems_are_listed_together():
    class Contract(Protocol):
        async def one(self, x: int) -> int: ...
        async def two(self) -> str: ...

    class Impl(Contract):
        def one(self, x: int) -> int:  # type: ignore[override]
            return x

    with pytest.raises(dasync.ContractError) as info:
        async with runtime([Impl]):
            pass
    message = str(info.value)
    assert "Impl.one: must be implemented as 'async def'" in message
    assert "Impl.two: contract method is not implemented" in message


class Opaque:
    """No schema can be generated for it."""


def test_unencodable_types_are_reported():
    class Contract(Protocol):
        async def take(self, thing: Opaque) -> int: ...

    class Impl(Contract):
        async def take(self, thing: Opaque) -> int:
            return 1

    from dasync._service import validate_service

    with pytest.raises(dasync.ContractError) as info:
        validate_service(Impl)
    assert "Contract.take" in str(info.value) and "cannot be encoded" in str(info.value)


def test_a_service_is_validated_once_and_again_when_a_method_changes():
    """The spec is kept on the class (a Runtime per test builds the same one); replacing a
    method afterwards is seen: a sync replacement of a routine is refused."""

    class Contract(Protocol):
        async def get(self, x: int) -> int: ...

    class Impl(Contract):
        async def get(self, x: int) -> int:
            return x

    from dasync._service import validate_service

    first = validate_service(Impl)
    assert validate_service(Impl) is first  # kept

    async def extra(self, y: str) -> str:  # type: ignore[no-untyped-def]
        return y

    Impl.extra = extra  # type: ignore[attr-defined]
    second = validate_service(Impl)
    assert second is not first and second.methods["extra"].params[0].name == "y"

    def get(self, x: int) -> int:  # type: ignore[no-untyped-def]
        return x

    Impl.get = get  # type: ignore[method-assign]
    with pytest.raises(dasync.ContractError, match="must be implemented as 'async def'"):
        validate_service(Impl)


def test_a_class_that_is_no_service():
    class Plain:
        async def run(self) -> None: ...

    from dasync._contract import contract_of

    with pytest.raises(dasync.ContractError, match="not a dasync service"):
        contract_of(Plain)


async def test_service_decorator_makes_a_class_its_own_contract():
    @dasync.service(name="Calc")
    class Calculator:
        async def add(self, a: int, b: int) -> int:
            return a + b

        def _helper(self) -> None: ...

    assert dasync.spec_of(Calculator).name == "Calc"
    assert list(dasync.spec_of(Calculator).methods) == ["add"]
    async with runtime([Calculator]) as rt:
        assert await rt.client.proxy(Calculator).add(2, 3) == 5
