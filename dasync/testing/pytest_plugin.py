"""pytest plugin (registered through the ``pytest11`` entry point).

Gives users' test suites a ``dasync_runtime`` fixture: a factory that starts
services in this process on the memory transport and closes them after the
test::

    async def test_order(dasync_runtime):
        rt = await dasync_runtime([Shop, Payments])
        assert await rt.client.proxy(ShopContract).place_order("book", 1) == "ok"
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from typing import Any

from .._runtime import Runtime
from ._environment import runtime

__all__ = ["dasync_runtime"]


async def _runtime_factory() -> AsyncIterator[Callable[..., Awaitable[Runtime]]]:
    async with AsyncExitStack() as stack:

        async def start(services: Iterable[type], **options: Any) -> Runtime:
            return await stack.enter_async_context(runtime(services, **options))

        yield start


try:  # pytest-asyncio is a test extra; without it the plugin offers nothing
    import pytest_asyncio
except ImportError:  # pragma: no cover
    pass
else:
    dasync_runtime = pytest_asyncio.fixture(_runtime_factory, name="dasync_runtime")
    """Factory: ``await dasync_runtime(services, **options)`` -> a started Runtime."""
