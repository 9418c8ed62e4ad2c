"""The shop example behind both commands, and Schemathesis against it.

``dasync run examples/shop/service.py --serve --http`` hosts the services and a
gateway; ``dasync gateway examples/shop/service.py`` is a client-only gateway on the
same NATS namespace, so its requests reach the other process's workers. Both serve
the bytes ``dasync codegen openapi`` writes. Schemathesis (its command line, bounded:
a few examples per operation, a fixed seed) runs against the client-only gateway
with every check but two, ``positive_data_acceptance`` and
``negative_data_rejection``: they judge how strictly arguments are checked, which is
the codec's (lax, as pydantic is: ``false`` is accepted for an ``int``), and they take a
declared domain error (``422``, e.g. ``UnknownItem`` for an item the shop does not sell)
for a rejected request; docs/gateway.md says so. ``not_a_server_error`` holds: the
shop's routines raise only declared errors, so no answer is a 5xx.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import delete_namespace

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop" / "service.py"
LINE_TIMEOUT = 30.0
SEED = "20261201"


class Command:
    """A ``python -m dasync ...`` subprocess whose output lines are read as they come."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dasync", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, pattern: str) -> re.Match[str]:
        """The first line from now on matching ``pattern`` (fails on exit or timeout)."""
        while True:
            try:
                line = self.lines.get(timeout=LINE_TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; got {self.seen}") from None
            if line is None:
                raise AssertionError(f"exited before {pattern!r}: {self.seen}")
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(timeout=10)
        while (line := self._drain()) is not None:
            self.seen.append(line)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def _drain(self) -> str | None:
        try:
            return self.lines.get_nowait()
        except queue.Empty:
            return None


@dataclass
class Shop:
    run: str
    """The URL of the gateway in the process that hosts the services."""
    gateway: str
    """The URL of the client-only gateway."""
    env: dict[str, str]
    cwd: Path


@pytest.fixture(scope="module")
def shop(nats_session_server, tmp_path_factory) -> Iterator[Shop]:
    namespace = f"t{uuid.uuid4().hex[:12]}"
    cwd = tmp_path_factory.mktemp("shop")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASYNC_", "SCHEMATHESIS_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    nats = ["--nats", nats_session_server.url, "--nats-namespace", namespace]
    address = ["--http", "127.0.0.1:0"]
    run = Command(["run", str(SHOP), "--serve", *address, *nats], cwd, env)
    commands = [run]
    try:
        run_url = run.expect(r"HTTP gateway at (\S+) ")[1]
        run.expect("ready, serving")
        gateway = Command(["gateway", str(SHOP), *address, *nats], cwd, env)
        commands.append(gateway)
        gateway_url = gateway.expect(r"HTTP gateway at (\S+) ")[1]
        gateway.expect("ready, serving")
        yield Shop(run_url, gateway_url, env, cwd)
        for command in reversed(commands):
            assert command.stop() == 0, command.seen
        assert any("SIGTERM received, stopping" in line for line in gateway.seen)
    finally:
        for command in commands:
            command.stop()
        asyncio.run(delete_namespace(nats_session_server.url, namespace))


def test_both_commands_serve_the_document_codegen_writes(shop: Shop):
    written = subprocess.run(
        [sys.executable, "-m", "dasync", "codegen", "openapi", str(SHOP)],
        cwd=shop.cwd,
        env=shop.env,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    for url in (shop.run, shop.gateway):
        served = httpx.get(f"{url}/openapi.json", timeout=10)
        assert served.status_code == 200
        assert served.content == written


def test_a_client_only_gateway_reaches_the_workers_of_another_process(shop: Shop):
    order = {"customer": "Ada", "item": "book", "qty": 1}
    answer = httpx.post(
        f"{shop.gateway}/Shop/place_order", json=order, headers={"Prefer": "wait=20"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == "ok"
    # the process that hosts the services reads the same routine from its journal
    read = httpx.get(f"{shop.run}{answer.headers['location']}", timeout=10)
    assert read.json()["status"] == "completed" and read.json()["result"] == "ok"


def test_schemathesis_finds_no_server_error_and_no_response_off_the_schema(shop: Shop):
    env = shop.env
    checks = "positive_data_acceptance,negative_data_rejection"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{shop.gateway}/openapi.json",
            "--max-examples",
            "5",
            "--phases",
            "examples,coverage,fuzzing",
            "--exclude-checks",
            checks,
            "--workers",
            "1",
            "--seed",
            SEED,
            "--request-timeout",
            "30",
        ],
        cwd=shop.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", report)
    assert cases and cases[1] == cases[2] and int(cases[1]) > 100, report[-3000:]
    tested = re.search(r"Tested: (\d+)", report)
    # 5 methods, the external event, the routine's status and cancel, signals, progress
    assert tested and int(tested[1]) == 10, report[-3000:]
