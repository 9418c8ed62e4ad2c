"""One trace across worker processes on one nats-server, through a kill -9.

Front's worker (process ``front-a``) starts the routine and calls Middle, in process
``rest`` with Back; Middle sleeps on a durable timer, then calls Back. While Front
waits, ``front-a`` is killed with SIGKILL and ``front-b`` takes over: it replays
Front's first step from the journal (no span) and runs the second, in the same trace.
Each process writes its spans to a file as they end (``_proc.py``); the test reads
them all, with the client's own span from this process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import dasync

from ..conftest import delete_namespace, nats_options
from ._services import Front

ROOT = Path(__file__).resolve().parents[2]
Span = dict[str, Any]


def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s")
        time.sleep(0.01)


class Workers:
    def __init__(self, url: str, namespace: str, workdir: Path) -> None:
        self.url, self.namespace, self.workdir = url, namespace, workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, role: str, name: str) -> None:
        with (self.workdir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.observability._proc",
                    role,
                    self.url,
                    self.namespace,
                    str(self.workdir),
                    name,
                ],  # fmt: skip
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        ready = self.workdir / f"{name}.ready"
        wait_for(lambda: ready.exists() or proc.poll() is not None, 30, f"{name} ready")
        assert proc.poll() is None, self.log(name)

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def spans(self, name: str) -> list[Span]:
        path = self.workdir / f"{name}.spans"
        if not path.exists():
            return []
        lines = path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def kill(self, name: str) -> None:
        os.kill(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def workers(nats_session_server: Any, tmp_path: Path) -> Iterator[Workers]:
    namespace = f"otel{uuid.uuid4().hex[:10]}"
    running = Workers(nats_session_server.url, namespace, tmp_path)
    try:
        yield running
    finally:
        running.stop_all()
        asyncio.run(delete_namespace(nats_session_server.url, namespace))


def step_of(spans: list[Span], service: str, routine: str, step: int) -> Span:
    [found] = [
        s
        for s in spans
        if s["name"] == f"process {service}"
        and s["attributes"]["dasync.routine.id"] == routine
        and s["attributes"].get("dasync.step") == step
    ]
    return found


def sent_by(spans: list[Span], parent: Span) -> list[Span]:
    return [s for s in spans if s["kind"] == "PRODUCER" and s["parent_id"] == parent["span_id"]]


def test_one_trace_across_processes_and_a_kill(
    workers: Workers, spans: InMemorySpanExporter
) -> None:
    workers.start("rest", "rest")
    workers.start("front", "front-a")
    routine = "order-1"
    done: dict[str, Any] = {}

    async def client() -> None:
        options = nats_options(workers.url, workers.namespace)
        async with dasync.connect(options) as conn:
            with trace.get_tracer("test").start_as_current_span("checkout") as root:
                handle = await conn.start(Front.run, 4, routine_id=routine)
            done["root"] = root.get_span_context()
            # Front's first step is committed: kill its worker while the routine waits
            await asyncio.to_thread(
                wait_for,
                lambda: any(s["name"] == "process Front" for s in workers.spans("front-a")),
                20,
                "Front's first activation",
            )
            workers.kill("front-a")
            await asyncio.to_thread(workers.start, "front", "front-b")
            done["result"] = await handle.result(timeout=30)

    asyncio.run(client())
    assert done["result"] == 41 + 1
    wait_for(lambda: any(s["attributes"].get("dasync.step") == 1 for s in workers.spans("front-b")
                         if s["name"] == "process Front"), 10, "Front's last span")  # fmt: skip

    before, rest, after = (workers.spans(n) for n in ("front-a", "rest", "front-b"))
    everything = before + rest + after
    root = done["root"]
    assert {s["trace_id"] for s in everything} == {format(root.trace_id, "032x")}

    # caller -> call -> callee -> nested call
    front0 = step_of(before, "Front", routine, 0)
    assert front0["parent_id"] == format(root.span_id, "016x")
    [call] = sent_by(before, front0)
    assert call["name"] == "send Middle"
    middle = call["attributes"]["messaging.message.id"].split(":", 1)[1].split("#")[0]
    m0, m1, m2 = (step_of(rest, "Middle", middle, i) for i in range(3))
    assert {m0["parent_id"], m1["parent_id"], m2["parent_id"]} == {call["span_id"]}
    assert "dasync.timer.scheduled" in m0["events"]
    assert m1["attributes"]["dasync.input"] == "timer"
    [nested] = sent_by(rest, m1)
    assert nested["name"] == "send Back"
    [back] = [s for s in rest if s["name"] == "process Back"]
    assert back["parent_id"] == nested["span_id"]
    [back_reply] = sent_by(rest, back)
    assert m2["links"] == [back_reply["span_id"]]
    [middle_reply] = sent_by(rest, m2)

    # after the kill: front-b replayed step 0 (no span) and ran step 1, in the same trace
    front1 = step_of(after, "Front", routine, 1)
    assert front1["parent_id"] == format(root.span_id, "016x")
    assert front1["links"] == [middle_reply["span_id"]]
    assert "dasync.resumed" in front1["events"]
    assert [s for s in after if s["name"] == "process Front"] == [front1]
    steps = [
        (s["attributes"]["dasync.routine.id"], s["attributes"]["dasync.step"])
        for s in everything
        if s["kind"] == "CONSUMER"
    ]
    assert len(steps) == len(set(steps)) == 6, steps  # Front 0, 1; Middle 0, 1, 2; Back 0

    # the live log of front-b says the routine resumed there
    lines = [json.loads(x) for x in workers.log("front-b").splitlines() if x.startswith("{")]
    assert {"event": "resumed", "routine": routine, "service": "Front"} in [
        {k: line[k] for k in ("event", "routine", "service")} for line in lines
    ]
