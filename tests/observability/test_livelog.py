"""The live log as an observer, on the memory transport: each kind of line, once each."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Protocol

import pytest

from dasync._runtime._livelog import LiveLog
from dasync.transports import MemoryBroker

from .test_tracing import (
    Back,
    BackImpl,
    Flaky,
    FlakyImpl,
    Front,
    FrontImpl,
    MiddleImpl,
    runtime,
)

WAIT = 10.0


class Lines(list[str]):
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["event"] == kind]

    async def wait(self, kind: str, routine: str) -> dict[str, Any]:
        for _ in range(1000):
            for event in self.of(kind):
                if event["routine"] == routine:
                    return event
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind} line for {routine}: {self}")


class Grumpy(Protocol):
    async def refuse(self) -> None: ...


class GrumpyImpl(Grumpy):
    async def refuse(self) -> None:
        raise ValueError("not today")


RUNS: list[int] = []


class Shifty(Protocol):
    async def go(self) -> None: ...


class ShiftyImpl(Shifty):
    def __init__(self, back: Back) -> None:
        self.back = back

    async def go(self) -> None:
        RUNS.append(1)
        if len(RUNS) == 1:  # its replay takes the other branch: it diverges
            await asyncio.sleep(3600)
        else:
            await self.back.leaf(1)


async def test_started_completed_failed_retried(broker: MemoryBroker) -> None:
    lines = Lines()
    log = LiveLog(lines.append, json=True)
    async with runtime(broker, [BackImpl, MiddleImpl, FrontImpl, FlakyImpl, GrumpyImpl],
                       observers=[log]) as rt:  # fmt: skip
        front = await rt.client.start(Front.run, 1, routine_id="f-1")
        assert await front.result(timeout=WAIT) == 32
        assert await rt.client.proxy(Flaky).fetch(5) == 5
        grumpy = await rt.client.start(Grumpy.refuse, routine_id="g-1")
        with pytest.raises(ValueError):
            await grumpy.result(timeout=WAIT)
    started = {(e["service"], e["method"]) for e in lines.of("started")}
    assert started >= {("Front", "run"), ("Middle", "work"), ("Back", "leaf"), ("Flaky", "fetch")}
    [done] = [e for e in lines.of("completed") if e["routine"] == "f-1"]
    assert done["service"] == "Front" and done["method"] == "run" and done["steps"] == 3
    assert done["seconds"] >= 120  # two durable minutes, on the virtual clock
    [retried] = lines.of("retried")
    assert retried["service"] == "Flaky" and retried["attempt"] == 1
    assert "TimeoutError" in retried["error"] and retried["delay"] > 0
    [failed] = lines.of("failed")
    assert failed["routine"] == "g-1" and failed["error"] == "ValueError: not today"
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"]) for e in lines.events()
    )


async def test_resumed_on_another_worker(broker: MemoryBroker) -> None:
    first, second = Lines(), Lines()
    async with runtime(broker, [FrontImpl], observers=[LiveLog(first.append, json=True)]) as rt:
        handle = await rt.client.start(Front.run, 2, routine_id="f-2")
        await first.wait("started", "f-2")  # its call to Middle waits: nobody serves Middle
    services = [FrontImpl, MiddleImpl, BackImpl]
    async with runtime(broker, services, observers=[LiveLog(second.append, json=True)]) as rt:
        resumed = await second.wait("resumed", "f-2")
        assert resumed["service"] == "Front" and resumed["method"] == "run"
        assert resumed["replayed"] == 1 and resumed["attempt"] == 1
        done = await second.wait("completed", "f-2")
        assert done["method"] == "run"
    del handle


async def test_parked(broker: MemoryBroker) -> None:
    lines = Lines()
    RUNS.clear()
    rt = runtime(broker, [ShiftyImpl, BackImpl], observers=[LiveLog(lines.append, json=True)],
                 force_replay=True, on_divergence="park")  # fmt: skip
    async with rt:
        await rt.client.start(Shifty.go, routine_id="s-1")
        parked = await lines.wait("parked", "s-1")
    assert parked["service"] == "Shifty" and "NonDeterminismError" in parked["reason"]


async def test_text_lines_and_a_failing_write(broker: MemoryBroker) -> None:
    lines = Lines()

    def broken(line: str) -> None:
        raise OSError("stdout closed")

    observers = [LiveLog(lines.append), LiveLog(broken)]
    async with runtime(broker, [BackImpl], observers=observers) as rt:
        assert await rt.client.proxy(Back).leaf(4) == 40
    started, completed = lines
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} started   Back\.leaf \S+", started), started
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d\.\d{3} completed Back\.leaf \S+  1 step in 0ms", completed
    ), completed
