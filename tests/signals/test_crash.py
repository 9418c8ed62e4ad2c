"""Signals and progress across a worker killed after every step (memory and NATS), cached
and forced replay, against the same code run by plain asyncio with a queue for signals."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Protocol

import pytest

import dasync
from tests.conftest import Backend

WAIT = 15.0
BOOKED: Counter[str] = Counter()


class Ledger(Protocol):
    async def book(self, amount: int) -> int: ...


class LedgerImpl(Ledger):
    async def book(self, amount: int) -> int:
        BOOKED[dasync.call_id()] += 1
        return amount * 10


class Tally(Protocol):
    async def run(self, rounds: int) -> list[int]: ...


async def tally(ledger: Ledger, signal: object, progress: object, rounds: int) -> list[int]:
    """The routine's code, shared by the durable service and the plain-asyncio oracle."""
    seen = []
    for i in range(rounds):
        value = await signal("n", int)  # type: ignore[operator]
        try:
            async with asyncio.timeout(3600):
                extra = await signal("bonus", int)  # type: ignore[operator]
        except TimeoutError:  # pragma: no cover - the test always sends one
            extra = 0
        seen.append(await ledger.book(value + extra))
        progress({"round": i, "total": sum(seen)})  # type: ignore[operator]
    return seen


class TallyImpl(Tally):
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def run(self, rounds: int) -> list[int]:
        return await tally(self.ledger, dasync.signal, dasync.progress, rounds)


async def plain(rounds: int, sent: list[tuple[str, int]]) -> tuple[list[int], list[object]]:
    queues: dict[str, asyncio.Queue[int]] = {"n": asyncio.Queue(), "bonus": asyncio.Queue()}
    for name, value in sent:
        queues[name].put_nowait(value)
    updates: list[object] = []

    async def signal(name: str, _: type) -> int:
        return await queues[name].get()

    class PlainLedger:  # the service wired directly, as plain asyncio would call it
        async def book(self, amount: int) -> int:
            return amount * 10

    return await tally(PlainLedger(), signal, updates.append, rounds), updates


@pytest.mark.parametrize("force_replay", [False, True], ids=["cached", "forced"])
async def test_a_kill_after_every_step_changes_nothing(
    backend: Backend, force_replay: bool
) -> None:
    BOOKED.clear()
    rounds = 3
    sent = [(name, 10 * r + k) for r in range(rounds) for k, name in enumerate(("n", "bonus"))]
    oracle, oracle_updates = await plain(rounds, sent)
    if backend.transport == "memory":  # the deadline is real here: hold the virtual clock
        backend.broker.clock.is_busy = lambda: True  # type: ignore[attr-defined]
    steps = 0
    for number, (name, value) in enumerate([("", 0), *sent]):
        async with backend.runtime([TallyImpl, LedgerImpl], force_replay=force_replay) as rt:
            if number == 0:
                await rt.client.start(Tally.run, rounds, routine_id="tally")
            else:  # the same id again after a kill: taken once
                await rt.client.signal(Tally, "tally", name, value, signal_id=f"s{number}")
                await rt.client.signal(Tally, "tally", name, value, signal_id=f"s{number}")
            for _ in range(int(WAIT / 0.01)):  # until the step it caused is committed
                if len(await rt.store.load("Tally", "tally")) > steps:
                    break
                await asyncio.sleep(0.01)
            steps = len(await rt.store.load("Tally", "tally"))
            rt.worker.kill()  # as kill -9, right after the step
    async with backend.runtime([TallyImpl, LedgerImpl], force_replay=force_replay) as rt:
        handle = rt.client.handle(Tally.run, "tally")
        assert await handle.result(timeout=WAIT) == oracle
        assert [u async for _, u in handle.progress()] == oracle_updates
    assert len(BOOKED) == rounds  # one ledger call per round, whatever was redelivered
    assert all(runs <= 2 for runs in BOOKED.values())  # again only if a kill cut it short
