"""What a worker pulls for one service: its work stream's consumers and its starts stream's.

A service receives on two streams: the work stream (replies, timers, cancels, client
starts, each worker's lane) and the starts stream (the one start of each call from
another service, ``naming.start_subject``). The runtime sees one ``Subscription``; its
backlog and breaks are those of both.
"""

from __future__ import annotations

from typing import Any

from ._consume import PullConsumer
from ._lanes import LanedSubscription

__all__ = ["ServiceInputs"]


class ServiceInputs:
    """The work stream's subscription (``main``) and the starts stream's consumer; anything
    else is ``main``'s (its lanes, ``rescue``...)."""

    def __init__(self, main: PullConsumer | LanedSubscription, starts: PullConsumer) -> None:
        self.main = main
        self.starts = starts
        self.queue = main.queue

    def __getattr__(self, name: str) -> Any:
        return getattr(self.main, name)

    @property
    def consumer(self) -> str:
        return self.main.consumer

    @property
    def breaks(self) -> int:
        return self.main.breaks + self.starts.breaks

    @property
    def inflight(self) -> dict[Any, Any]:
        return {**self.starts.inflight, **getattr(self.main, "inflight", {})}

    async def backlog(self) -> int:
        """``Backlog``: stored and not yet delivered, on both streams."""
        return await self.main.backlog() + await self.starts.backlog()

    async def stop(self) -> None:
        await self.main.stop()
        await self.starts.stop()

    async def drain(self, grace: float) -> None:
        await self.stop()
        await self.main.drain(grace)
        await self.starts.drain(grace)

    def kill(self) -> None:
        self.main.kill()
        self.starts.kill()
