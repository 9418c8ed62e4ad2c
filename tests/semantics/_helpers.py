"""Small helpers shared by the core tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import dasync
from dasync._engine import StepRecord, decode_step


async def wait_until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Yield to the loop until ``condition()`` holds; fail after ``within`` real seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within}s: {condition}")
        await asyncio.sleep(0.001)


def journal(rt: dasync.Runtime, service: str, routine_id: str) -> list[StepRecord]:
    """The decoded journal of one routine, from the runtime's memory broker."""
    assert rt.broker is not None
    return [decode_step(e) for e in rt.broker.journals.get((service, routine_id), [])]
