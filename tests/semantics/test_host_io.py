"""Routines awaiting real I/O of the host loop (the engine's ``_Bridge``).

A routine runs on its own deterministic loop, but it may await futures that
belong to the host loop (a database driver's, a socket's): the step stays open
until the I/O is done, so a step never commits half-way through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

import pytest

import dasync
from dasync.testing import runtime

from ._helpers import steps, wait_until

HOST: dict[str, Any] = {}
"""Objects the test creates on its own loop and hands to the routines."""


class Echo(Protocol):
    async def shout(self, text: str) -> str: ...


class EchoImpl(Echo):
    async def shout(self, text: str) -> str:
        return text.upper()


class Io(Protocol):
    async def wait_future(self) -> str: ...
    async def use_stream(self, text: str) -> str: ...
    async def connect_on_host(self, port: int, text: str) -> str: ...
    async def wait_event(self) -> str: ...
    async def connect_in_routine(self, port: int) -> str: ...
    async def wait_event_via_io(self) -> str: ...
    async def connect_via_io(self, port: int, text: str) -> str: ...


class IoImpl(Io):
    def __init__(self, echo: Echo) -> None:
        self.echo = echo
        self.host_loop = asyncio.get_running_loop()  # services are built on the host loop

    async def wait_future(self) -> str:
        HOST["waiting"] = True
        value = await HOST["future"]  # a future of the test's loop
        return await self.echo.shout(value)

    async def use_stream(self, text: str) -> str:
        reader, writer = HOST["connection"]  # opened on the host loop by the test
        writer.write(text.encode() + b"\n")
        await writer.drain()
        line = await reader.readline()
        return await self.echo.shout(line.decode().strip())

    async def connect_on_host(self, port: int, text: str) -> str:
        # I/O that needs the running loop runs as a task of the host loop
        async def exchange() -> str:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(text.encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
            writer.close()
            await writer.wait_closed()
            return line.decode().strip()

        reply = await self.host_loop.create_task(exchange())
        return await self.echo.shout(reply)

    async def wait_event(self) -> str:
        HOST["waiting"] = True
        await HOST["event"].wait()
        return "set"

    async def connect_in_routine(self, port: int) -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"direct\n")
        line = await reader.readline()
        writer.close()
        return line.decode().strip()

    async def wait_event_via_io(self) -> str:
        HOST["waiting"] = True
        await dasync.io(HOST["event"].wait())
        return await self.echo.shout("set")

    async def connect_via_io(self, port: int, text: str) -> str:
        async def exchange() -> str:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(text.encode() + b"\n")
            line = await reader.readline()
            writer.close()
            await writer.wait_closed()
            return line.decode().strip()

        return await self.echo.shout(await dasync.io(exchange()))


@pytest.fixture
async def echo_server() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(b"echo " + line)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_awaiting_a_host_future(make_runtime):
    HOST.clear()
    HOST["future"] = asyncio.get_running_loop().create_future()
    async with make_runtime([EchoImpl, IoImpl]) as rt:
        handle = await rt.client.start(Io.wait_future, routine_id="io-1")
        await wait_until(lambda: HOST.get("waiting", False))
        assert await steps(rt, "Io", "io-1") == []  # the first step is still open
        HOST["future"].set_result("from the host")
        assert await handle.result(timeout=10) == "FROM THE HOST"


async def test_a_failing_host_future_raises_in_the_routine(make_runtime):
    HOST.clear()
    fut = HOST["future"] = asyncio.get_running_loop().create_future()
    fut.set_exception(ConnectionResetError("peer went away"))
    async with make_runtime([EchoImpl, IoImpl]) as rt:
        with pytest.raises(ConnectionResetError, match="peer went away"):
            await rt.client.proxy(Io).wait_future()


async def test_using_a_stream_opened_on_the_host_loop(make_runtime, echo_server):
    HOST.clear()
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_server)
    HOST["connection"] = (reader, writer)
    try:
        async with make_runtime([EchoImpl, IoImpl]) as rt:
            io = rt.client.proxy(Io)
            assert await io.use_stream("one") == "ECHO ONE"
            assert await io.use_stream("two") == "ECHO TWO"
    finally:
        writer.close()
        await writer.wait_closed()


async def test_opening_a_connection_as_a_host_task(make_runtime, echo_server):
    async with make_runtime([EchoImpl, IoImpl]) as rt:
        results = await asyncio.gather(
            *(rt.client.proxy(Io).connect_on_host(echo_server, f"m{i}") for i in range(5))
        )
    assert results == [f"ECHO M{i}" for i in range(5)]


async def test_awaiting_a_host_event_directly_is_an_error_naming_the_loops():
    """A documented difference: asyncio primitives check the running loop, so an Event bound
    to the host loop cannot be awaited on the routine's loop; dasync.io(event.wait()) can."""
    HOST.clear()
    event = HOST["event"] = asyncio.Event()
    waiter = asyncio.create_task(event.wait())  # binds the event to the host loop
    await asyncio.sleep(0)
    async with runtime([EchoImpl, IoImpl]) as rt:
        handle = await rt.client.start(Io.wait_event)
        with pytest.raises(RuntimeError, match="bound to a different event loop"):
            await handle.result(timeout=10)
    event.set()
    await waiter


async def test_open_connection_directly_in_a_routine_says_to_use_dasync_io(echo_server):
    """A documented difference: the routine's loop does no I/O itself."""
    async with runtime([EchoImpl, IoImpl]) as rt:
        with pytest.raises(NotImplementedError, match=r"dasync\.io"):
            await rt.client.proxy(Io).connect_in_routine(echo_server)


async def test_dasync_io_awaits_a_host_event(make_runtime):
    HOST.clear()
    event = HOST["event"] = asyncio.Event()
    async with make_runtime([EchoImpl, IoImpl]) as rt:
        handle = await rt.client.start(Io.wait_event_via_io, routine_id="io-event")
        await wait_until(lambda: HOST.get("waiting", False))
        assert await steps(rt, "Io", "io-event") == []  # the step waits for the I/O
        event.set()
        assert await handle.result(timeout=10) == "SET"


async def test_dasync_io_opens_connections_from_a_routine(make_runtime, echo_server):
    async with make_runtime([EchoImpl, IoImpl]) as rt:
        results = await asyncio.gather(
            *(rt.client.proxy(Io).connect_via_io(echo_server, f"x{i}") for i in range(5))
        )
    assert results == [f"ECHO X{i}" for i in range(5)]


async def test_dasync_io_outside_a_routine_just_awaits():
    async def value() -> int:
        return 7

    assert await dasync.io(value()) == 7
