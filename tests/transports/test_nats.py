"""The NATS JetStream transport and store pass the conformance suite (real nats-server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dasync.testing import BackendFactory
from dasync.testing._conformance import CHECKS
from dasync.testing._nats_server import NatsServer, nats_backend

from .conformance import TransportConformance

PARAMS = list(CHECKS)


@pytest.fixture(scope="module")
def conformance_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with NatsServer(store_dir=tmp_path_factory.mktemp("nats-conformance")) as server:
        yield server


class TestNats(TransportConformance):
    @pytest.fixture
    def backend_factory(self, conformance_server: NatsServer) -> BackendFactory:
        return nats_backend(conformance_server.url, reconnect_wait=0.1, ack_wait=1.0)

    @pytest.mark.parametrize("check", PARAMS)
    async def test_conformance(self, backend_factory: BackendFactory, check: str) -> None:
        await CHECKS[check](backend_factory)


class TestNatsWithoutServerSchedules(TestNats):
    """Delayed delivery by nak-until-due, as on servers older than 2.12."""

    @pytest.fixture
    def backend_factory(self, conformance_server: NatsServer) -> BackendFactory:
        return nats_backend(
            conformance_server.url, reconnect_wait=0.1, ack_wait=1.0, use_schedules=False
        )
