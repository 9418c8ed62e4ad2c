"""Where time comes from: the wall clock in production, a virtual one in tests."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float:
        """Epoch seconds."""
        ...

    async def sleep_until(self, deadline: float) -> None: ...


class SystemClock:
    """Real time; durable timers fire when the wall clock reaches them."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
