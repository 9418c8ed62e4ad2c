"""Consumer lag: the gauge reports what waits for a busy worker, on memory and on NATS."""

from __future__ import annotations

import asyncio
from typing import Protocol

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import dasync
from dasync._runtime import _worker
from dasync._runtime._metrics import CONSUMER, WorkerMetrics
from tests.conftest import Backend

from .test_metrics import points


class _Gate:
    """Made anew by each test: an asyncio.Event belongs to the loop that first waits on it."""

    event = asyncio.Event()


GATE = _Gate()


class Slow(Protocol):
    async def wait(self, n: int) -> int: ...


class SlowImpl(Slow):
    async def wait(self, n: int) -> int:
        await dasync.io(GATE.event.wait())  # real I/O: holds the worker's one slot until opened
        return n


def lag_of(reader: InMemoryMetricReader, service: str) -> int | None:
    if reader.get_metrics_data() is None:  # nothing collected yet
        return None
    found = [
        (attrs, v)
        for attrs, v in points(reader).get("dasync.consumer.lag", [])
        if attrs.get("dasync.service") == service
    ]
    return max((v for _, v in found), default=None)


async def until(predicate, within: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():  # the sampler runs on its own period
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.02)


async def test_lag_counts_what_waits_and_drops_to_zero(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_worker, "LAG_INTERVAL", 0.05)
    GATE.event = asyncio.Event()
    reader = InMemoryMetricReader()
    async with backend.runtime([SlowImpl], concurrency=1) as rt:
        rt.worker.metrics = WorkerMetrics(MeterProvider(metric_readers=[reader]))
        try:
            await _lag_while_busy(rt, reader)
        finally:
            GATE.event.set()  # never leave a routine holding the worker at teardown


async def _lag_while_busy(rt: dasync.Runtime, reader: InMemoryMetricReader) -> None:
    handles = [await rt.client.start(Slow.wait, i) for i in range(5)]
    await until(lambda: lag_of(reader, "Slow") == 4)
    consumers = {
        a[CONSUMER] for a, _ in points(reader)["dasync.consumer.lag"]
        if a.get("dasync.service") == "Slow"
    }  # fmt: skip
    assert len(consumers) == 1
    GATE.event.set()
    assert [await h.result(timeout=10) for h in handles] == [0, 1, 2, 3, 4]
    await until(lambda: lag_of(reader, "Slow") == 0)
