"""Shared fixtures: the semantic suite runs on every transport, with the routine cache and
with forced replay.

``--transport=memory|nats|all`` (default ``all``) picks the backends that tests
taking the ``transport`` fixture (directly or through ``make_runtime``) run on,
as temporalio's ``-E``. The default, which CI runs, is both: every semantic test
is collected once per transport (``test_x[cached-memory]``,
``test_x[cached-nats]``...).

NATS: one ``nats-server`` (JetStream, temporary file store, free port on
127.0.0.1) for the whole session, started the first time a NATS test needs it.
Each test gets its own **namespace** (``NatsOptions.namespace``), so its
streams, subjects and consumers can never meet another test's, even though
the services and routine ids are the same; the namespace's streams are deleted
after the test (see docs/nats.md, "Namespaces").

Memory: every runtime made in one test shares one broker with a virtual clock,
as every runtime of one NATS test shares its namespace, so "stop a runtime,
start another on the same durable state" reads the same on both.

Tests that depend on what only the memory transport offers are marked
``@pytest.mark.memory_only("why")``; on NATS they are reported as skipped with
that reason.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

import dasync
from dasync.testing import VirtualClock
from dasync.transports import MemoryBroker

TRANSPORTS = ("memory", "nats")


def pytest_addoption(parser: pytest.Parser) -> None:
    try:
        parser.addoption(
            "--transport",
            choices=(*TRANSPORTS, "all"),
            default="all",
            help="backend(s) the semantic suite runs on (default: all = memory and nats)",
        )
    except ValueError:
        pass  # the dasync pytest plugin declared it already


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "memory_only(reason): the test relies on facilities only the memory transport has; "
        "skipped on the other transports with the reason",
    )


def selected_transports(config: pytest.Config) -> tuple[str, ...]:
    name = config.getoption("--transport", "all")
    return TRANSPORTS if name == "all" else (name,)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "transport" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("memory_only")
    params = []
    for name in selected_transports(metafunc.config):
        marks: list[pytest.MarkDecorator] = []
        if marker is not None and name != "memory":
            reason = marker.args[0] if marker.args else "memory transport only"
            marks.append(pytest.mark.skip(reason=f"memory only: {reason}"))
        params.append(pytest.param(name, marks=marks, id=name))
    metafunc.parametrize("transport", params, indirect=True)


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> str:
    """The transport this test runs on: ``memory`` or ``nats``."""
    name: str = request.param
    return name


@pytest.fixture(params=["cached", "forced"])
def replay_mode(request: pytest.FixtureRequest) -> str:
    """``cached``: live routines stay in memory; ``forced``: replay on every activation."""
    mode: str = request.param
    return mode


# --- time -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Durations for durable timers that suit the transport.

    On memory the clock is virtual: a day-long sleep takes milliseconds, and
    routine time moves by exactly the timers' lengths. On NATS timers are real
    (server-side schedules), so a test's "long" sleeps become fractions of a
    second, scaled so their order is kept: ``timing.scale(100)`` is 100 s on
    memory and ``100 * nats_unit`` s on NATS.
    """

    transport: str
    nats_unit: float = 0.004
    """Real seconds per nominal second on NATS: 100 s -> 0.4 s."""

    @property
    def virtual(self) -> bool:
        return self.transport == "memory"

    def scale(self, seconds: float) -> float:
        return seconds if self.virtual else seconds * self.nats_unit

    @property
    def day(self) -> float:
        """A long durable sleep: one day on memory, 0.3 s on NATS."""
        return 86_400.0 if self.virtual else 0.3

    @property
    def slack(self) -> float:
        """How late a real timer may fire (delivery and processing), for assertions."""
        return 0.0 if self.virtual else 2.0


@pytest.fixture
def timing(transport: str) -> Timing:
    return Timing(transport)


# --- NATS -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nats_session_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One JetStream server for the session (tests isolate themselves by namespace)."""
    from dasync.testing._nats_server import NatsServer

    with NatsServer(store_dir=tmp_path_factory.mktemp("nats-semantics")) as server:
        yield server


def nats_options(url: str, namespace: str, **overrides: Any) -> Any:
    from dasync.transports.nats import NatsOptions

    settings: dict[str, Any] = {
        "servers": (url,),
        "namespace": namespace,
        "ack_wait": 5.0,  # a lost ack costs 5 s, not 30
        "reconnect_wait": 0.1,
        "close_timeout": 2.0,
    }
    settings.update(overrides)
    return NatsOptions(**settings)


async def delete_namespace(url: str, namespace: str) -> list[str]:
    """Delete every stream of ``namespace`` (with its consumers); returns their names."""
    import nats

    nc = await nats.connect(url, connect_timeout=5)
    try:
        js = nc.jetstream()
        deleted = []
        for info in await js.streams_info():
            name = info.config.name or ""
            if name.startswith(f"DASYNC-{namespace}_"):
                await js.delete_stream(name)
                deleted.append(name)
        return deleted
    finally:
        await nc.close()


# --- runtimes -------------------------------------------------------------------------------


class Backend:
    """The durable state all runtimes of one test share: a memory broker or a NATS namespace."""

    def __init__(self, transport: str, request: pytest.FixtureRequest) -> None:
        self.transport = transport
        self._request = request
        self._broker: MemoryBroker | None = None
        self.namespace = f"t{uuid.uuid4().hex[:12]}"
        self._url: str | None = None

    @property
    def broker(self) -> MemoryBroker:
        if self._broker is None:
            clock = VirtualClock()
            self._broker = MemoryBroker(clock)
            clock.is_busy = self._broker.busy
        return self._broker

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = self._request.getfixturevalue("nats_session_server").url
        return self._url

    @asynccontextmanager
    async def runtime(
        self,
        services: Iterable[type],
        *,
        force_replay: bool = False,
        container: Any = None,
        cache_size: int = 10_000,
        concurrency: int = 64,
        nats: dict[str, Any] | None = None,
        **options: Any,
    ) -> AsyncIterator[dasync.Runtime]:
        if self.transport == "memory":
            rt = dasync.Runtime(
                services,
                container=container,
                broker=self.broker,
                force_replay=force_replay,
                cache_size=cache_size,
                concurrency=concurrency,
                **options,
            )
        else:
            from dasync.transports.nats import connect_nats

            nats_transport, nats_store = await connect_nats(
                nats_options(self.url, self.namespace, **(nats or {}))
            )
            try:
                rt = dasync.Runtime(
                    services,
                    container=container,
                    transport=nats_transport,
                    store=nats_store,
                    force_replay=force_replay,
                    cache_size=cache_size,
                    concurrency=concurrency,
                    **options,
                )
            except BaseException:
                await nats_transport.close()
                await nats_store.close()
                raise
        async with rt:
            yield rt

    async def aclose(self) -> None:
        if self._url is not None:
            await delete_namespace(self._url, self.namespace)


@pytest.fixture
async def backend(transport: str, request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    b = Backend(transport, request)
    try:
        yield b
    finally:
        await b.aclose()


MakeRuntime = Callable[..., AbstractAsyncContextManager[dasync.Runtime]]


@pytest.fixture
def make_runtime(replay_mode: str, backend: Backend) -> MakeRuntime:
    """``async with make_runtime([ServiceA, ServiceB]) as rt:`` on this test's transport, in
    the current replay mode; runtimes made in one test share their durable state."""

    def make(services: Iterable[type], **kw: Any) -> AbstractAsyncContextManager[dasync.Runtime]:
        kw.setdefault("force_replay", replay_mode == "forced")
        return backend.runtime(services, **kw)

    return make
