"""Workflow benchmark over NATS JetStream: dasync against the raw nats-py floor.

Run (``docs/benchmarks.md``, "Speed: procs mode (issue 14)", explains the figures)::

    python benchmarks/workflows.py --mode procs          # the reference: about 4-6 min
    python benchmarks/workflows.py --mode procs --fsync  # the same on sync_interval: always
    python benchmarks/workflows.py --mode procs --workloads W2 --leaf-procs 1 2   # scale-out
    python benchmarks/workflows.py --mode procs --count  # + operation counts per routine
    python benchmarks/workflows.py                       # in process (secondary figure)
    python benchmarks/workflows.py --quick               # 1 round, short phases

Workloads (``_workloads.py``):

* **W1** — a routine making 3 sequential calls to 3 different services
  (orchestrator + 3 leaf services: in ``procs`` mode, 4 service processes);
* **W1-1leaf** — the same 3 calls to one leaf service (the W1 before issue 14);
* **W2** — a routine gathering 10 calls to one leaf service.

Systems:

* **dasync** — the services on ``NatsTransport``/``NatsStore`` (default
  ``Runtime`` settings), routines started through the client proxy;
* **floor** — the same durable work by hand with bare nats-py (``_floor.py``):
  acked JetStream publishes of every start, call, reply and result, one
  work-queue stream and durable pull consumer per service, one KV put per
  routine step, ack after commit; the same topology (one process per service).

Every (workload, system, sync, leaf processes) cell runs ``--rounds`` times
(default 3; systems alternating floor, dasync, dasync, floor...), each on a
fresh ``nats-server`` (file storage in a temp dir, 127.0.0.1), and measures:

* **latency** — p50/p99 of ``--samples`` (200) routines one at a time;
* **throughput** — ``--routines`` (2,000) routines with 64 in flight (64 client
  tasks starting routines back to back), after a warm-up burst of 256;
* **CPU** — seconds of CPU per 1,000 routines during the throughput phase, of
  every process: this one (the client; in ``inproc`` mode everything but the
  server), each service process (``/proc/<pid>/stat``) and nats-server;
* **operations per routine** — every publish every nats-py client of the
  system makes (this process and, in ``procs`` mode, each service process),
  classified: acked message publishes, journal writes, journal reads, claim
  publishes, index writes, acks, pull requests, other JetStream API; over a
  sequential pass and over the loaded warm-up burst.

Sync settings (``--sync``, ``--fsync``): ``always`` runs nats-server with
``jetstream { sync_interval: always }`` (every write fsynced before it is
acknowledged: what ``dasync run``'s embedded server does), ``default`` with
nats-server's default (a sync every 2 minutes). ``--fsync`` is ``--sync
always``. The default is ``default`` with ``--mode procs`` and ``both`` in
process.

Modes: ``inproc`` runs the client and all services in this process, on one
NATS connection and one event loop, for both systems; ``procs`` runs each
service in its own process (``--leaf-procs N``: each leaf service in N), the
client here. On a 2-core machine ``procs`` shares the cores among them all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import platform
import pstats
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _floor
import _profile
import _workloads
import nats.aio.client

import dasync
from dasync._collector import WORKER_GC_THRESHOLD
from dasync.transports.nats import NatsServer, connect_nats
from dasync.transports.nats import _connection as _nats_connection

INFLIGHT = 64
CLK_TCK = os.sysconf("SC_CLK_TCK")
WORKLOADS = ("W1", "W1-1leaf", "W2")
SYSTEMS = ("floor", "dasync")
SYNCS = ("always", "default")
SERVER_SYNC = {"always": "always", "default": None}  # --sync -> NatsServer(sync=...)
TOPOLOGY: dict[str, tuple[str, ...]] = {  # the services of each workload
    "W1": ("Flow", "Leaf", "Leaf2", "Leaf3"),
    "W1-1leaf": ("Flow", "Leaf"),
    "W2": ("Flow", "Leaf"),
}
LEAVES = ("Leaf", "Leaf2", "Leaf3")
FLOOR_ROLE = {"Flow": "orch", "Leaf": "leaf", "Leaf2": "leaf2", "Leaf3": "leaf3"}
DASYNC_SERVICE: dict[str, type] = {
    "Flow": _workloads.FlowService,
    "Leaf": _workloads.LeafService,
    "Leaf2": _workloads.Leaf2Service,
    "Leaf3": _workloads.Leaf3Service,
}
TARGETS = {  # issue 14, for dasync / floor in procs mode
    "W1": "throughput >= 50%, p50 <= 2x, CPU per routine <= 2.5x",
    "W2": "throughput >= 40%",
}

Run = Callable[[str, int], Awaitable[int]]


# --- measuring ----------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (seconds), from /proc/<pid>/stat (0 if unreadable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


class OpCounter:
    """Counts what the nats-py client publishes, by kind (patches ``Client.publish``)."""

    KINDS = (
        ("msg", "acked message publishes (start/call/reply/result)"),
        ("journal_write", "journal writes (dasync append / floor KV put)"),
        ("journal_read", "journal reads (direct get)"),
        ("claim", "claim publishes (dasync start claims)"),
        ("claim_read", "claim reads (direct get of a held claim)"),
        ("index", "index writes (dasync routine index)"),
        ("state", "service state writes (dasync message ids, crash counts)"),
        ("other_read", "other direct gets"),
        ("purge", "stream purges (index, retention)"),
        ("ack", "acks (+ACK)"),
        ("other_settle", "other settles (-NAK, +WPI, +TERM)"),
        ("pull", "pull requests"),
        ("api", "other JetStream API requests"),
        ("core", "other core publishes"),
    )

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._original = nats.aio.client.Client.publish
        self._emit = _nats_connection.Connection._emit
        """dasync's lean path publishes here, not through nats-py's ``publish``."""

    def start(self) -> None:
        """Count every publish from now on (until ``stop``)."""
        self.counts = Counter()
        original, counts, note = self._original, self.counts, self.note

        async def publish(self, subject, payload=b"", reply="", headers=None):  # type: ignore[no-untyped-def]
            note(counts, subject, payload, reply)
            return await original(self, subject, payload, reply, headers)

        nats.aio.client.Client.publish = publish  # type: ignore[method-assign]
        emit_original = self._emit

        async def emit(self, subject, reply, headers, data):  # type: ignore[no-untyped-def]
            note(counts, subject, data, reply)
            return await emit_original(self, subject, reply, headers, data)

        _nats_connection.Connection._emit = emit  # type: ignore[method-assign]

    def stop(self) -> dict[str, int]:
        """Remove the patch (costing nothing afterwards); the counts since ``start``."""
        nats.aio.client.Client.publish = self._original  # type: ignore[method-assign]
        _nats_connection.Connection._emit = self._emit  # type: ignore[method-assign]
        return dict(self.counts)

    @contextlib.contextmanager
    def counting(self, on: bool = True) -> Iterator[Counter[str]]:
        """Count publishes inside the block."""
        if not on:
            yield Counter()
            return
        self.start()
        try:
            yield self.counts
        finally:
            self.stop()

    @staticmethod
    def note(counts: Counter[str], subject: str, payload: bytes, reply: str) -> None:
        if subject.startswith("$JS.ACK."):
            # nats-py's Msg.ack() sends an empty payload, which JetStream reads as +ACK
            kind = "ack" if not payload or payload.startswith(b"+ACK") else "other_settle"
        elif subject.startswith("$JS.API.DIRECT.GET."):
            stream = subject.split(".")[4]
            if stream.endswith("_JOURNAL") or stream.startswith("KV_"):
                kind = "journal_read"
            elif stream.endswith("_CLAIMS"):
                kind = "claim_read"
            else:
                kind = "other_read"
        elif subject.startswith("$JS.API.CONSUMER.MSG.NEXT"):
            kind = "pull"
        elif subject.startswith("$JS.API.STREAM.PURGE"):
            kind = "purge"
        elif subject.startswith("$JS.API."):
            kind = "api"
        elif reply and ".journal._claim_" in subject:
            kind = "claim"
        elif reply and (subject.startswith("$KV.") or ".journal." in subject):
            kind = "journal_write"
        elif reply and ".claim." in subject:
            kind = "claim"
        elif reply and ".index." in subject:
            kind = "index"
        elif reply and ".state." in subject:
            kind = "state"
        elif reply:
            kind = "msg"
        else:
            kind = "core"
        counts[kind] += 1


COUNTER = OpCounter()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Round:
    """The figures of one round of one cell (for the ranges)."""

    p50: float
    rate: float
    cpu_python: float
    """CPU s per 1,000 routines, every Python process"""
    cpu_total: float
    """the same with nats-server"""
    load: float
    """1-minute load average at the end of the round"""


@dataclass
class Cell:
    workload: str
    system: str
    mode: str
    sync: str = "default"
    leaf_procs: int = 1
    latencies: list[float] = field(default_factory=list)
    loaded: list[float] = field(default_factory=list)
    routines: int = 0
    seconds: float = 0.0
    cpu: Counter[str] = field(default_factory=Counter)
    """process label (client, Flow, Leaf, Leaf#2, ..., server) -> CPU seconds"""
    ops: dict[str, float] = field(default_factory=dict)
    ops_loaded: dict[str, float] = field(default_factory=dict)
    ops_by: dict[str, dict[str, float]] = field(default_factory=dict)
    """process label -> kind -> per routine (sequential pass)"""
    ops_loaded_by: dict[str, dict[str, float]] = field(default_factory=dict)
    profiles: list[tuple[str, str]] = field(default_factory=list)
    """(process label, path)"""
    rounds: list[Round] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.workload, self.mode, self.sync, self.leaf_procs)

    @property
    def label(self) -> str:
        return self.workload + (f" leaf×{self.leaf_procs}" if self.leaf_procs > 1 else "")

    def merge(self, other: Cell) -> None:
        """Pool another round of the same cell into this one."""
        self.latencies += other.latencies
        self.loaded += other.loaded
        self.routines += other.routines
        self.seconds += other.seconds
        self.cpu.update(other.cpu)
        self.rounds += other.rounds
        self.ops = self.ops or other.ops
        self.ops_loaded = self.ops_loaded or other.ops_loaded
        self.ops_by = self.ops_by or other.ops_by
        self.ops_loaded_by = self.ops_loaded_by or other.ops_loaded_by
        self.profiles += other.profiles

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 0.50) * 1e3

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99) * 1e3

    @property
    def rate(self) -> float:
        return self.routines / self.seconds

    def per_k(self, *labels: str) -> float:
        """CPU s per 1,000 routines of the processes whose label starts with one of ``labels``."""
        cpu = sum(v for k, v in self.cpu.items() if k.startswith(labels))
        return cpu / self.routines * 1000

    @property
    def cpu_python(self) -> float:
        return sum(v for k, v in self.cpu.items() if k != "server") / self.routines * 1000

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu.values()) / self.routines * 1000


