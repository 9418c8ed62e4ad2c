"""``instantiate`` with signals: ``send_signal`` before the wait, after it, against a
virtual deadline; a routine waiting for nothing still fails loudly."""

from __future__ import annotations

import asyncio
from typing import Protocol

import pytest

import dasync
from dasync.testing import clock_of, instantiate, send_signal


class Gate(Protocol):
    async def wait(self, seconds: float) -> str: ...

    async def two(self) -> list[int]: ...


class GateImpl(Gate):
    async def wait(self, seconds: float) -> str:
        try:
            async with asyncio.timeout(seconds):
                return "yes" if await dasync.signal("ok", bool) else "no"
        except TimeoutError:
            return "late"

    async def two(self) -> list[int]:
        return [await dasync.signal("n", int), await dasync.signal("n", int)]


@pytest.mark.dasync
async def test_a_signal_sent_before_the_wait_is_kept() -> None:
    svc = instantiate(GateImpl)
    send_signal(svc, "n", 1)
    send_signal(svc, "n", 2)
    assert await svc.two() == [1, 2]


@pytest.mark.dasync
async def test_a_signal_sent_while_it_waits_beats_a_later_deadline() -> None:
    svc = instantiate(GateImpl)
    began = clock_of(svc).now()
    with clock_of(svc).held():
        running = asyncio.ensure_future(svc.wait(3600))
        await asyncio.sleep(0.01)
        send_signal(svc, "ok", False)
        assert await running == "no"
    assert clock_of(svc).now() - began < 3600  # no hour went by


@pytest.mark.dasync
async def test_without_a_signal_the_deadline_passes_at_once() -> None:
    svc = instantiate(GateImpl)
    began = clock_of(svc).now()
    assert await asyncio.wait_for(svc.wait(86400), 5) == "late"
    assert clock_of(svc).now() - began >= 86400
