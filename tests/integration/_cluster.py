"""Worker processes, a recording client and the exactly-once checks of the reliability tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dasync._clock import SystemClock
from dasync._runtime import _wire
from dasync._runtime._client import Client
from dasync.transports import Delivery, JournalStore, Transport
from dasync.transports.nats import NatsOptions, connect_nats

from ._services import CALLS_PER_FLOW, Execution, Tally

ROOT = Path(__file__).resolve().parents[2]


class Processes:
    """Subprocesses running ``tests.integration._proc``, logging to ``WORKDIR/<name>.log``."""

    def __init__(self, url: str, namespace: str, workdir: Path) -> None:
        self.url = url
        self.namespace = namespace
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, role: str, name: str, ack_wait: float = 2.0) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        log = open(self.workdir / f"{name}.log", "wb")
        args = [self.url, self.namespace, str(self.workdir), name, str(ack_wait)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration._proc", role, *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs[name] = proc
        return proc

    async def ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        for name, proc in self.procs.items():
            while not (self.workdir / f"{name}.ready").exists():
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name} not ready within {within}s:\n{self.log(name)}")
                await asyncio.sleep(0.05)

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def grep(self, text: str) -> str:
        """Lines of every process log that mention ``text`` (to explain a failure)."""
        return "\n".join(
            f"{name}: {line}"
            for name in self.procs
            for line in (self.workdir / f"{name}.log").read_text(errors="replace").splitlines()
            if text and text in line
        )

    def alive(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is None]

    def stop(self, timeout: float = 15.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def options(url: str, namespace: str, **overrides: Any) -> NatsOptions:
    settings: dict[str, Any] = {
        "servers": (url,),
        "namespace": namespace,
        "name": "dasync-test-client",
        "ack_wait": 2.0,
        "reconnect_wait": 0.2,
        "request_timeout": 2.0,
        "close_timeout": 2.0,
    }
    settings.update(overrides)
    return NatsOptions(**settings)


class RecordingClient:
    """A ``Client`` whose results come only from replies on its inbox (it never falls back to
    reading journals), counting the replies each routine got: a lost reply hangs the test."""

    def __init__(self, transport: Transport, store: JournalStore) -> None:
        self.transport, self.store = transport, store
        self.client = Client(transport, store, SystemClock(), poll_interval=3600.0)
        self.replies: Counter[str] = Counter()
        original = self.client._on_reply

        async def on_reply(delivery: Delivery) -> None:
            # a reply to a client names "<service>/<routine id>"
            key = _wire.parse(delivery.message).routine_id
            self.replies[key.partition("/")[2] or key] += 1
            await original(delivery)

        self.client._on_reply = on_reply  # type: ignore[method-assign]

    @classmethod
    async def open(cls, opts: NatsOptions) -> RecordingClient:
        transport, store = await connect_nats(opts)
        self = cls(transport, store)
        await self.client.open()
        return self

    async def close(self) -> None:
        await self.client.close()
        await self.transport.close()
        await self.store.close()


async def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.01)


@dataclass
class ExactlyOnce:
    """What the tally shows, checked against the calls that were made."""

    calls: int
    executions: int
    reexecuted: set[str] = field(default_factory=set)
    effect_writes: int = 0
    unexplained: dict[str, list[Execution]] = field(default_factory=dict)
    """Calls that ran again although no earlier execution of theirs was cut short."""

    def assert_explained(self) -> None:
        assert not self.unexplained, "calls ran again without a reason: " + "; ".join(
            f"{call_id}: {runs}" for call_id, runs in sorted(self.unexplained.items())[:5]
        )


def check_exactly_once(
    tally: Tally,
    calls: Iterable[str],
    *,
    cut_short: Callable[[Execution], bool],
    first_seq: int = 1,
) -> ExactlyOnce:
    """Every call's effect happened once, under its call id, and was the right one.

    Executions are returned for the caller to judge (``assert_explained``): a call may
    run again only when every earlier execution of it was cut short (``cut_short`` says
    which executions may have been: those of a killed process, those running while the
    server went away).
    """
    calls = set(calls)
    effects = tally.effects()
    assert set(effects) == calls, (
        f"effects missing: {sorted(calls - set(effects))[:10]}, "
        f"unexpected: {sorted(set(effects) - calls)[:10]}"
    )
    for call_id, (account, amount, _pid, _writes) in effects.items():
        flow, _, seq = call_id.rpartition("/Flow.run.")
        i = int(seq) - first_seq
        n = int(flow.rpartition("-")[2])
        assert (account, amount) == (f"acct-{n}-{i}", n * 10 + i), call_id  # the right effect

    by_call: dict[str, list[Execution]] = defaultdict(list)
    for execution in tally.executions():
        by_call[execution.call_id].append(execution)
    assert set(by_call) == calls
    report = ExactlyOnce(calls=len(calls), executions=sum(len(r) for r in by_call.values()))
    for call_id, runs in by_call.items():
        writes = effects[call_id][3]
        assert 1 <= writes <= len(runs), (call_id, writes, runs)
        report.effect_writes += writes
        if len(runs) > 1:
            report.reexecuted.add(call_id)
            if not all(cut_short(r) for r in runs[:-1]):
                report.unexplained[call_id] = runs
    return report


__all__ = [
    "CALLS_PER_FLOW",
    "ExactlyOnce",
    "Processes",
    "RecordingClient",
    "check_exactly_once",
    "options",
    "wait_for",
]
