"""A virtual clock for dasync runs: jumps to the next deadline when the broker is idle.

``dasync.testing.VirtualClock`` polls every millisecond; thousands of generated
programs with a dozen timers each make that the dominant cost, so this clock
checks for idleness on every loop iteration instead. It counts as busy while a
scheduled message is due but not yet queued (the broker's scheduler has not run
yet), so two deadlines can never be passed in one jump. ``paused`` holds time
still while a crashed runtime is replaced: no timer may fire while no worker
exists, as none would in the asyncio program the run is compared with.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

from ._vloop import START

__all__ = ["FastClock"]

IDLE_ROUNDS = 4
"""Loop iterations with nothing to do before time jumps."""


class FastClock:
    """``dasync.Clock`` whose time moves only when nothing else can happen."""

    def __init__(self, start: float = START) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()
        self._jumper: asyncio.Task[None] | None = None
        self.is_busy: Callable[[], bool] = lambda: False
        self.paused = False
        self.jumps = 0

    def now(self) -> float:
        return self._now

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
        idle = 0
        while self._sleepers:
            await asyncio.sleep(0 if idle < IDLE_ROUNDS or not self.paused else 0.001)
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)
            if not self._sleepers:
                return
            if self.paused or self.is_busy():
                idle = 0
                continue
            idle += 1
            if idle >= IDLE_ROUNDS:
                self._now = max(self._now, self._sleepers[0][0])
                self.jumps += 1
                self._wake()
                idle = 0

    def stop(self) -> None:
        if self._jumper is not None:
            self._jumper.cancel()
