"""Fixtures of the observability tests: a tracer provider swapped in per test.

OpenTelemetry lets a process set its global tracer provider once; these tests need a
fresh one (or none) each, so the fixture puts it in the API's global for the test's
duration and takes it out after, which ``dasync._runtime._tracing`` sees on its next
check (it never caches the provider).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dasync.testing import VirtualClock
from dasync.transports import MemoryBroker


@pytest.fixture
def no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenTelemetry's default: no provider set (the global proxy, which is a no-op)."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """An SDK provider exporting every span, as it ends, to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    yield exporter
    provider.shutdown()


@pytest.fixture
def broker() -> MemoryBroker:
    """A memory broker on a virtual clock: durable sleeps and backoffs take no real time."""
    clock = VirtualClock()
    memory = MemoryBroker(clock)
    clock.is_busy = memory.busy
    return memory


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})
