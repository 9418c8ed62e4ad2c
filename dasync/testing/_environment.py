"""In-process runtimes and service instances for users' own tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from .._errors import ContractError, NonDeterminismError
from .._event import EventSpec
from .._injection import Container, Injector
from .._proxy import make_proxy
from .._runtime import Runtime
from ..transports import MemoryBroker
from ._clock import VirtualClock

__all__ = ["NonDeterminismFound", "instantiate", "runtime"]


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


class _IgnoredEvents:
    """Events of the proxies ``instantiate`` injects: ``+=``/``-=`` are accepted and ignored
    (call the handler yourself to test it); firing one is refused, as it goes nowhere."""

    def subscribe(self, event: EventSpec, handler: Callable[..., Awaitable[Any]]) -> None:
        pass

    def unsubscribe(self, event: EventSpec, handler: Callable[..., Awaitable[Any]]) -> None:
        pass

    def publish(self, event: EventSpec, payload: bytes) -> asyncio.Future[None]:
        raise ContractError(
            f"{event.topic} was fired on a proxy of dasync.testing.instantiate(), which is not "
            f"connected to a runtime; pass a fake for it, or use dasync.testing.runtime()"
        )


def instantiate(service_cls: type[S], **fakes: Any) -> S:
    """An instance of ``service_cls`` for plain unit tests, with fakes injected by name.

    Contract parameters not given as fakes get proxies, which refuse to be
    called outside a routine, so a missing fake shows up as a clear error.
    """
    injector = Injector(lambda c: make_proxy(c, events=_IgnoredEvents()), dict(fakes))
    obj: S = injector.construct(service_cls)  # type: ignore[assignment]
    return obj
