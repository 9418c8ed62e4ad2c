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

from dasync.testing import VirtualClock

from ._vloop import START

__all__ = ["FastClock"]

IDLE_ROUNDS = 4
"""Loop iterations with nothing to do before time jumps."""


class FastClock(VirtualClock):
    """``dasync.Clock`` whose time moves only when nothing else can happen; it keeps
    ``VirtualClock``'s sleepers and only decides differently when to jump."""

    def __init__(self, start: float = START) -> None:
        super().__init__(start)
        self.paused = False
        self.jumps = 0

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
