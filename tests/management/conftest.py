"""Fixtures: the shop example and the test services on the session's NATS server, in a
namespace of the module's own, and the ``dasync`` command run in this process."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest_asyncio

import dasync
from dasync.cli import main as cli_main
from dasync.transports.nats import connect_nats

from ..conftest import delete_namespace, nats_options

SHOP = Path(__file__).parents[2] / "examples" / "shop"
WAIT = 20.0


def shop_module() -> ModuleType:
    """``examples/shop/service.py``, imported as ``dasync run`` would (its folder on the path)."""
    known = sys.modules.get("management_shop")
    if known is not None:
        return known
    sys.path.insert(0, str(SHOP))
    spec = importlib.util.spec_from_file_location("management_shop", SHOP / "service.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["management_shop"] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Deployment:
    url: str
    namespace: str
    runtime: dasync.Runtime

    def argv(self, *args: str) -> list[str]:
        return [*args, "--nats", self.url, "--nats-namespace", self.namespace]

    async def cli(self, *args: str) -> tuple[int, str]:
        """``dasync ARGS --nats URL --nats-namespace NS`` in a thread: (status, output)."""
        return await asyncio.to_thread(_cli, *self.argv(*args))


def _cli(*argv: str) -> tuple[int, str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = cli_main(list(argv))
    return code, buffer.getvalue()


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not await condition():
        assert loop.time() < deadline, f"not within {WAIT} s: {what}"
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def deployment(nats_session_server: Any) -> AsyncIterator[Deployment]:
    from ._services import (
        ApproverImpl,
        Breaking,
        FickleImpl,
        FlakyImpl,
        LeafImpl,
        SleeperImpl,
        WaiterImpl,
    )

    shop = shop_module()
    url = nats_session_server.url
    namespace = f"m{uuid.uuid4().hex[:12]}"
    transport, store = await connect_nats(nats_options(url, namespace))
    services = [shop.PaymentService, shop.WarehouseService, shop.OnlineShop]
    runtime = dasync.Runtime(
        [*services, SleeperImpl, WaiterImpl, ApproverImpl],
        container=shop.container,
        transport=transport,
        store=store,
        retention=None,
    )
    transport, store = await connect_nats(nats_options(url, namespace))
    replaying = dasync.Runtime(
        [LeafImpl, FickleImpl],
        transport=transport,
        store=store,
        retention=None,
        force_replay=True,  # every step replays: a changed argument is a divergence
        on_divergence="park",
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
    try:
        async with runtime, replaying, breaking:
            yield Deployment(url, namespace, runtime)
    finally:
        await delete_namespace(url, namespace)
