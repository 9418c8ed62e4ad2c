"""Metrics on the memory transport: what a worker's committed steps and dead letters move."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import dasync
from dasync._engine import Start, StepRecord
from dasync._runtime._metrics import WorkerMetrics
from dasync.transports import MemoryBroker

from .test_tracing import (
    Back,
    BackImpl,
    FlakyImpl,
    Front,
    FrontImpl,
    MiddleImpl,
    Refusing,
    runtime,
)
from .test_tracing import Flaky as FlakyContract

WAIT = 10.0


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """Metric name -> [(attributes, value or histogram count)]."""
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = point.count  # type: ignore[attr-defined]
                    found.setdefault(metric.name, []).append((dict(point.attributes), value))
    return found


def total(found: dict[str, list[tuple[dict[str, Any], Any]]], name: str, **match: str) -> Any:
    keyed = {f"dasync.{k}": v for k, v in match.items()}
    return sum(v for a, v in found.get(name, []) if keyed.items() <= a.items())


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


def measured(rt: dasync.Runtime, reader: InMemoryMetricReader) -> dasync.Runtime:
    rt.worker.metrics = WorkerMetrics(MeterProvider(metric_readers=[reader]))
    return rt


async def test_routines_steps_calls_and_retries_are_counted(
    broker: MemoryBroker, reader: InMemoryMetricReader
) -> None:
    rt = measured(runtime(broker, [BackImpl, MiddleImpl, FrontImpl, FlakyImpl]), reader)
    async with rt:
        assert await rt.client.proxy(Front).run(1) == 32
        assert await rt.client.proxy(FlakyContract).fetch(100) == 100
    found = points(reader)
    started = "dasync.routines.started"
    assert total(found, started, service="Front", method="run") == 1
    assert total(found, started, service="Middle", method="work") == 2
    assert total(found, "dasync.routines.completed", service="Back") == 2
    assert total(found, "dasync.routines.failed") == 0
    # every call answered: up and down again
    assert total(found, "dasync.calls.in_flight") == 0
    assert total(found, "dasync.calls.in_flight", service="Front") == 0
    assert total(found, "dasync.retries", service="Flaky", method="fetch") == 1
    # Front: 3 steps, Middle: 2 x 3, Back: 2 x 1, Flaky: the failed attempt and the retry
    assert total(found, "dasync.step.duration") == 3 + 6 + 2 + 2


async def test_dead_letters_are_counted(broker: MemoryBroker, reader: InMemoryMetricReader) -> None:
    rt = runtime(broker, [BackImpl], observers=[Refusing()], poison_after=2)
    async with measured(rt, reader):
        handle = await rt.client.start(Back.leaf, 1, routine_id="poison-2")
        with pytest.raises(dasync.CallFailed):
            await handle.result(timeout=WAIT)
    found = points(reader)
    assert total(found, "dasync.dead_letters", service="Back") == 1
    assert total(found, "dasync.routines.parked") == 0  # its caller was told


def test_without_a_provider_recording_is_a_no_op() -> None:
    record = StepRecord(Start(b"{}", 0.0, {"method": "m"}), ())
    WorkerMetrics().step("S", "m", 0, record, 0.01)  # the global proxy: accepted, dropped
