"""Small helpers for the NATS tests: wait on conditions, record deliveries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from dasync.transports import Delivery, Message


async def wait_until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.005)


@dataclass
class Received:
    message: Message
    attempt: int
    at: float
    delivery: Delivery


class Recorder:
    """A handler that records every delivery; ``settle`` decides what to do with it."""

    def __init__(self, settle: Callable[[Delivery], Awaitable[None]] | None = None) -> None:
        self.queue: asyncio.Queue[Received] = asyncio.Queue()
        self.all: list[Received] = []
        self.settle = settle

    async def __call__(self, delivery: Delivery) -> None:
        item = Received(delivery.message, delivery.attempt, time.time(), delivery)
        self.all.append(item)
        self.queue.put_nowait(item)
        if self.settle is None:
            await delivery.ack()
        else:
            await self.settle(delivery)

    async def next(self, within: float = 10.0) -> Received:
        return await asyncio.wait_for(self.queue.get(), within)

    async def nothing_within(self, seconds: float) -> None:
        try:
            item = await asyncio.wait_for(self.queue.get(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected delivery {item.message.msg_id} (attempt {item.attempt})")


def msg(msg_id: str, body: bytes = b"", deliver_at: float | None = None, **headers: str) -> Message:
    return Message(msg_id, {"dasync-test": "1", **headers}, body, deliver_at)
