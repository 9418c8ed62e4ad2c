"""End to end: workflows run by dasync.Runtime on NATS JetStream."""

from __future__ import annotations

import asyncio
from typing import Protocol

import dasync

from ._helpers import wait_until


class OutOfStock(Exception):
    pass


class Payments(Protocol):
    async def pay(self, amount: int) -> str: ...
    async def refund(self, tx: str) -> None: ...


class Warehouse(Protocol):
    async def reserve(self, item: str) -> None: ...


class PaymentService(Payments):
    def __init__(self) -> None:
        self.paid: dict[str, int] = {}
        self.refunded: list[str] = []

    async def pay(self, amount: int) -> str:
        self.paid[dasync.call_id()] = amount  # effects keyed by call id
        return f"tx{len(self.paid)}"

    async def refund(self, tx: str) -> None:
        self.refunded.append(tx)


class WarehouseService(Warehouse):
    async def reserve(self, item: str) -> None:
        await asyncio.sleep(0.2)  # a durable timer
        if item == "unicorn":
            raise OutOfStock(item)


@dasync.service
class Shop:
    def __init__(self, payments: Payments, warehouse: Warehouse) -> None:
        self.payments = payments
        self.warehouse = warehouse

    async def order(self, item: str) -> str:
        tx = await self.payments.pay(10)
        try:
            await self.warehouse.reserve(item)
        except OutOfStock:
            await self.payments.refund(tx)
            return "refunded"
        a, b = await asyncio.gather(self.half(1), self.half(2))
        return f"ok {tx} {a + b}"

    async def half(self, n: int) -> int:
        await asyncio.sleep(0.1 * n)
        return n * 10


SERVICES = [PaymentService, WarehouseService, Shop]


async def test_a_saga_runs_on_nats(connect):
    transport, store = await connect()
    async with dasync.Runtime(SERVICES, transport=transport, store=store) as rt:
        shop = rt.client.proxy(Shop)
        assert (await asyncio.wait_for(shop.order("book"), 20)).startswith("ok tx")
        assert await asyncio.wait_for(shop.order("unicorn"), 20) == "refunded"
        payments = rt.instance_of(PaymentService)
        assert len(payments.paid) == 2
        assert len(payments.refunded) == 1


async def test_many_workflows_in_parallel_with_forced_replay(connect):
    transport, store = await connect()
    async with dasync.Runtime(SERVICES, transport=transport, store=store, force_replay=True) as rt:
        shop = rt.client.proxy(Shop)
        results = await asyncio.wait_for(
            asyncio.gather(*(shop.order(f"item{i}") for i in range(10))), 30
        )
        assert all(r.startswith("ok tx") for r in results)
        assert len(rt.instance_of(PaymentService).paid) == 10
        assert rt.worker.stats.replays > 0


async def _two_workers(connect, **runtime_options) -> None:
    (t1, s1), (t2, s2) = await connect(), await connect()
    async with (
        dasync.Runtime(SERVICES, transport=t1, store=s1, **runtime_options) as rt1,
        dasync.Runtime(SERVICES, transport=t2, store=s2, **runtime_options) as rt2,
    ):
        shop = rt1.client.proxy(Shop)
        results = await asyncio.wait_for(
            asyncio.gather(*(shop.order(f"item{i}") for i in range(8))), 20
        )
        assert all(r.startswith("ok tx") for r in results)
        p1, p2 = rt1.instance_of(PaymentService).paid, rt2.instance_of(PaymentService).paid
        assert len({**p1, **p2}) == 8 == len(p1) + len(p2)  # one execution per call id


async def test_two_workers_share_services_and_calls_run_once(connect):
    await _two_workers(connect, force_replay=True)


async def test_two_caching_workers_share_services(connect):
    await _two_workers(connect)


async def test_a_killed_worker_is_replaced_and_the_workflow_completes(connect):
    t1, s1 = await connect(ack_wait=1.0)
    rt1 = dasync.Runtime(SERVICES, transport=t1, store=s1)
    await rt1.start()
    handle = await rt1.client.start(Shop.order, "book", routine_id="order-kill-1")
    journal_started = lambda: bool(rt1.worker.stats.activations)  # noqa: E731
    await wait_until(journal_started)
    rt1.kill()

    t2, s2 = await connect(ack_wait=1.0)
    async with dasync.Runtime(SERVICES, transport=t2, store=s2) as rt2:
        again = rt2.client.handle(Shop.order, handle.routine_id)
        result = await asyncio.wait_for(again.result(), 20)
        assert result.startswith("ok tx")
    await s1.close()


async def test_dasync_connect_reaches_a_runtime_over_nats(connect, nats_server):
    transport, store = await connect()
    async with dasync.Runtime(SERVICES, transport=transport, store=store):
        async with dasync.connect(nats_server.url) as client:
            shop = client.proxy(Shop)
            assert await asyncio.wait_for(shop.order("unicorn"), 20) == "refunded"
