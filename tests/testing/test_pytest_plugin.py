"""The pytest plugin needs no configuration: generated test files run with pytest-asyncio in
strict mode (its default), in auto mode, and with pytest-asyncio disabled."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

QUIET = ("-p", "no:cacheprovider", "-W", "error", "-W", "ignore::pytest.PytestDeprecationWarning")
"""Warnings are errors, but one: pytest-asyncio 1.x warns in every project that leaves
``asyncio_default_fixture_loop_scope`` unset (its own advice, about its own option)."""

SUITE = """
import asyncio
import time
from typing import Protocol

import pytest

import dasync
import dasync.testing


class Greeter(Protocol):
    greeted: dasync.Event[str] = dasync.Event()

    async def greet(self, name: str) -> str: ...


class GreeterService(Greeter):
    async def greet(self, name: str) -> str:
        await asyncio.sleep(86_400)  # a day: virtual time
        self.greeted(name)
        return f"hello {name} from {dasync.call_id()}"


async def test_fixture(dasync_runtime):
    rt = await dasync_runtime([GreeterService])
    started = time.perf_counter()
    assert (await rt.client.proxy(Greeter).greet("ann")).startswith("hello ann")
    assert time.perf_counter() - started < 5


async def test_two_runtimes_in_one_test(dasync_runtime):
    first = await dasync_runtime([GreeterService])
    second = await dasync_runtime([GreeterService])
    assert first is not second


@pytest.mark.dasync
async def test_marked_unit_test():
    svc = dasync.testing.instantiate(GreeterService)
    assert await svc.greet("bob") == "hello bob from test/Greeter.greet.1"
    assert dasync.testing.fired(svc) == [("greeted", "bob")]


async def _helper():
    return 1
"""


@pytest.fixture(autouse=True)
def _isolated(pytester: pytest.Pytester) -> None:
    """An ini file of its own, so no configuration above the temporary folder applies."""
    pytester.makeini("[pytest]\n")


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def test_strict_mode_is_enough(suite: pytest.Pytester) -> None:
    """pytest-asyncio's default mode, no ini file: nothing to mark, nothing to configure."""
    result = suite.runpytest_inprocess(*QUIET)
    result.assert_outcomes(passed=3)


def test_auto_mode(suite: pytest.Pytester) -> None:
    suite.makeini("[pytest]\nasyncio_mode = auto\n")
    result = suite.runpytest_inprocess(*QUIET)
    result.assert_outcomes(passed=3)


def test_without_pytest_asyncio(suite: pytest.Pytester) -> None:
    result = suite.runpytest_inprocess(*QUIET, "-p", "no:asyncio")
    result.assert_outcomes(passed=3)


def test_runtimes_are_closed_on_the_tests_loop(pytester: pytest.Pytester) -> None:
    """The fixture's runtimes are closed after the test (even a failed one), on its loop."""
    pytester.makepyfile(
        test_close="""
import asyncio
from typing import Protocol

import pytest

OPEN = []


class Echo(Protocol):
    async def echo(self, text: str) -> str: ...


class EchoService(Echo):
    async def echo(self, text: str) -> str:
        return text


async def test_fails(dasync_runtime):
    rt = await dasync_runtime([EchoService])
    OPEN.append((rt, asyncio.get_running_loop()))
    assert await rt.client.proxy(Echo).echo("x") == "y"


def test_closed():
    [(rt, loop)] = OPEN
    assert not rt._started
"""
    )
    for options in ((), ("-p", "no:asyncio")):
        result = pytester.runpytest_inprocess(*QUIET, *options)
        result.assert_outcomes(passed=1, failed=1)


def test_other_async_tests_are_left_alone(pytester: pytest.Pytester) -> None:
    """Without pytest-asyncio the plugin runs only the async tests it is asked to."""
    pytester.makepyfile(
        test_other="""
async def test_not_ours():
    pass
"""
    )
    result = pytester.runpytest_inprocess(*QUIET, "-p", "no:asyncio")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])
