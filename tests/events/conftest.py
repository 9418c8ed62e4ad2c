"""Fixtures of the events suite: a ``world`` on memory and on NATS for each test.

The suite starts its own ``nats-server`` (JetStream, temporary store, free
port on 127.0.0.1) once, the first time a NATS test needs it; each test gets
its own namespace on it, deleted afterwards, so tests never see each other's
events although their services have the same names. ``--transport=memory``
(or ``nats``) from the top-level conftest narrows the parametrisation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ._helpers import World

KINDS = ("memory", "nats")


@pytest.fixture(scope="session")
def events_nats_server() -> Iterator[Any]:
    """Its store is a temporary directory of its own, deleted when the session ends."""
    from dasync.testing._nats_server import NatsServer

    with NatsServer() as server:
        yield server


def _selected(config: pytest.Config) -> tuple[str, ...]:
    try:
        chosen = config.getoption("--transport")
    except ValueError:
        chosen = "all"
    return KINDS if chosen in (None, "all") else (chosen,)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "world_kind" in metafunc.fixturenames:
        metafunc.parametrize("world_kind", _selected(metafunc.config))


@pytest.fixture
async def world(world_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    """The durable state shared by the runtimes of one test (memory broker or NATS namespace)."""
    url = request.getfixturevalue("events_nats_server").url if world_kind == "nats" else None
    w = World(world_kind, url)
    try:
        yield w
    finally:
        await w.aclose()
