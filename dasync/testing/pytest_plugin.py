"""pytest plugin (registered through the ``pytest11`` entry point): no configuration needed.

Gives users' test suites a ``dasync_runtime`` fixture: a factory that starts services in
this process on the memory transport, in virtual time, and closes them after the test::

    async def test_order(dasync_runtime):
        rt = await dasync_runtime([Shop, Payments])
        assert await rt.client.proxy(ShopContract).place_order("book", 1) == "ok"

An ``async def`` test that takes a dasync fixture, or is marked ``@pytest.mark.dasync``,
runs on an event loop whatever the set-up:

* **pytest-asyncio active, auto mode**: it runs the test, as any other;
* **pytest-asyncio active, strict mode** (its default): the plugin marks such tests
  ``asyncio`` while they are collected, so pytest-asyncio runs them, and the fixture is a
  ``pytest_asyncio.fixture``, so it is set up and torn down on the test's loop;
* **no pytest-asyncio** (not installed, or ``-p no:asyncio``): the plugin runs such tests
  itself, each on a new loop (``asyncio.Runner``), and closes the fixture's runtimes on
  that loop before the loop closes; the fixture is then a plain one.

We mark and defer rather than always run the tests ourselves because with pytest-asyncio
active, its auto mode takes every ``async def`` test at collection, and its loop is the
one the user's own async fixtures live on: a second runner would split them apart.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Generator, Iterable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from .._runtime import Runtime
from ._environment import runtime

__all__ = ["RuntimeFactory"]

_FIXTURES = frozenset({"dasync_runtime"})
_OTHER_RUNNERS = ("anyio", "trio", "asyncio")
"""Markers of tests another plugin runs: the plugin leaves those alone."""


class RuntimeFactory:
    """The ``dasync_runtime`` fixture: ``await dasync_runtime(services, **options)`` starts
    ``dasync.testing.runtime(services, **options)`` and returns its ``Runtime``; every
    runtime it started is closed after the test, on the test's event loop."""

    def __init__(self) -> None:
        self._stack = AsyncExitStack()

    async def __call__(self, services: Iterable[type], **options: Any) -> Runtime:
        return await self._stack.enter_async_context(runtime(services, **options))

    async def aclose(self) -> None:
        await self._stack.aclose()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "dasync: run this async test on an event loop (pytest-asyncio's when it is active, "
        "the dasync plugin's otherwise)",
    )
    if _asyncio_active(config):
        config.pluginmanager.register(_with_pytest_asyncio(), "dasync-fixtures")
    else:
        config.pluginmanager.register(_OwnLoop(), "dasync-fixtures")


def _asyncio_active(config: pytest.Config) -> bool:
    return config.pluginmanager.has_plugin("asyncio")


def _wants_loop(item: pytest.Function) -> bool:
    """An ``async def`` test this plugin sees to: it takes a dasync fixture or is marked."""
    if not inspect.iscoroutinefunction(item.obj):
        return False
    return item.get_closest_marker("dasync") is not None or not _FIXTURES.isdisjoint(
        item.fixturenames
    )


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Generator[None, Any, Any]:
    # trylast: inside pytest-asyncio's own wrapper, which turns the items it finds marked
    # ``asyncio`` into its async items once this returns
    result = yield
    if not _asyncio_active(collector.config):
        return result
    items = result if isinstance(result, list) else [result]
    for item in items:
        if (
            isinstance(item, pytest.Function)
            and item.get_closest_marker("asyncio") is None
            and _wants_loop(item)
        ):
            item.add_marker(pytest.mark.asyncio)
    return result


def _with_pytest_asyncio() -> object:
    """Fixtures when pytest-asyncio runs the tests: async ones, on the test's loop (a class
    made here: pytest looks fixtures up on a plugin's class, and this one needs the import)."""
    import pytest_asyncio

    class WithPytestAsyncio:
        @pytest_asyncio.fixture
        async def dasync_runtime(self) -> AsyncIterator[RuntimeFactory]:
            """Factory: ``await dasync_runtime(services, **options)`` -> a started Runtime."""
            factory = RuntimeFactory()
            try:
                yield factory
            finally:
                await factory.aclose()

    return WithPytestAsyncio()


class _OwnLoop:
    """Without pytest-asyncio: a plain fixture, and the tests that use it run here."""

    @pytest.fixture
    def dasync_runtime(self) -> RuntimeFactory:
        """Factory: ``await dasync_runtime(services, **options)`` -> a started Runtime."""
        return RuntimeFactory()

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        if not _wants_loop(pyfuncitem) or any(
            pyfuncitem.get_closest_marker(m) is not None for m in _OTHER_RUNNERS
        ):
            return None
        funcargs = pyfuncitem.funcargs
        kwargs = {name: funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        factories = [v for v in funcargs.values() if isinstance(v, RuntimeFactory)]

        async def run() -> None:
            try:
                await pyfuncitem.obj(**kwargs)
            finally:
                for factory in factories:
                    await factory.aclose()

        with asyncio.Runner() as runner:
            runner.run(run())
        return True
