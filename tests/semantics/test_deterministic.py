"""``dasync.uuid4/now/random/call_id``: recorded once, identical on every replay."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

import pytest

import dasync

SEEN: dict[str, list[tuple[UUID, datetime, float, str]]] = {}
NAP = 5.0
"""The durable sleep after each echo: 5 s (virtual) on memory, 0.05 s on NATS."""


class Echo(Protocol):
    async def echo(self, x: str) -> str: ...


class EchoImpl(Echo):
    async def echo(self, x: str) -> str:
        return x


class Ids(Protocol):
    async def values(self, rounds: int) -> list[str]: ...


class IdsImpl(Ids):
    def __init__(self, echo: Echo) -> None:
        self.echo = echo

    async def values(self, rounds: int) -> list[str]:
        u, t, r = dasync.uuid4(), dasync.now(), dasync.random()
        SEEN.setdefault(dasync.call_id(), []).append((u, t, r, dasync.call_id()))
        out = [str(u), t.isoformat(), repr(r)]
        for i in range(rounds):
            await self.echo.echo(str(i))  # each await is a step; forced replay re-runs the top
            await asyncio.sleep(NAP)
        out.append(str(dasync.uuid4()))
        out.append(dasync.now().isoformat())
        return out


async def test_values_are_stable_across_replay(make_runtime, replay_mode, timing):
    global NAP
    NAP = 5.0 if timing.virtual else 0.05
    SEEN.clear()
    async with make_runtime([EchoImpl, IdsImpl]) as rt:
        handle = await rt.client.start(Ids.values, 3, routine_id="ids-1")
        out = await handle.result(timeout=10)
        other = await rt.client.proxy(Ids).values(0)
    runs = SEEN["ids-1"]
    if replay_mode == "forced":
        assert len(runs) > 3  # the routine's code really ran again on each activation
    else:
        assert len(runs) == 1
    assert len(set(runs)) == 1  # ... and saw the same id, time and random number every time
    u, t, r, call = runs[0]
    assert call == "ids-1"
    assert out[:3] == [str(u), t.isoformat(), repr(r)]
    assert UUID(out[3]) != u and UUID(out[3]).version == 4
    assert 0.0 <= r < 1.0
    # routine time: the start's time, then moved by three timers
    end = datetime.fromisoformat(out[4])
    if timing.virtual:  # exactly, from the virtual clock's origin
        assert t == datetime(2026, 1, 1, tzinfo=UTC)
        assert end == datetime(2026, 1, 1, 0, 0, 15, tzinfo=UTC)
    else:  # real time: when the start was handled, then at least three naps later
        assert abs((t - datetime.now(UTC)).total_seconds()) < 60
        assert 3 * NAP <= (end - t).total_seconds() < 3 * NAP + 3 * timing.slack
    assert other[0] != out[0]  # another routine gets another id


def test_outside_a_routine_they_are_plain_values():
    assert dasync.uuid4() != dasync.uuid4()
    assert dasync.now().tzinfo is UTC
    assert 0.0 <= dasync.random() < 1.0
    with pytest.raises(dasync.NotInRoutine):
        dasync.call_id()
