"""In-process runtimes and service instances for users' own tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from .._errors import NonDeterminismError
from .._injection import Container
from .._runtime import Runtime
from ..transports import MemoryBroker
from ._clock import VirtualClock

__all__ = ["NonDeterminismFound", "runtime"]


class NonDeterminismFound(NonDeterminismError):
    """Raised when a test runtime closes after some routine's replay diverged."""

    def __init__(self, divergences: list[str]) -> None:
        self.divergences = list(divergences)
        Exception.__init__(
            self, f"{len(divergences)} routine(s) diverged on replay: " + "; ".join(divergences)
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.divergences,))


S = TypeVar("S")


@asynccontextmanager
async def runtime(
    services: Iterable[type],
    *,
    container: Container | None = None,
    force_replay: bool = False,
    virtual_time: bool = True,
    broker: MemoryBroker | None = None,
    cache_size: int = 10_000,
) -> AsyncIterator[Runtime]:
    """Run ``services`` in this process on the memory transport.

    ``virtual_time`` makes durable timers fire as soon as everything else is
    idle; ``force_replay`` replays every routine from its journal on every
    activation (as after a crash), which shakes out non-deterministic code.
    """
    if broker is None:
        clock = VirtualClock() if virtual_time else None
        broker = MemoryBroker(clock)
        if isinstance(clock, VirtualClock):
            clock.is_busy = broker.busy
    rt = Runtime(
        services,
        container=container,
        broker=broker,
        force_replay=force_replay,
        cache_size=cache_size,
        on_divergence="fail",
    )
    async with rt:
        yield rt
    if rt.worker.stats.diverged:
        # a divergence whose error some caller caught must still fail the test
        raise NonDeterminismFound(rt.worker.stats.diverged)
