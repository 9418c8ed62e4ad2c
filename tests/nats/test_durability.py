"""Durable acknowledgements: the servers dasync starts fsync before they acknowledge.

Checked against the running server: its ``/varz`` monitoring endpoint reports
``jetstream.config.sync_always`` (nats-server's ``sync_interval: always``).
Jepsen's analysis of NATS 2.12.1 showed that the default (a sync every 2
minutes) loses acknowledged writes on power failure; see docs/nats.md.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dasync.testing import _nats_server
from dasync.transports.nats import NatsServer, connect_nats, ensure_embedded, stop_embedded


def _jetstream_config(monitor_port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/varz", timeout=5) as response:
        config: dict[str, Any] = json.loads(response.read())["jetstream"]["config"]
    return config


async def _append_and_read(url: str) -> None:
    transport, store = await connect_nats(url)
    try:
        await store.append("Durable", "r1", b"entry", 0)
        assert await store.load("Durable", "r1") == [b"entry"]
    finally:
        await transport.close()
        await store.close()


async def test_a_test_server_fsyncs_before_acknowledging(tmp_path: Path):
    with NatsServer(store_dir=tmp_path / "s", monitor=True) as server:
        assert server.sync == "always"
        config = server.varz()["jetstream"]["config"]
        assert config["sync_always"] is True
        await _append_and_read(server.url)
        server.restart()  # the setting survives a restart (same file, same flags)
        assert server.varz()["jetstream"]["config"]["sync_always"] is True


def test_the_testing_helper_starts_the_same_server():
    with _nats_server.nats_server() as server:
        assert server.sync == "always"
        assert "sync_interval: always" in server.config_file.read_text()


def test_sync_none_keeps_the_server_default(tmp_path: Path):
    with NatsServer(store_dir=tmp_path / "s", monitor=True, sync=None) as server:
        config = server.varz()["jetstream"]["config"]
        assert not config.get("sync_always")
        assert config["sync_interval"] == 120 * 10**9  # nats-server's 2 minutes, in ns
        assert not server.config_file.exists()


def test_a_sync_interval_can_be_chosen(tmp_path: Path):
    with NatsServer(store_dir=tmp_path / "s", monitor=True, sync="1s") as server:
        config = server.varz()["jetstream"]["config"]
        assert not config.get("sync_always") and config["sync_interval"] == 10**9


def test_a_bad_sync_value_is_refused():
    with pytest.raises(ValueError, match="sync"):
        NatsServer(sync="sometimes")


async def test_a_configuration_of_your_own_is_kept_and_still_fsyncs(tmp_path: Path):
    own = tmp_path / "auth.conf"
    own.write_text('authorization { user: "alice", password: "s3cret" }\n')
    with NatsServer(store_dir=tmp_path / "s", monitor=True, args=("-c", str(own))) as server:
        varz = server.varz()
        assert varz["auth_required"] is True  # the included file took effect
        assert varz["jetstream"]["config"]["sync_always"] is True
        await _append_and_read(server.url.replace("nats://", "nats://alice:s3cret@"))


def test_a_jetstream_block_of_your_own_decides(tmp_path: Path):
    own = tmp_path / "js.conf"
    own.write_text("jetstream { max_file_store: 1GB }\n")
    with NatsServer(store_dir=tmp_path / "s", monitor=True, args=(f"--config={own}",)) as server:
        config = server.varz()["jetstream"]["config"]
        assert config["max_storage"] == 1024**3 and not config.get("sync_always")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / ".dasync"
    yield directory
    stop_embedded(directory)


async def test_the_embedded_server_fsyncs_before_acknowledging(project: Path):
    embedded = ensure_embedded(project)
    assert embedded.started and embedded.sync == "always" and embedded.monitor_port
    assert _jetstream_config(embedded.monitor_port)["sync_always"] is True
    info = json.loads((project / "nats" / "server.json").read_text())
    assert info["sync"] == "always" and info["monitor_port"] == embedded.monitor_port
    await _append_and_read(embedded.url)

    again = ensure_embedded(project)  # a reused server reports the same
    assert not again.started and again.sync == "always"
    assert again.monitor_port == embedded.monitor_port


def test_reusing_an_embedded_server_started_without_it_warns(
    project: Path, caplog: pytest.LogCaptureFixture
):
    embedded = ensure_embedded(project)
    record = project / "nats" / "server.json"
    info = json.loads(record.read_text())
    del info["sync"], info["monitor_port"]  # as an older dasync wrote it
    record.write_text(json.dumps(info))
    with caplog.at_level(logging.WARNING, logger="dasync.nats"):
        again = ensure_embedded(project)
    assert again.pid == embedded.pid and again.sync is None
    assert "sync_interval: always" in caplog.text and "dasync server stop" in caplog.text
