"""Callee exceptions raised at the caller's await; try/except/finally; sagas."""

from __future__ import annotations

from typing import Protocol

import pytest

import dasync


class OutOfStock(Exception):
    def __init__(self, item: str, wanted: int) -> None:
        super().__init__(item, wanted)
        self.item = item
        self.wanted = wanted


def _make_hidden_error() -> type[Exception]:
    class HiddenError(Exception):
        """Defined in a function: not importable by its qualified name."""

    return HiddenError


HiddenError = _make_hidden_error()


class Warehouse(Protocol):
    async def reserve(self, item: str, qty: int) -> str: ...
    async def broken(self, what: str) -> None: ...
    async def hidden(self, msg: str) -> None: ...
    async def release(self, item: str) -> None: ...


class WarehouseImpl(Warehouse):
    def __init__(self) -> None:
        self.stock = {"tea": 1}
        self.released: list[str] = []

    async def reserve(self, item: str, qty: int) -> str:
        if self.stock.get(item, 0) < qty:
            raise OutOfStock(item, qty)
        return f"reserved {qty} {item}"

    async def broken(self, what: str) -> None:
        raise KeyError(what)

    async def hidden(self, msg: str) -> None:
        raise HiddenError(msg)

    async def release(self, item: str) -> None:
        self.released.append(item)


class Payments(Protocol):
    async def credit(self, amount: int) -> str: ...
    async def debit(self, tx: str) -> None: ...


class PaymentsImpl(Payments):
    def __init__(self) -> None:
        self.log: list[str] = []

    async def credit(self, amount: int) -> str:
        self.log.append(f"credit {amount}")
        return f"tx-{amount}"

    async def debit(self, tx: str) -> None:
        self.log.append(f"debit {tx}")


class Shop(Protocol):
    async def order(self, item: str, qty: int) -> str: ...
    async def details(self, item: str, qty: int) -> list[str]: ...
    async def with_finally(self, item: str) -> list[str]: ...
    async def builtin(self) -> str: ...
    async def unimportable(self) -> list[str]: ...
    async def uncaught(self, item: str) -> str: ...
    async def own_error(self) -> str: ...


class ShopImpl(Shop):
    def __init__(self, warehouse: Warehouse, payments: Payments) -> None:
        self.warehouse = warehouse
        self.payments = payments

    async def order(self, item: str, qty: int) -> str:
        tx = await self.payments.credit(qty * 10)
        try:
            await self.warehouse.reserve(item, qty)
        except OutOfStock:
            await self.payments.debit(tx)  # compensation
            return "refunded"
        return "ok"

    async def details(self, item: str, qty: int) -> list[str]:
        try:
            await self.warehouse.reserve(item, qty)
        except OutOfStock as exc:
            return [type(exc).__name__, exc.item, str(exc.wanted), repr(exc.args)]
        return []

    async def with_finally(self, item: str) -> list[str]:
        steps = []
        try:
            steps.append("try")
            await self.warehouse.reserve(item, 5)
        except OutOfStock:
            steps.append("except")
            raise
        finally:
            await self.warehouse.release(item)  # a durable call inside finally
            steps.append("finally")
        return steps

    async def builtin(self) -> str:
        try:
            await self.warehouse.broken("lost key")
        except KeyError as exc:
            return f"KeyError {exc.args[0]}"
        return "no error"

    async def unimportable(self) -> list[str]:
        try:
            await self.warehouse.hidden("secret reason")
        except dasync.RemoteError as exc:
            return [exc.type_name, exc.message, exc.traceback]
        return []

    async def uncaught(self, item: str) -> str:
        return await self.warehouse.reserve(item, 99)

    async def own_error(self) -> str:
        await self.payments.credit(1)
        raise OutOfStock("own", 3)


SERVICES = [WarehouseImpl, PaymentsImpl, ShopImpl]


async def test_saga_compensates_when_a_step_fails(make_runtime):
    async with make_runtime(SERVICES) as rt:
        shop = rt.client.proxy(Shop)
        assert await shop.order("tea", 1) == "ok"
        assert await shop.order("tea", 2) == "refunded"
        assert rt.instance_of(PaymentsImpl).log == ["credit 10", "credit 20", "debit tx-20"]


async def test_custom_exception_keeps_class_and_args(make_runtime):
    async with make_runtime(SERVICES) as rt:
        got = await rt.client.proxy(Shop).details("coffee", 3)
        assert got == ["OutOfStock", "coffee", "3", "('coffee', 3)"]


async def test_finally_runs_durable_calls_and_exception_propagates(make_runtime):
    async with make_runtime(SERVICES) as rt:
        with pytest.raises(OutOfStock) as info:
            await rt.client.proxy(Shop).with_finally("tea")
        assert info.value.args == ("tea", 5)
        assert rt.instance_of(WarehouseImpl).released == ["tea"]


async def test_builtin_exception_is_the_same_class(make_runtime):
    async with make_runtime(SERVICES) as rt:
        assert await rt.client.proxy(Shop).builtin() == "KeyError lost key"


async def test_unimportable_exception_becomes_remote_error(make_runtime):
    async with make_runtime(SERVICES) as rt:
        type_name, message, traceback = await rt.client.proxy(Shop).unimportable()
    assert type_name.endswith("HiddenError")
    assert "_make_hidden_error" in type_name  # the qualified name says where it came from
    assert message == "secret reason"
    assert "test_exceptions.py" in traceback and "raise HiddenError(msg)" in traceback


async def test_uncaught_callee_exception_reaches_the_client_through_two_hops(make_runtime):
    async with make_runtime(SERVICES) as rt:
        with pytest.raises(OutOfStock) as info:
            await rt.client.proxy(Shop).uncaught("tea")
        assert (info.value.item, info.value.wanted) == ("tea", 99)
        notes = "\n".join(getattr(info.value, "__notes__", []))
        assert "raise OutOfStock(item, qty)" in notes  # the remote traceback is attached


async def test_routine_raising_its_own_exception(make_runtime):
    async with make_runtime(SERVICES) as rt:
        with pytest.raises(OutOfStock) as info:
            await rt.client.proxy(Shop).own_error()
        assert info.value.args == ("own", 3)


async def test_remote_error_directly_from_client(make_runtime):
    async with make_runtime(SERVICES) as rt:
        with pytest.raises(dasync.RemoteError) as info:
            await rt.client.proxy(Warehouse).hidden("boom")
        assert info.value.message == "boom"
        assert "HiddenError" in info.value.type_name
        assert "HiddenError: boom" in str(info.value)
