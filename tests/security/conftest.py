"""A nats-server per test, started with a configuration file the test writes (auth, TLS).

``secured_server(config)`` writes ``config`` to a file, starts
``nats-server -c <file>`` (JetStream on, 127.0.0.1, free port) and stops it
after the test. Connections made through ``connect(...)`` are closed after the
test too. ``deploy(users)`` starts a server with generated NATS users and gives
a ``Deployment`` (``_deploy.py``) to run processes as them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from dasync.transports.nats import NatsOptions, NatsServer, NatsStore, NatsTransport, connect_nats

from ._deploy import Deployment, User, server_config


@pytest.fixture
def secured_server(tmp_path: Path) -> Iterator[Callable[[str], NatsServer]]:
    started: list[NatsServer] = []

    def start(config: str) -> NatsServer:
        path = tmp_path / f"nats-{len(started)}.conf"
        path.write_text(config)
        server = NatsServer(store_dir=tmp_path / f"store-{len(started)}", args=("-c", str(path)))
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.cleanup()


class Connector:
    def __init__(self) -> None:
        self.opened: list[NatsTransport | NatsStore] = []

    async def __call__(self, server: str, **options: Any) -> tuple[NatsTransport, NatsStore]:
        options.setdefault("connect_timeout", 2.0)
        options.setdefault("request_timeout", 2.0)
        options.setdefault("reconnect_wait", 0.1)
        transport, store = await connect_nats(NatsOptions(servers=(server,), **options))
        self.opened.extend((transport, store))
        return transport, store

    async def aclose(self) -> None:
        for resource in self.opened:
            await resource.close()


@pytest.fixture
async def connect() -> AsyncIterator[Connector]:
    """``transport, store = await connect(url, user=..., password=...)``, closed after the test."""
    connector = Connector()
    yield connector
    await connector.aclose()


@pytest.fixture
async def deploy(
    secured_server: Callable[[str], NatsServer],
) -> AsyncIterator[Callable[..., Deployment]]:
    """``deploy(users, generated=None, **NatsOptions settings)``: a server configured with
    exactly ``users`` (their ``render_conf``, or the ``generated`` text verbatim) and a
    ``Deployment`` to run processes as them; all closed after the test."""
    made: list[Deployment] = []

    def make(users: Sequence[User], generated: str | None = None, **settings: Any) -> Deployment:
        server = secured_server(server_config(users, generated))
        deployment = Deployment(server, users, **settings)
        made.append(deployment)
        return deployment

    yield make
    for deployment in reversed(made):
        await deployment.aclose()
