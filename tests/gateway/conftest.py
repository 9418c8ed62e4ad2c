"""Fixtures: the ``Store`` service on real NATS, the gateway on a real uvicorn server.

One runtime and one gateway serve every test of a module (they run on the module's
event loop: starting them costs more than most tests). The runtime has its own
NATS namespace on the session's server (``tests/conftest.py``), deleted afterwards.
``serve_gateway`` serves another app on the same client (the auth tests' gateways).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

import dasync
from dasync._gateway import gateway_app, serving
from tests.conftest import Backend

from ._services import Stockroom, StoreService


@dataclass
class Served:
    """A running gateway: its URL and an HTTP client on it."""

    url: str
    http: httpx.AsyncClient


@asynccontextmanager
async def serve_gateway(client: dasync.Client, **options: Any) -> AsyncIterator[Served]:
    """``gateway_app(Store, client=client, **options)`` on a free port of 127.0.0.1."""
    from ._services import Store

    app = gateway_app([Store], client=client, **options)
    async with serving(app, "127.0.0.1", 0) as where:
        async with httpx.AsyncClient(base_url=where.url, timeout=30.0) as http:
            yield Served(where.url, http)


@pytest.fixture(scope="module")
def store_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    yield Backend("nats", request)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runtime(store_backend: Backend) -> AsyncIterator[dasync.Runtime]:
    try:
        async with store_backend.runtime([StoreService, Stockroom]) as rt:
            yield rt
    finally:
        await store_backend.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(runtime: dasync.Runtime) -> AsyncIterator[Served]:
    async with serve_gateway(runtime.client) as served:
        yield served
