"""Fixtures for the NATS transport tests: real nats-server processes on 127.0.0.1.

``nats_server`` is shared by the session (tests isolate themselves with unique
service names); ``restartable_server`` belongs to one test, which may stop and
restart it. ``connect`` opens transports/stores and closes them after the test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from dasync.testing._nats_server import NatsServer
from dasync.transports.nats import NatsOptions, NatsStore, NatsTransport, connect_nats


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with NatsServer(store_dir=tmp_path_factory.mktemp("nats-session")) as server:
        yield server


@pytest.fixture
def restartable_server(tmp_path: Path) -> Iterator[NatsServer]:
    with NatsServer(store_dir=tmp_path / "nats") as server:
        yield server


@pytest.fixture
def service() -> str:
    """A service name no other test uses (the session server is shared)."""
    return f"Svc{uuid.uuid4().hex[:10]}"


class Connector:
    """Opens transport/store pairs on one server and remembers them for closing."""

    def __init__(self, server: NatsServer) -> None:
        self.server = server
        self.opened: list[NatsTransport | NatsStore] = []

    async def __call__(self, **options: Any) -> tuple[NatsTransport, NatsStore]:
        options.setdefault("reconnect_wait", 0.1)
        transport, store = await connect_nats(NatsOptions(servers=(self.server.url,), **options))
        self.opened.extend((transport, store))
        return transport, store

    async def aclose(self) -> None:
        for resource in self.opened:
            await resource.close()


@pytest.fixture
async def connect(nats_server: NatsServer) -> AsyncIterator[Connector]:
    """``transport, store = await connect(ack_wait=1)``: closed after the test."""
    connector = Connector(nats_server)
    yield connector
    await connector.aclose()


@pytest.fixture
async def connect_restartable(restartable_server: NatsServer) -> AsyncIterator[Connector]:
    connector = Connector(restartable_server)
    yield connector
    await connector.aclose()
