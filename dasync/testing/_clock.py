"""A virtual clock that jumps to the next durable timer whenever nothing else can happen."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["VirtualClock"]


class VirtualClock:
    """Time that only moves when every queue is idle, straight to the next deadline.

    A routine sleeping for a week finishes in milliseconds, and timers still
    fire in deadline order.
    """

    def __init__(self, start: float = 1_767_225_600.0, *, poll: float = 0.001) -> None:
        # start: 2026-01-01T00:00:00Z. poll: real seconds between idle checks; 0 checks on
        # every turn of the event loop, for owners whose ``is_busy`` is exact
        self._now = start
        self._poll = poll
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()
        self._jumper: asyncio.Task[None] | None = None
        self._held = 0
        self.is_busy: Callable[[], bool] = lambda: False

    def now(self) -> float:
        return self._now

    @contextmanager
    def held(self) -> Iterator[None]:
        """No jump while inside: for a test that acts between two steps of a workflow (sends
        a signal before a deadline) where "idle" would otherwise let the deadline pass.
        ``advance`` still moves time by hand."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1

    def advance(self, seconds: float) -> None:
        """Move time forward by hand, waking sleepers whose deadline passed."""
        self._now += seconds
        self._wake()

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._counter), fut))
        if self._jumper is None or self._jumper.done():
            self._jumper = asyncio.get_running_loop().create_task(self._autojump())
        await fut

    def _wake(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    async def _autojump(self) -> None:
        idle_rounds = 0
        while self._sleepers:
            await asyncio.sleep(0.001 if self.is_busy() else self._poll)
            self._sleepers = [s for s in self._sleepers if not s[2].done()]
            heapq.heapify(self._sleepers)
            if not self._sleepers:
                return
            idle_rounds = 0 if self._held or self.is_busy() else idle_rounds + 1
            if idle_rounds >= 2:
                self._now = max(self._now, self._sleepers[0][0])
                self._wake()
                idle_rounds = 0
