"""Dead letters are listed with their reason and can be put back, on both transports."""

from __future__ import annotations

import asyncio
from typing import Protocol

from dasync.transports import DeadLetters, Message


class Echo(Protocol):
    async def echo(self, text: str) -> str: ...


class EchoImpl(Echo):
    async def echo(self, text: str) -> str:
        return text


async def _letters(transport: DeadLetters, queue: str, count: int) -> list:
    for _ in range(500):
        letters = await transport.dead_letters(queue)
        if len(letters) >= count:
            return letters
        await asyncio.sleep(0.02)
    raise AssertionError(f"{queue}: expected {count} dead letters, found {letters}")


async def test_a_rejected_message_is_listed_with_its_reason_and_can_be_retried(make_runtime):
    async with make_runtime([EchoImpl]) as rt:
        transport = rt.transport
        assert isinstance(transport, DeadLetters)
        await transport.send("Echo", Message("junk-1", {"dasync-kind": "start"}, b"{}"))
        [letter] = await _letters(transport, "Echo", 1)
        assert letter.message.msg_id == "junk-1"
        assert "lacks valid dasync-kind/dasync-routine headers" in letter.reason
        assert await rt.client.proxy(Echo).echo("still serving") == "still serving"
        # retried as it is, it is rejected again: a new letter replaces the old one
        await transport.retry_dead_letter("Echo", letter.id)
        letters = await _letters(transport, "Echo", 1)
        assert [x.message.msg_id for x in letters] == ["junk-1~retry" + letter.id]
