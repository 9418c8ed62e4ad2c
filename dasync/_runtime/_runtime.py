"""``Runtime``: hosts services on a transport and store, and hands out clients."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .._clock import Clock, SystemClock
from .._contract import spec_of
from .._errors import ContractError
from .._injection import Container, Injector
from .._proxy import hosted_event, make_proxy, self_call
from .._service import service, validate_service
from ..transports import (
    JournalStore,
    MemoryBroker,
    MemoryStore,
    MemoryTransport,
    RoutineIndex,
    Transport,
)
from ._client import Client
from ._events import RuntimeEvents
from ._index import IndexObserver
from ._observe import RoutineObserver
from ._retention import DEFAULT_RETENTION, Sweeper
from ._versions import code_version
from ._worker import HostedService, Worker

__all__ = ["Runtime"]


class Runtime:
    """Runs the given service classes until closed.

    Use as ``async with Runtime([Shop, Payments]) as rt: await rt.client.proxy(...)``.
    Without a transport and store, everything lives in memory (one process).
    """

    def __init__(
        self,
        services: Iterable[type],
        *,
        container: Container | None = None,
        transport: Transport | None = None,
        store: JournalStore | None = None,
        broker: MemoryBroker | None = None,
        clock: Clock | None = None,
        cache_size: int = 10_000,
        force_replay: bool = False,
        concurrency: int = 64,
        max_payload: int = 1024 * 1024,
        on_divergence: str | None = None,
        poison_after: int = 10,
        max_crashes: int = 3,
        retention: float | None = DEFAULT_RETENTION,
        observers: Sequence[RoutineObserver] = (),
        index: bool = True,
        code_version: str | None = None,
    ) -> None:
        self.clock: Clock = clock or (broker.clock if broker else SystemClock())
        self.broker: MemoryBroker | None = broker
        if transport is None or store is None:
            memory = broker or MemoryBroker(self.clock)
            self.broker = memory
            transport = transport or MemoryTransport(memory)
            store = store or MemoryStore(memory)
        self.transport: Transport = transport
        self.store: JournalStore = store
        self.service_classes = list(services)
        self.code_version = code_version
        """What every journal entry these services commit names as the code's version
        (default: the contract's version and a digest of the service's file)."""
        self.index: IndexObserver | None = None
        """Keeps the store's routine index (``dasync ls``), when the store has one."""
        if index and isinstance(store, RoutineIndex):
            self.index = IndexObserver(store, self.clock)
            observers = (self.index, *observers)
        self.events = RuntimeEvents(transport)
        self.injector = Injector(lambda c: make_proxy(c, events=self.events), container)
        self.hosted = [self._host(cls) for cls in self.service_classes]
        self.worker = Worker(
            self.hosted,
            transport,
            store,
            self.clock,
            cache_size=cache_size,
            force_replay=force_replay,
            concurrency=concurrency,
            subscriptions=self.events.subscriptions,
            max_payload=max_payload,
            on_divergence=on_divergence or ("fail" if force_replay else "park"),
            poison_after=poison_after,
            max_crashes=max_crashes,
            observers=observers,
            # leases last as long as a dead worker's deliveries: renew them well within it
            heartbeat=min(10.0, float(getattr(transport, "ack_wait", 30.0)) / 3),
        )
        self.client = Client(transport, store, self.clock, max_payload=max_payload)
        self.events.fire = self.client.fire_encoded
        self.retention = retention
        """Seconds the journal of a finished routine is kept (None: for ever)."""
        self.sweeper: Sweeper | None = None
        self._started = False

    def _host(self, cls: type) -> HostedService:
        spec = validate_service(cls)
        self.events.hosted.add(spec.name)
        self.events.constructing = cls
        try:
            instance = self.injector.construct(cls)
        finally:
            self.events.constructing = None
        for name, method in spec.methods.items():
            bound = getattr(instance, name)
            instance.__dict__[name] = self_call(method, bound)
        for name, event in spec.events.items():
            instance.__dict__[name] = hosted_event(event, self.events)
        return HostedService(spec, instance, code_version(cls, spec, self.code_version))

    def instance_of(self, cls: type) -> Any:
        """The hosted instance of a service class (for inspection in tests)."""
        for hosted in self.hosted:
            if type(hosted.instance) is cls:
                return hosted.instance
        raise LookupError(f"{cls.__qualname__} is not hosted by this runtime")

    async def start(self) -> None:
        if self._started:
            return
        self.events.frozen = True
        await self.worker.start()
        await self.client.open()
        if self.retention is not None:
            self.sweeper = Sweeper(self.store, self.worker.services, self.retention)
            self.sweeper.start()
        self._started = True

    async def close(self) -> None:
        if not self._started:
            return
        self._started = False
        if self.sweeper is not None:
            await self.sweeper.stop()
        await self.client.close()
        await self.worker.stop()
        await self.transport.close()
        await self.store.close()

    def kill(self) -> None:
        """Drop everything but the broker/store, as ``kill -9`` would (memory transport only)."""
        kill = getattr(self.transport, "kill", None)
        if kill is None:
            raise TypeError("kill() simulates a crash on the memory transport only")
        self._started = False
        kill()
        self.worker.kill()
        if self.index is not None:
            self.index.drop()
        if self.sweeper is not None:
            self.sweeper.kill()

    def host_main(self, main: Callable[..., Any], name: str = "main") -> type:
        """Host ``async def main(...)`` as the one method of a service, before ``start()``.

        Its parameters are injected like constructor parameters; it then runs as
        a durable routine (so its calls are journaled like any other).
        """
        if self._started:
            raise RuntimeError("host_main() must be called before start()")
        if not inspect.iscoroutinefunction(main):
            raise ContractError(f"{getattr(main, '__qualname__', main)} must be 'async def'")
        cls = _main_service(main, name, self.injector)
        self.hosted.append(self._host(cls))
        self.worker.services[name] = self.hosted[-1]
        return cls

    async def run_main(self, main: Callable[..., Any], name: str = "main") -> Any:
        """Host ``main`` (see ``host_main``), start, run it as a routine and return its result."""
        cls = self.host_main(main, name)
        await self.start()
        return await self.client.proxy(cls).main()

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def services(self) -> list[str]:
        return [spec_of(h.spec.contract).name for h in self.hosted]


def _main_service(main: Callable[..., Any], name: str, injector: Injector) -> type:
    deps = injector.resolve(main, where=f"{getattr(main, '__qualname__', main)}()")
    returns = typing.get_type_hints(main).get("return", Any)

    async def run(self: Any) -> Any:
        return await main(**deps)

    run.__annotations__ = {"return": returns}
    cls = type(f"{name.capitalize()}Routine", (), {"main": run, "__module__": main.__module__})
    service(name=name)(cls)
    return cls
