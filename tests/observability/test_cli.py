"""``dasync run``'s live log (text, ``--json``, ``--quiet``) and ``--trace console|otlp``.

Runs on ``--memory``: the lines are the same on NATS (the observer does not know the
transport), and a process that starts no server is quick. The OTLP case sends to a
collector stand-in on 127.0.0.1 that this test serves.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from dasync._runtime import _tracing

from ..test_cli import dasync_cmd, write

APP = """
import asyncio
from typing import Protocol

import dasync

ATTEMPTS = []


class Greeter(Protocol):
    async def greet(self, name: str) -> str: ...

    async def refuse(self) -> None: ...


class GreeterImpl(Greeter):
    @dasync.retry(attempts=3, backoff=0.01, jitter=0.0, on=TimeoutError)
    async def greet(self, name: str) -> str:
        ATTEMPTS.append(name)
        if len(ATTEMPTS) == 1:
            raise TimeoutError("slow")
        return f"hello, {name}"

    async def refuse(self) -> None:
        raise ValueError("no")


async def main(greeter: Greeter) -> str:
    try:
        await greeter.refuse()
    except ValueError:
        pass
    return await greeter.greet("Ada")
"""


def json_lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_json_lines_parse_and_each_kind_appears(tmp_path: Path) -> None:
    write(tmp_path, "app.py", APP)
    result = dasync_cmd("run", "app.py", "--memory", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    events = json_lines(result.stdout)
    kinds = {(e["event"], e["method"]) for e in events}
    assert {
        ("started", "main"),
        ("started", "refuse"),
        ("failed", "refuse"),
        ("started", "greet"),
        ("retried", "greet"),
        ("completed", "greet"),
        ("completed", "main"),
    } <= kinds, events
    assert all({"time", "event", "service", "method", "routine"} <= e.keys() for e in events)
    assert result.stdout.splitlines()[-1] == 'dasync: main() returned "hello, Ada"'


def test_text_lines_by_default_and_none_with_quiet(tmp_path: Path) -> None:
    write(tmp_path, "app.py", APP)
    text = dasync_cmd("run", "app.py", "--memory", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    logged = [line for line in text.stdout.splitlines() if not line.startswith(("dasync:", "  "))]
    assert any(" failed    Greeter.refuse " in line and "ValueError: no" in line for line in logged)
    assert any(" retried   Greeter.greet " in line for line in logged), logged
    quiet = dasync_cmd("run", "app.py", "--memory", "--quiet", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert [
        line for line in quiet.stdout.splitlines() if not line.startswith(("dasync:", "  "))
    ] == []


def test_trace_console_prints_the_spans(tmp_path: Path) -> None:
    write(tmp_path, "app.py", APP)
    result = dasync_cmd("run", "app.py", "--memory", "--quiet", "--trace", "console", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"name": "process Greeter"' in result.stdout
    assert '"messaging.system": "nats"' in result.stdout
    assert '"dasync.method": "greet"' in result.stdout


class Collector(BaseHTTPRequestHandler):
    received: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Collector.received.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    Collector.received = []
    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_trace_otlp_sends_spans_and_metrics(tmp_path: Path, collector: str) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    write(tmp_path, "app.py", APP)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector}
    result = dasync_cmd("run", "app.py", "--memory", "--quiet", "--trace", "otlp",
                        cwd=tmp_path, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "/v1/traces" in Collector.received and "/v1/metrics" in Collector.received


def test_trace_otlp_without_the_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(RuntimeError, match=r"pip install 'dasync\[otlp\]'"):
        _tracing.configure("otlp", "app")
