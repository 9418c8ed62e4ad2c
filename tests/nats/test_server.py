"""The nats-server controller and the shared embedded server of a project directory."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dasync.transports.nats import (
    NatsServer,
    NatsServerError,
    connect_nats,
    ensure_embedded,
    release_embedded,
    stop_embedded,
)
from dasync.transports.nats._server import _alive, _answers


async def _usable(url: str) -> None:
    transport, store = await connect_nats(url)
    try:
        await transport.declare("Probe")
        await store.load("Probe", "r")
    finally:
        await transport.close()
        await store.close()


async def test_start_stop_restart_on_the_same_port(tmp_path: Path):
    server = NatsServer(store_dir=tmp_path / "s")
    try:
        server.start()
        url, port = server.url, server.port
        assert url.startswith("nats://127.0.0.1:") and server.running
        await _usable(url)
        server.restart()
        assert server.port == port
        await _usable(url)
        server.stop()
        assert not server.running and not _answers(port)
    finally:
        server.cleanup()
    assert (tmp_path / "s").exists()  # a store we chose is kept


def test_a_failing_server_reports_its_fatal_lines(nats_server: NatsServer, tmp_path: Path):
    clash = NatsServer(port=nats_server.port, store_dir=tmp_path / "clash")
    with pytest.raises(NatsServerError, match="FTL"):
        clash.start()
    assert not clash.running


def test_a_missing_binary_is_a_clear_error(tmp_path: Path):
    with pytest.raises(NatsServerError, match="cannot run"):
        NatsServer(binary=str(tmp_path / "nope"), store_dir=tmp_path).start()


async def test_async_context_manager_cleans_up_its_temporary_store():
    async with NatsServer() as server:
        store = server.store_dir
        await _usable(server.url)
    assert not store.exists()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / ".dasync"
    yield directory
    stop_embedded(directory)


async def test_embedded_server_is_started_once_and_shared(project: Path):
    first = ensure_embedded(project)
    assert first.started and _alive(first.pid)
    await _usable(first.url)
    info = json.loads((project / "nats" / "server.json").read_text())
    assert info == {
        "url": first.url,
        "pid": first.pid,
        "port": first.port,
        "sync": "always",
        "monitor_port": first.monitor_port,
    }

    again = ensure_embedded(project)  # same process: reuse
    assert not again.started and again.url == first.url

    other = await asyncio.create_subprocess_exec(  # another process reuses it...
        sys.executable, "-c", _OTHER_PROCESS, str(project), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(other.communicate(), 60)
    assert out.decode().split() == ["False", first.url, "False"]  # ...and leaves it running
    assert _alive(first.pid)

    assert release_embedded(first)  # the last lease: stopped
    assert not _alive(first.pid)
    assert not (project / "nats" / "server.json").exists()


_OTHER_PROCESS = """
import sys
from dasync.transports.nats import ensure_embedded, release_embedded
e = ensure_embedded(sys.argv[1])
print(e.started, e.url, release_embedded(e))
"""


async def test_embedded_server_restarts_on_its_old_port_with_its_data(project: Path):
    first = ensure_embedded(project)
    transport, store = await connect_nats(first.url)
    await store.append("Kept", "r1", b"entry", 0)
    await transport.close()
    await store.close()
    assert release_embedded(first)

    second = ensure_embedded(project)
    assert second.started and second.port == first.port
    transport, store = await connect_nats(second.url)
    try:
        assert await store.load("Kept", "r1") == [b"entry"]
    finally:
        await transport.close()
        await store.close()
    assert stop_embedded(project)
    assert not _alive(second.pid)


def test_a_stale_record_is_replaced(project: Path, nats_server: NatsServer):
    home = project / "nats"
    home.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    busy = nats_server.port  # its old port is taken now: another one is picked
    record = {"url": f"nats://127.0.0.1:{busy}", "pid": dead.pid, "port": busy}
    (home / "server.json").write_text(json.dumps(record))
    server = ensure_embedded(project)
    assert server.started and server.pid != dead.pid and server.port != busy
    assert stop_embedded(project)
    assert not stop_embedded(project)  # nothing left to stop


def test_nothing_to_stop_in_an_empty_directory(tmp_path: Path):
    assert not stop_embedded(tmp_path / "none")
    assert os.path.exists(tmp_path)
