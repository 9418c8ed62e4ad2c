"""Fixtures: the shop example and the console's test services on the session's NATS
server (a namespace of the module's own), and a gateway with its console on a real
uvicorn server on a free port of 127.0.0.1. One deployment serves every test of a
module: starting it costs more than most tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest_asyncio

import dasync
from dasync._gateway import gateway_app, serving
from dasync.transports.nats import connect_nats
from tests.conftest import delete_namespace, nats_options
from tests.management.conftest import shop_module

from ._services import (
    Breaking,
    Echo,
    EchoImpl,
    Flaky,
    FlakyImpl,
    Holder,
    HolderImpl,
    Relay,
    RelayImpl,
)

WAIT = 20.0


@dataclass
class Deployment:
    url: str
    """The gateway's base URL (the console is at ``url + "/console/"``)."""
    http: httpx.AsyncClient
    client: dasync.Client
    runtime: dasync.Runtime


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not await condition():
        assert loop.time() < deadline, f"not within {WAIT} s: {what}"
        await asyncio.sleep(0.05)


async def status_is_(client: dasync.Client, service: str, rid: str, *statuses: str) -> bool:
    """The index says the routine is in one of ``statuses``."""
    try:
        entry = await client.find_routine(rid, service)
    except LookupError:
        return False
    return entry.status in statuses


async def started(client: dasync.Client, method: Any, *args: Any, **kw: Any) -> str:
    """Start a routine and wait until the index lists it; its id."""
    handle = await client.start(method, *args, **kw)
    handle.detach()

    async def listed() -> bool:
        try:
            await client.find_routine(handle.routine_id, handle.service)
            return True
        except LookupError:
            return False

    await until(listed, f"{handle} in the index")
    return handle.routine_id


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def deployment(nats_session_server: Any) -> AsyncIterator[Deployment]:
    shop = shop_module()
    url = nats_session_server.url
    namespace = f"c{uuid.uuid4().hex[:12]}"
    transport, store = await connect_nats(nats_options(url, namespace))
    runtime = dasync.Runtime(
        [shop.PaymentService, shop.WarehouseService, shop.OnlineShop]
        + [HolderImpl, RelayImpl, EchoImpl],
        container=shop.container,
        transport=transport,
        store=store,
        retention=None,
    )
    transport, store = await connect_nats(nats_options(url, namespace))
    breaking = dasync.Runtime(
        [FlakyImpl],
        transport=transport,
        store=store,
        retention=None,
        poison_after=2,  # a worker's own failure: dead-lettered at its second attempt
        observers=[Breaking()],
    )
    contracts = [shop.Shop, shop.Payments, shop.Warehouse, Holder, Relay, Flaky, Echo]
    try:
        async with runtime, breaking:
            app = gateway_app(contracts, client=runtime.client, console=True)
            async with serving(app, "127.0.0.1", 0) as where:
                async with httpx.AsyncClient(base_url=where.url, timeout=30.0) as http:
                    yield Deployment(where.url, http, runtime.client, runtime)
    finally:
        await delete_namespace(url, namespace)
