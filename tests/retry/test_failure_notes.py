"""Every handle on a routine whose message was set aside returns what its caller was told,
on both transports; once the letter is retried, handles wait for the new outcome."""

from __future__ import annotations

import asyncio
from typing import Protocol

import pytest

import dasync
from dasync.transports import DeadLetters

from ..conftest import Backend

LIMIT = 2_000
"""The workers' payload limit: a start with a bigger argument is set aside at once."""


class Echo(Protocol):
    async def echo(self, text: str) -> str: ...


class EchoImpl(Echo):
    async def echo(self, text: str) -> str:
        return text[:10]


async def _letter(transport: DeadLetters, queue: str) -> str:
    for _ in range(500):
        letters = await transport.dead_letters(queue)
        if letters:
            return letters[-1].id
        await asyncio.sleep(0.02)
    raise AssertionError(f"no dead letter in {queue}")


async def test_a_handle_made_elsewhere_gets_the_failure_the_caller_got(backend: Backend) -> None:
    big = "x" * (LIMIT * 2)
    async with backend.runtime([], retention=None) as caller:
        async with backend.runtime([EchoImpl], max_payload=LIMIT) as worker:
            handle = await caller.client.start(Echo.echo, big, routine_id="too-big")
            with pytest.raises(dasync.InvalidArguments) as told:
                await handle.result(timeout=30)
            assert f"over the limit of {LIMIT} bytes" in str(told.value)

            # another client, which never saw the reply: the same outcome, not a timeout
            loop = asyncio.get_running_loop()
            began = loop.time()
            with pytest.raises(dasync.InvalidArguments) as seen:
                await worker.client.handle(Echo.echo, "too-big").result(timeout=30)
            assert str(seen.value) == str(told.value)
            assert loop.time() - began < 5, "read from the note, not waited out"
            assert isinstance(worker.transport, DeadLetters)
            letter = await _letter(worker.transport, "Echo")

        # fixed (a worker that takes bigger payloads), the letter is retried: handles made
        # before and after the retry wait for the routine's real result
        async with backend.runtime([EchoImpl], max_payload=LIMIT * 4) as fixed:
            stale = fixed.client.handle(Echo.echo, "too-big")
            await fixed.client.retry_dead_letter("Echo", letter)
            assert await stale.result(timeout=30) == "x" * 10
            assert await caller.client.handle(Echo.echo, "too-big").result(timeout=30) == "x" * 10
            with pytest.raises(LookupError, match="no dead letter"):
                await fixed.client.retry_dead_letter("Echo", letter)
