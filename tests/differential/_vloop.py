"""A virtual-time asyncio event loop for the plain-asyncio oracle.

The loop is the standard selector loop; only its clock and its selector differ.
``time()`` is a virtual clock, and when no callback is ready the selector, instead
of blocking for ``timeout`` seconds, moves the clock forward by ``timeout``: the
loop then finds the earliest timer due. So ``asyncio.sleep(3600)`` takes no real
time and timers fire in deadline order, exactly as dasync's virtual clock fires
durable timers. Real work (``asyncio.to_thread``, ``run_in_executor``) takes no
virtual time: while some is outstanding the selector blocks for real, so a timer
never fires "during" a thread's work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import selectors
from collections.abc import Callable
from typing import Any

__all__ = ["VirtualTimeLoop", "run_virtual"]

START = 1_767_225_600.0
"""2026-01-01T00:00:00Z, the same origin as ``dasync.testing.VirtualClock``."""

REAL_WAIT_LIMIT = 30.0
"""Real seconds the oracle may block with nothing scheduled before it calls it a deadlock."""


class _VirtualSelector(selectors.BaseSelector):
    """Delegates to a real selector, but advances virtual time instead of sleeping."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if self._loop.real_work:
            # a thread is working: wait for it for real, time stands still meanwhile
            return self._real.select(0.05 if timeout is not None else None)
        if timeout is None:
            ready = self._real.select(REAL_WAIT_LIMIT)
            if not ready:
                raise RuntimeError("plain-asyncio oracle deadlocked: nothing ready or scheduled")
            return ready
        self._loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """``asyncio.SelectorEventLoop`` whose clock jumps to the next timer when idle."""

    def __init__(self, start: float = START) -> None:
        self._virtual_now = start
        self.real_work = 0
        super().__init__(selector=_VirtualSelector(self))
        # the monotonic clock's 1 ns resolution is below a float's step at 1.7e9 s
        self._clock_resolution = 1e-6

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        self._virtual_now += seconds

    def run_in_executor(  # type: ignore[override]
        self, executor: concurrent.futures.Executor | None, func: Callable[..., Any], *args: Any
    ) -> asyncio.Future[Any]:
        fut = super().run_in_executor(executor, func, *args)
        self.real_work += 1

        def done(_: asyncio.Future[Any]) -> None:
            self.real_work -= 1

        fut.add_done_callback(done)
        return fut


def run_virtual(main: Callable[[], Any]) -> Any:
    """``asyncio.run(main())`` on a fresh virtual-time loop, with asyncio.run's shutdown."""
    runner = asyncio.Runner(loop_factory=VirtualTimeLoop)
    with runner:
        return runner.run(main())