# --- the systems --------------------------------------------------------------------------


class Child:
    """A service process of ``--mode procs``: a line protocol on stdin/stdout.

    ``count`` starts counting its publishes, ``counts`` stops and answers them (JSON);
    closing stdin stops the process."""

    def __init__(self, system: str, role: str, url: str, label: str) -> None:
        self.label = label
        self.popen = subprocess.Popen(
            [sys.executable, __file__, "--serve", system, "--role", role, "--url", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def ready(self) -> None:
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if line.strip() != "ready":
            self.popen.kill()
            raise RuntimeError(f"{self.label} process did not start: {line!r}")

    def command(self, cmd: str) -> str:
        assert self.popen.stdin is not None and self.popen.stdout is not None
        self.popen.stdin.write(cmd + "\n")
        self.popen.stdin.flush()
        return self.popen.stdout.readline().strip()


def _spawn(system: str, roles: list[str], url: str) -> list[Child]:
    """One process per role, started together; returns once each says it is ready."""
    children: list[Child] = []
    seen: Counter[str] = Counter()
    for role in roles:
        seen[role] += 1
        label = role if seen[role] == 1 else f"{role}#{seen[role]}"
        children.append(Child(system, FLOOR_ROLE[role] if system == "floor" else role, url, label))
    try:
        for child in children:
            child.ready()
    except BaseException:
        _stop(children)
        raise
    return children


def _stop(children: list[Child]) -> None:
    for child in children:
        assert child.popen.stdin is not None
        with contextlib.suppress(OSError):
            child.popen.stdin.close()
    for child in children:
        try:
            child.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.popen.kill()
            child.popen.wait()


@dataclass
class System:
    run: Run
    children: list[Child]

    async def counted(
        self, phase: Callable[[], Awaitable[int]]
    ) -> tuple[dict[str, Counter[str]], int]:
        """Run ``phase`` counting every publish of every process; ({process: counts}, routines)."""
        for child in self.children:
            await asyncio.to_thread(child.command, "count")
        with COUNTER.counting() as counts:
            n = await phase()
        by: dict[str, Counter[str]] = {"client": Counter(counts)}
        for child in self.children:
            by[child.label] = Counter(json.loads(await asyncio.to_thread(child.command, "counts")))
        return by, n


def _roles(workload: str, leaf_procs: int) -> list[str]:
    roles: list[str] = []
    for role in TOPOLOGY[workload]:
        roles += [role] * (leaf_procs if role in LEAVES else 1)
    return roles


def _dasync_run(flow: Any) -> Run:
    def run(workload: str, x: int) -> Awaitable[int]:
        if workload == "W1":
            return flow.chain(x)  # type: ignore[no-any-return]
        if workload == "W1-1leaf":
            return flow.w1(x)  # type: ignore[no-any-return]
        return flow.w2(x)  # type: ignore[no-any-return]

    return run


@contextlib.asynccontextmanager
async def dasync_system(
    url: str, mode: str, workload: str, leaf_procs: int
) -> AsyncIterator[System]:
    if mode == "inproc":
        transport, store = await connect_nats(url)
        services = [DASYNC_SERVICE[r] for r in TOPOLOGY[workload]]
        async with dasync.Runtime(services, transport=transport, store=store) as rt:
            yield System(_dasync_run(rt.client.proxy(_workloads.Flow)), [])
        return
    children = await asyncio.to_thread(_spawn, "dasync", _roles(workload, leaf_procs), url)
    try:
        async with dasync.connect(url) as client:
            yield System(_dasync_run(client.proxy(_workloads.Flow)), children)
    finally:
        await asyncio.to_thread(_stop, children)


@contextlib.asynccontextmanager
async def floor_system(
    url: str, mode: str, workload: str, leaf_procs: int
) -> AsyncIterator[System]:
    nc = await _floor.connect(url)
    children: list[Child] = []
    worker: _floor.FloorWorker | None = None
    try:
        await _floor.provision(nc)
        if mode == "inproc":
            worker = _floor.FloorWorker(nc, tuple(FLOOR_ROLE[r] for r in TOPOLOGY[workload]))
            await worker.start(INFLIGHT)
        else:
            children = await asyncio.to_thread(_spawn, "floor", _roles(workload, leaf_procs), url)
        client = _floor.FloorClient(nc)
        await client.open()
        try:
            yield System(client.run, children)
        finally:
            await client.close()
    finally:
        if worker is not None:
            await worker.stop()
        if children:
            await asyncio.to_thread(_stop, children)
        await nc.close()


SYSTEM_FACTORIES = {"dasync": dasync_system, "floor": floor_system}


async def serve(system: str, role: str, url: str) -> None:
    """A service process of ``--mode procs``: serve, answer commands, stop when stdin closes."""

    async def commands() -> None:
        while line := await asyncio.to_thread(sys.stdin.readline):
            cmd = line.strip()
            if cmd == "count":
                COUNTER.start()
                print("ok", flush=True)
            elif cmd == "counts":
                print(json.dumps(COUNTER.stop()), flush=True)
            else:
                print(f"unknown command {cmd!r}", flush=True)

    # as ``dasync run`` sets it for its workers; the floor's processes too, so that the
    # two differ only in their code (dasync/_collector.py)
    dasync.tune_collector()
    prefix = os.environ.get("BENCH_CPROFILE")  # a deterministic profile of this process
    profiler = cProfile.Profile() if prefix else None
    if profiler is not None:
        profiler.enable()
    try:
        await _serve(system, role, url, commands)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(f"{prefix}.{system}.{role}.{os.getpid()}.prof")


async def _serve(system: str, role: str, url: str, commands: Callable[[], Awaitable[None]]) -> None:
    if system == "dasync":
        transport, store = await connect_nats(url)
        async with dasync.Runtime([DASYNC_SERVICE[role]], transport=transport, store=store):
            print("ready", flush=True)
            await commands()
        return
    nc = await _floor.connect(url)
    worker = _floor.FloorWorker(nc, (role,))
    await worker.start(INFLIGHT)
    print("ready", flush=True)
    await commands()
    await worker.stop()
    await nc.close()


# --- phases -------------------------------------------------------------------------------


async def sequential(run: Run, workload: str, n: int, out: list[float] | None = None) -> int:
    for i in range(n):
        t0 = time.perf_counter()
        result = await run(workload, i)
        if out is not None:
            out.append(time.perf_counter() - t0)
        if result != _workloads.expected(workload, i):
            raise AssertionError(f"{workload} returned {result}, expected {i}")
    return n


async def loaded(
    run: Run, workload: str, out: list[float], routines: int, seconds: float | None = None
) -> tuple[int, float]:
    """64 client tasks start routines back to back until ``routines`` have started (or for
    ``seconds``, if given); (routines done, elapsed)."""
    deadline = time.perf_counter() + seconds if seconds else None
    started = done = 0

    async def driver() -> None:
        nonlocal started, done
        while (started < routines) if deadline is None else (time.perf_counter() < deadline):
            i = started
            started += 1
            t0 = time.perf_counter()
            result = await run(workload, i)
            out.append(time.perf_counter() - t0)
            if result != _workloads.expected(workload, i):
                raise AssertionError(f"{workload} returned {result}")
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(driver() for _ in range(INFLIGHT)))
    return done, time.perf_counter() - t0


@dataclass
class Config:
    samples: int
    routines: int
    warmup: int
    count_runs: int
    rounds: int
    duration: float | None = None
    count: bool = True
    profile: str | None = None
    profiler: str = "py-spy"
    profile_systems: tuple[str, ...] = ("dasync",)


async def measure(
    workload: str, system: str, mode: str, sync: str, leaf_procs: int, cfg: Config
) -> Cell:
    cell = Cell(workload, system, mode, sync, leaf_procs)
    async with NatsServer(sync=SERVER_SYNC[sync]) as server:
        assert server.pid is not None
        async with SYSTEM_FACTORIES[system](server.url, mode, workload, leaf_procs) as sysm:
            run = sysm.run
            await sequential(run, workload, 5)  # provisioning, codecs, caches
            if cfg.count:
                by, n = await sysm.counted(lambda: sequential(run, workload, cfg.count_runs))
                cell.ops = {k: v / n for k, v in sum(by.values(), Counter()).items()}
                cell.ops_by = {p: {k: v / n for k, v in c.items()} for p, c in by.items()}
            await sequential(run, workload, cfg.samples, cell.latencies)

            async def warm() -> int:
                return (await loaded(run, workload, [], cfg.warmup))[0]

            if cfg.count:
                by, n = await sysm.counted(warm)
                cell.ops_loaded = {k: v / n for k, v in sum(by.values(), Counter()).items()}
                cell.ops_loaded_by = {p: {k: v / n for k, v in c.items()} for p, c in by.items()}
            else:
                await warm()
            pids = {"server": server.pid, **{c.label: c.pid for c in sysm.children}}
            before = {k: proc_cpu(p) for k, p in pids.items()}
            own = time.process_time()
            tag = f"{system}.{workload}.{mode}.{sync}.l{leaf_procs}"
            tag_or_none = tag if system in cfg.profile_systems else None
            if cfg.profiler == "py-spy":
                spied = {"client": os.getpid(), **{c.label: c.pid for c in sysm.children}}
                profiling = _profile.profiling_pids(cfg.profile, tag_or_none, spied)
            else:
                profiling = _profile.profiling(cfg.profile, cfg.profiler, tag_or_none)
            with profiling as paths:
                cell.routines, cell.seconds = await loaded(
                    run, workload, cell.loaded, cfg.routines, cfg.duration
                )
            if isinstance(paths, dict):
                cell.profiles += list(paths.items())
            elif paths:
                cell.profiles.append(("client", paths))
            cell.cpu["client"] = time.process_time() - own
            for k, p in pids.items():
                cell.cpu[k] = proc_cpu(p) - before[k]
    cell.rounds = [Round(cell.p50, cell.rate, cell.cpu_python, cell.cpu_total, os.getloadavg()[0])]
    return cell


# --- report -------------------------------------------------------------------------------


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    version = subprocess.run(
        [_server_binary(), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"nats-py {_nats_version()}, {version}"
    )


def dasync_source() -> str:
    """Where dasync is imported from, and its commit (``+dirty`` with uncommitted changes)."""
    root = Path(dasync.__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "dasync", "transports")
    return f"{root} at {commit}{' +uncommitted changes' if dirty else ''}"


def _server_binary() -> str:
    from dasync.transports.nats._server import find_binary

    return find_binary()


def _nats_version() -> str:
    from importlib.metadata import version

    return version("nats-py")


def _range(values: list[float], fmt: str) -> str:
    if len(values) < 2:
        return format(values[0], fmt) if values else "-"
    return f"{format(min(values), fmt)}-{format(max(values), fmt)}"


def _labels(cells: list[Cell]) -> list[str]:
    """The CPU columns: client, Flow, the leaves (each process), server."""
    seen: list[str] = []
    for c in cells:
        for k in c.cpu:
            if k not in seen:
                seen.append(k)
    order = ["client", "Flow", *[k for k in seen if k.startswith("Leaf")], "server"]
    return [k for k in order if k in seen]


def report(cells: list[Cell]) -> None:
    print()
    cells = sorted(
        cells,
        key=lambda c: (c.mode, WORKLOADS.index(c.workload), c.leaf_procs, c.sync, c.system),
    )
    labels = _labels(cells)
    hdr = (
        f"{'workload':<13} {'mode':<6} {'sync':<7} {'system':<6} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'rt/s@64':>7} {'p50@64':>7} "
        + " ".join(f"{k[:7]:>7}" for k in labels)
        + f" {'Python':>7} {'total':>7}"
    )
    print(
        "CPU columns: CPU seconds per 1,000 routines of each process, during the throughput phase"
    )
    print(hdr)
    print("-" * len(hdr))
    for c in cells:
        print(
            f"{c.label:<13} {c.mode:<6} {c.sync:<7} {c.system:<6} {c.p50:7.2f} {c.p99:7.2f} "
            f"{c.rate:7.0f} {percentile(c.loaded, 0.5) * 1e3:7.1f} "
            + " ".join(
                f"{c.cpu[k] / c.routines * 1000:7.2f}" if k in c.cpu else f"{'':7}" for k in labels
            )
            + f" {c.cpu_python:7.2f} {c.cpu_total:7.2f}"
        )
    print(
        "p50/p99: one routine at a time; rt/s@64: routines/s with 64 in flight (pooled over "
        "rounds);\np50@64: latency with 64 in flight; client: this process (in process: "
        "client and services); Python: all\nbut nats-server; total: all processes; sync: the "
        "server's sync_interval (always: fsync before every ack;\ndefault: every 2 min)"
    )
    print()
    print("per round (ranges over rounds): routines/s, p50 ms, CPU s/1k total, load average")
    for c in cells:
        r = c.rounds
        print(
            f"  {c.label:<13} {c.mode:<6} {c.sync:<7} {c.system:<6} "
            f"rt/s {' '.join(f'{x.rate:.0f}' for x in r):<18} "
            f"p50 {' '.join(f'{x.p50:.1f}' for x in r):<18} "
            f"CPU {' '.join(f'{x.cpu_total:.2f}' for x in r):<18} "
            f"load {' '.join(f'{x.load:.1f}' for x in r)}"
        )
    by = {(c.key, c.system): c for c in cells}
    print()
    print("ratios dasync / floor (same run, same server setting; pooled, then [range over rounds])")
    for c in cells:
        if c.system != "dasync" or (c.key, "floor") not in by:
            continue
        d, f = c, by[(c.key, "floor")]
        pairs = list(zip(d.rounds, f.rounds, strict=False))
        p50s = [a.p50 / b.p50 for a, b in pairs]
        rates = [a.rate / b.rate for a, b in pairs]
        cpus = [a.cpu_total / b.cpu_total for a, b in pairs]
        line = (
            f"  {d.label:<13} {d.mode:<6} sync {d.sync:<7} "
            f"p50 {d.p50 / f.p50:4.2f}x [{_range(p50s, '.2f')}]  "
            f"p99 {d.p99 / f.p99:4.2f}x  "
            f"throughput {d.rate / f.rate:6.1%} [{_range([100 * r for r in rates], '.0f')}%]  "
            f"CPU total {d.cpu_total / f.cpu_total:4.2f}x [{_range(cpus, '.2f')}]  "
            f"Python {d.cpu_python / f.cpu_python:4.2f}x  "
            f"server {d.per_k('server') / f.per_k('server'):4.2f}x"
        )
        if d.mode == "procs" and d.workload == "W1" and d.leaf_procs == 1:
            ok = (
                d.rate / f.rate >= 0.5,
                d.p50 / f.p50 <= 2.0,
                d.cpu_total / f.cpu_total <= 2.5,
            )
            line += (
                f"\n      [issue 14 targets: throughput >= 50% {'met' if ok[0] else 'MISSED'}, "
                f"p50 <= 2x {'met' if ok[1] else 'MISSED'}, "
                f"CPU <= 2.5x {'met' if ok[2] else 'MISSED'}]"
            )
        if d.mode == "procs" and d.workload == "W2" and d.leaf_procs == 1:
            line += (
                f"\n      [issue 14 target: throughput >= 40% "
                f"{'met' if d.rate / f.rate >= 0.4 else 'MISSED'}]"
            )
        print(line)
    if len({c.sync for c in cells}) > 1:
        print()
        print("what fsync before ack costs: sync always / sync default, per system")
        for c in cells:
            if c.sync != "always":
                continue
            key = (c.workload, c.mode, "default", c.leaf_procs)
            if (key, c.system) not in by:
                continue
            a, n = c, by[(key, c.system)]
            print(
                f"  {a.label:<13} {a.mode:<6} {a.system:<6} p50 {a.p50 / n.p50:4.2f}x  "
                f"p99 {a.p99 / n.p99:4.2f}x  throughput {a.rate / n.rate:6.1%}  "
                f"p50@64 {percentile(a.loaded, 0.5) / percentile(n.loaded, 0.5):4.2f}x  "
                f"server CPU {a.per_k('server') / n.per_k('server'):4.2f}x"
            )
    report_ops(cells)


def report_ops(cells: list[Cell]) -> None:
    with_ops = [c for c in cells if c.ops]
    if not with_ops:
        return
    first_sync = min((c.sync for c in with_ops), key=SYNCS.index)
    with_ops = [c for c in with_ops if c.sync == first_sync]  # the same under each sync
    for title, attr in (
        ("sequential pass", "ops"),
        ("with 64 in flight (the warm-up burst before the throughput phase)", "ops_loaded"),
    ):
        print()
        print(f"operations per routine, every process's nats-py client, {title}")
        names = [f"{c.label} {c.mode} {c.system}" for c in with_ops]
        width = max(14, *(len(n) + 1 for n in names))
        print(f"  {'':<56}" + "".join(f"{n:>{width}}" for n in names))
        total = [0.0] * len(with_ops)
        for kind, label in OpCounter.KINDS:
            values = [getattr(c, attr).get(kind, 0.0) for c in with_ops]
            if not any(values):
                continue
            total = [t + v for t, v in zip(total, values, strict=True)]
            print(f"  {label:<56}" + "".join(f"{v:{width}.2f}" for v in values))
        print(f"  {'every publish':<56}" + "".join(f"{v:{width}.2f}" for v in total))
        print("  ... by process (requests: every publish but acks), per routine:")
        for c in with_ops:
            by = getattr(c, attr + "_by") if attr == "ops_loaded" else c.ops_by
            parts = []
            for proc, kinds in by.items():
                detail = ", ".join(
                    f"{k} {v:.2f}" for k, v in sorted(kinds.items()) if k not in ("ack",) and v
                )
                parts.append(f"{proc}: {detail}")
            print(f"    {c.label} {c.mode} {c.system}: " + "; ".join(parts))


async def main(args: argparse.Namespace) -> list[Cell]:
    quick = args.quick
    modes = ["inproc", "procs"] if args.mode == "both" else [args.mode]
    sync_arg = "always" if args.fsync else args.sync
    if sync_arg is None:
        sync_arg = "both" if args.mode == "inproc" else "default"
    syncs = list(SYNCS) if sync_arg == "both" else [sync_arg]
    cfg = Config(
        samples=args.samples or (60 if quick else 200),
        routines=args.routines or (500 if quick else 2000),
        warmup=64 if quick else 256,
        count_runs=10 if quick else 20,
        rounds=args.rounds or (1 if quick else 3),
        duration=args.duration,
        count=not args.no_count,
        profile=args.profile,
        profiler=args.profiler or _profile.default_profiler(),
        profile_systems=tuple(args.profile_systems),
    )
    phase = f"{cfg.duration:g} s" if cfg.duration else f"{cfg.routines} routines"
    print("dasync workflow benchmark over NATS JetStream")
    print(f"machine: {machine()}")
    print(f"dasync: {dasync_source()}")
    print(
        f"per cell and round: latency of {cfg.samples} routines one at a time, throughput of "
        f"{phase} with {INFLIGHT} in flight; {cfg.rounds} round(s), systems alternating; "
        f"modes: {', '.join(modes)}; server sync_interval: {', '.join(syncs)}; leaf processes: "
        f"{', '.join(map(str, args.leaf_procs))}; a fresh nats-server per cell and round; "
        f"service processes collect garbage as `dasync run` (first threshold "
        f"{WORKER_GC_THRESHOLD})"
    )
    print(f"load average before the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    t_start = time.perf_counter()
    cells: dict[tuple[tuple[str, str, str, int], str], Cell] = {}
    for mode in modes:
        for workload in args.workloads:
            leaf_counts = args.leaf_procs if mode == "procs" else [1]
            for r in range(cfg.rounds):
                # systems and settings alternate from round to round, so drift hits both
                order = SYSTEMS if r % 2 == 0 else SYSTEMS[::-1]
                for sync in syncs if r % 2 == 0 else syncs[::-1]:
                    for leaf_procs in leaf_counts if r % 2 == 0 else leaf_counts[::-1]:
                        for system in order:
                            t0 = time.perf_counter()
                            cell = await measure(workload, system, mode, sync, leaf_procs, cfg)
                            print(
                                f"  round {r + 1}: {cell.label:<13} {mode:<6} sync {sync:<7} "
                                f"{system:<6} p50 {cell.p50:6.2f} ms  {cell.rate:6.0f} "
                                f"routines/s  CPU {cell.cpu_total:5.2f} s/1k  "
                                f"load {os.getloadavg()[0]:.1f}  "
                                f"({time.perf_counter() - t0:.1f} s)",
                                flush=True,
                            )
                            key = (cell.key, system)
                            if key in cells:
                                cells[key].merge(cell)
                            else:
                                cells[key] = cell
    report(list(cells.values()))
    print(
        f"\nload average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"{time.perf_counter() - t_start:.0f} s"
    )
    return list(cells.values())


def print_profiles(cells: list[Cell]) -> None:
    for cell in cells:
        for label, path in cell.profiles:
            print(
                f"\nprofile of {cell.system} {cell.label} ({cell.mode}, sync {cell.sync}), "
                f"process {label}: {path}"
            )
            if path.endswith(".folded"):
                per_round = cell.routines // max(len(cell.rounds), 1)
                print(_profile.summarize(path, per_round))
            else:
                pstats.Stats(path).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run: 1 round, short phases")
    parser.add_argument("--mode", choices=["inproc", "procs", "both"], default="inproc")
    parser.add_argument(
        "--sync",
        choices=[*SYNCS, "both"],
        help="nats-server sync_interval: always (fsync before ack), default (2 min), or both "
        "(default: default with --mode procs/both, both in process)",
    )
    parser.add_argument("--fsync", action="store_true", help="= --sync always")
    parser.add_argument(
        "--workloads", nargs="+", choices=WORKLOADS, default=["W1", "W2"], help="default W1 W2"
    )
    parser.add_argument(
        "--leaf-procs",
        nargs="+",
        type=int,
        default=[1],
        metavar="N",
        help="processes per leaf service in procs mode (several: one cell each, alternating)",
    )
    parser.add_argument("--samples", type=int, help="routines for the latency percentiles")
    parser.add_argument(
        "--routines", type=int, help="routines of the throughput phase (default 2,000)"
    )
    parser.add_argument(
        "--duration", type=float, help="seconds of the throughput phase instead of --routines"
    )
    parser.add_argument("--rounds", type=int, help="rounds per cell (pooled; default 3, quick 1)")
    parser.add_argument(
        "--count",
        action="store_true",
        help="count operations per routine (the default; kept for the command lines)",
    )
    parser.add_argument("--no-count", action="store_true", help="skip the operation counts")
    parser.add_argument(
        "--profile", metavar="PREFIX", help="profile the throughput phase into PREFIX.<cell>.*"
    )
    parser.add_argument(
        "--profiler", choices=["py-spy", "cprofile"], help="default: py-spy if installed"
    )
    parser.add_argument(
        "--profile-systems", nargs="+", choices=SYSTEMS, default=["dasync"], help="what to profile"
    )
    parser.add_argument("--serve", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        asyncio.run(serve(arguments.serve, arguments.role, arguments.url))
    else:
        print_profiles(asyncio.run(main(arguments)))
