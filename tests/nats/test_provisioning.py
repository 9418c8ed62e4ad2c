"""A process never changes a stream that exists; only the provisioner does.

Whoever declared a shared stream last used to decide its settings (a client at the
defaults would scale a cluster's streams down). Now a process that finds a stream
with other settings keeps it as it is and says so, naming the stream, both values
and the fix; ``dasync nats-provision`` (``Provisioner(update=True)``) changes it.
"""

from __future__ import annotations

import logging
import uuid

from dasync.transports.nats import naming
from dasync.transports.nats._provision import Provisioner

NS = 1_000_000_000


async def test_a_stream_is_kept_as_it_is_and_the_difference_reported(connect, caplog):
    namespace = f"p{uuid.uuid4().hex[:8]}"
    first, _ = await connect(namespace=namespace, duplicate_window=120)
    second, _ = await connect(namespace=namespace, duplicate_window=30)
    stream = naming.work_stream("Svc", namespace)
    await first.declare("Svc")
    caplog.set_level(logging.WARNING, logger="dasync.nats")
    await second.declare("Svc")
    config = (await second.conn.api(f"STREAM.INFO.{stream}"))["config"]
    assert config["duplicate_window"] == 120 * NS  # unchanged
    [warning] = [r.getMessage() for r in caplog.records if stream in r.getMessage()]
    assert "duplicate_window=120000000000" in warning and str(30 * NS) in warning
    assert "dasync nats-provision" in warning and "$DASYNC_NATS_DUPLICATE_WINDOW" in warning

    # the same settings: nothing to say
    caplog.clear()
    third, _ = await connect(namespace=namespace, duplicate_window=120)
    await third.declare("Svc")
    assert not [r for r in caplog.records if stream in r.getMessage()]

    # the provisioner brings it to its settings
    await Provisioner(second.conn, update=True).queue("Svc", consumer=False)
    config = (await second.conn.api(f"STREAM.INFO.{stream}"))["config"]
    assert config["duplicate_window"] == 30 * NS
