"""One worker process of ``test_processes.py``: hosts some of ``_services`` on NATS and
writes every span it ends to a file, one JSON object a line, as the span ends.

    python -m tests.observability._proc front|rest URL NAMESPACE WORKDIR NAME

It prints the live log (JSON lines) on stdout, touches ``WORKDIR/NAME.ready`` once it
serves, and stops on SIGTERM (the test also kills it with SIGKILL).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import dasync
from dasync._runtime._livelog import LiveLog
from dasync.transports.nats import NatsOptions, connect_nats

from ._services import BackImpl, FrontImpl, MiddleImpl


class FileExporter(SpanExporter):
    """Each span as a JSON line, flushed at once: a kill -9 loses no span that ended."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self.out.write(json.dumps(as_json(span)) + "\n")
        self.out.flush()
        return SpanExportResult.SUCCESS


def as_json(span: ReadableSpan) -> dict[str, object]:
    assert span.context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
        "attributes": dict(span.attributes or {}),
        "events": [event.name for event in span.events],
        "links": [format(link.context.span_id, "016x") for link in span.links],
        "status": span.status.status_code.name,
    }


async def serve(role: str, url: str, namespace: str, workdir: Path, name: str) -> None:
    options = NatsOptions(
        servers=(url,),
        namespace=namespace,
        name=f"dasync-test-{name}",
        ack_wait=1.0,
        reconnect_wait=0.2,
        request_timeout=2.0,
        close_timeout=2.0,
    )
    transport, store = await connect_nats(options)
    services: list[type] = [FrontImpl] if role == "front" else [MiddleImpl, BackImpl]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    live = LiveLog(json=True)
    async with dasync.Runtime(services, transport=transport, store=store, observers=[live]):
        (workdir / f"{name}.ready").touch()
        await stop.wait()


def main() -> None:
    role, url, namespace, workdir, name = sys.argv[1:6]
    out = (Path(workdir) / f"{name}.spans").open("a", encoding="utf-8")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter(out)))
    trace.set_tracer_provider(provider)
    asyncio.run(serve(role, url, namespace, Path(workdir), name))
    provider.shutdown()


if __name__ == "__main__":
    main()
