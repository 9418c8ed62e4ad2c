"""Workflow benchmark over NATS JetStream: dasync against the raw nats-py floor.

Run: ``python benchmarks/workflows.py`` (about 1.5 minutes), ``--quick``
(under 30 s), ``--mode procs`` to put each service in its own process,
``--profile out.prof`` to profile dasync's throughput phase (cProfile).

Workloads (``_workloads.py``):

* **W1** — a routine making 3 sequential calls to another service;
* **W2** — a routine gathering 10 calls to another service.

Systems:

* **dasync** — ``Flow``/``Leaf`` services on ``NatsTransport``/``NatsStore``,
  started through the client proxy;
* **floor** — the same durable work by hand with bare nats-py (``_floor.py``):
  acked JetStream publishes of every start, call, reply and result, durable
  pull consumers, one KV put per routine step, ack after commit.

For every (workload, system) the benchmark starts a fresh ``nats-server``
(file storage in a temp dir, 127.0.0.1) and measures:

* **latency** — p50/p99 of one routine at a time (client call to result);
* **throughput** — routines/s with 64 routines in flight (64 client tasks
  starting routines back to back);
* **CPU** — seconds of CPU per 1,000 routines during the throughput phase:
  the Python processes (this one, plus the service processes with
  ``--mode procs``) and the nats-server process, from ``/proc/<pid>/stat``;
* **operations per routine** — every publish the nats-py client makes,
  classified (acked message publish, journal write, journal read, ack, pull
  request, other JetStream API), counted over a sequential pass.

Modes: ``inproc`` (default) runs the client and both services in this process,
on one NATS connection, for both systems; ``procs`` runs each service in its
own process (client here), for both systems. On a 2-core machine ``procs``
shares the cores among four processes (nats-server, client, two services).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import platform
import pstats
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _floor  # noqa: E402
import _workloads  # noqa: E402
import nats.aio.client  # noqa: E402

import dasync  # noqa: E402
from dasync.transports.nats import NatsServer, connect_nats  # noqa: E402

INFLIGHT = 64
CLK_TCK = os.sysconf("SC_CLK_TCK")
WORKLOADS = ("W1", "W2")
SYSTEMS = ("floor", "dasync")

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
        ("ack", "acks (+ACK)"),
        ("other_settle", "other settles (-NAK, +WPI, +TERM)"),
        ("pull", "pull requests"),
        ("api", "other JetStream API requests"),
        ("core", "other core publishes"),
    )

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.enabled = False
        self._original = nats.aio.client.Client.publish

    def install(self) -> None:
        original, counter = self._original, self

        async def publish(self, subject, payload=b"", reply="", headers=None):  # type: ignore[no-untyped-def]
            if counter.enabled:
                counter.note(subject, payload, reply)
            return await original(self, subject, payload, reply, headers)

        nats.aio.client.Client.publish = publish  # type: ignore[method-assign]

    def note(self, subject: str, payload: bytes, reply: str) -> None:
        if subject.startswith("$JS.ACK."):
            # nats-py's Msg.ack() sends an empty payload, which JetStream reads as +ACK
            kind = "ack" if not payload or payload.startswith(b"+ACK") else "other_settle"
        elif subject.startswith("$JS.API.DIRECT.GET"):
            kind = "journal_read"
        elif subject.startswith("$JS.API.CONSUMER.MSG.NEXT"):
            kind = "pull"
        elif subject.startswith("$JS.API."):
            kind = "api"
        elif reply and (subject.startswith("$KV.") or ".journal." in subject):
            kind = "journal_write"
        elif reply:
            kind = "msg"
        else:
            kind = "core"
        self.counts[kind] += 1


COUNTER = OpCounter()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Cell:
    workload: str
    system: str
    mode: str
    latencies: list[float] = field(default_factory=list)
    loaded: list[float] = field(default_factory=list)
    routines: int = 0
    seconds: float = 0.0
    cpu_python: float = 0.0
    cpu_server: float = 0.0
    ops: dict[str, float] = field(default_factory=dict)
    ops_loaded: dict[str, float] = field(default_factory=dict)

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 0.50) * 1e3

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99) * 1e3

    @property
    def rate(self) -> float:
        return self.routines / self.seconds

    @property
    def cpu_per_k(self) -> float:
        return self.cpu_python / self.routines * 1000

    @property
    def server_per_k(self) -> float:
        return self.cpu_server / self.routines * 1000


# --- the systems --------------------------------------------------------------------------


@dataclass
class System:
    run: Run
    children: list[int]


def _spawn(system: str, role: str, url: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", system, "--role", role, "--url", url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"{system} {role} process did not start: {line!r}")
    return proc


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.close()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.asynccontextmanager
async def dasync_system(url: str, mode: str) -> AsyncIterator[System]:
    if mode == "inproc":
        transport, store = await connect_nats(url)
        services = [_workloads.FlowService, _workloads.LeafService]
        async with dasync.Runtime(services, transport=transport, store=store) as rt:
            flow = rt.client.proxy(_workloads.Flow)
            yield System(lambda w, x: flow.w1(x) if w == "W1" else flow.w2(x), [])
        return
    procs = [_spawn("dasync", "Flow", url), _spawn("dasync", "Leaf", url)]
    try:
        async with dasync.connect(url) as client:
            flow = client.proxy(_workloads.Flow)
            yield System(lambda w, x: flow.w1(x) if w == "W1" else flow.w2(x), [p.pid for p in procs])
    finally:
        await asyncio.to_thread(_stop, procs)


@contextlib.asynccontextmanager
async def floor_system(url: str, mode: str) -> AsyncIterator[System]:
    nc = await _floor.connect(url)
    procs: list[subprocess.Popen[str]] = []
    worker: _floor.FloorWorker | None = None
    try:
        await _floor.provision(nc)
        if mode == "inproc":
            worker = _floor.FloorWorker(nc)
            await worker.start(INFLIGHT)
        else:
            procs = [_spawn("floor", "orch", url), _spawn("floor", "leaf", url)]
        client = _floor.FloorClient(nc)
        await client.open()
        try:
            yield System(client.run, [p.pid for p in procs])
        finally:
            await client.close()
    finally:
        if worker is not None:
            await worker.stop()
        if procs:
            await asyncio.to_thread(_stop, procs)
        await nc.close()


SYSTEM_FACTORIES = {"dasync": dasync_system, "floor": floor_system}


async def serve(system: str, role: str, url: str) -> None:
    """A service process of ``--mode procs``: serve until stdin closes."""
    if system == "dasync":
        transport, store = await connect_nats(url)
        cls = {"Flow": _workloads.FlowService, "Leaf": _workloads.LeafService}[role]
        async with dasync.Runtime([cls], transport=transport, store=store):
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.read)
        return
    nc = await _floor.connect(url)
    worker = _floor.FloorWorker(nc, (role,))
    await worker.start(INFLIGHT)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await worker.stop()
    await nc.close()


# --- phases -------------------------------------------------------------------------------


async def sequential(run: Run, workload: str, n: int, out: list[float] | None = None) -> None:
    for i in range(n):
        t0 = time.perf_counter()
        result = await run(workload, i)
        if out is not None:
            out.append(time.perf_counter() - t0)
        if result != _workloads.expected(workload, i):
            raise AssertionError(f"{workload} returned {result}, expected {i}")


async def loaded(run: Run, workload: str, seconds: float, out: list[float]) -> tuple[int, float]:
    """64 client tasks start routines back to back for ``seconds``; (routines, elapsed)."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def driver(k: int) -> None:
        nonlocal done
        i = k
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            result = await run(workload, i)
            out.append(time.perf_counter() - t0)
            if result != _workloads.expected(workload, i):
                raise AssertionError(f"{workload} returned {result}")
            done += 1
            i += INFLIGHT

    t0 = time.perf_counter()
    await asyncio.gather(*(driver(k) for k in range(INFLIGHT)))
    return done, time.perf_counter() - t0


@dataclass
class Config:
    samples: int
    duration: float
    warmup: float
    count_runs: int
    profile: str | None
    profiler: str


@contextlib.contextmanager
def profiling(cfg: Config, tag: str | None) -> Iterator[None]:
    """Profile this process (dasync's throughput phase) with cProfile or pyinstrument."""
    if not cfg.profile or tag is None:
        yield
        return
    path = f"{cfg.profile}.{tag}"
    if cfg.profiler == "pyinstrument":
        from pyinstrument import Profiler

        sampler = Profiler(interval=0.0005, async_mode="disabled")
        sampler.start()
        try:
            yield
        finally:
            sampler.stop()
            path += ".txt"
            Path(path).write_text(sampler.output_text(unicode=False, color=False))
    else:
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            yield
        finally:
            profiler.disable()
            profiler.dump_stats(path)
    print(f"    profile of dasync {tag} written to {path}")


async def measure(workload: str, system: str, mode: str, cfg: Config) -> Cell:
    cell = Cell(workload, system, mode)
    async with NatsServer() as server:
        assert server.pid is not None
        async with SYSTEM_FACTORIES[system](server.url, mode) as sysm:
            run = sysm.run
            await sequential(run, workload, 5)  # provisioning, codecs, caches
            if mode == "inproc":
                COUNTER.counts.clear()
                COUNTER.enabled = True
                await sequential(run, workload, cfg.count_runs)
                COUNTER.enabled = False
                cell.ops = {k: v / cfg.count_runs for k, v in COUNTER.counts.items()}
            await sequential(run, workload, cfg.samples, cell.latencies)
            COUNTER.counts.clear()
            COUNTER.enabled = mode == "inproc"
            warm, _ = await loaded(run, workload, cfg.warmup, [])
            COUNTER.enabled = False
            if mode == "inproc":
                cell.ops_loaded = {k: v / warm for k, v in COUNTER.counts.items()}
            pids = [server.pid, *sysm.children]
            before = [proc_cpu(p) for p in pids]
            own = time.process_time()
            with profiling(cfg, f"{workload}.{mode}" if system == "dasync" else None):
                cell.routines, cell.seconds = await loaded(
                    run, workload, cfg.duration, cell.loaded
                )
            own = time.process_time() - own
            after = [proc_cpu(p) for p in pids]
            cell.cpu_server = after[0] - before[0]
            cell.cpu_python = own + sum(a - b for a, b in zip(after[1:], before[1:], strict=True))
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


def _server_binary() -> str:
    from dasync.transports.nats._server import find_binary

    return find_binary()


def _nats_version() -> str:
    from importlib.metadata import version

    return version("nats-py")


def report(cells: list[Cell]) -> None:
    print()
    hdr = (
        f"{'workload':<8} {'mode':<7} {'system':<7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'rt/s@64':>8} {'p50@64':>8} {'CPU s/1k':>9} {'srv s/1k':>9}"
    )
    print(hdr)
    print("-" * len(hdr))
    by = {(c.workload, c.mode, c.system): c for c in cells}
    for c in cells:
        print(
            f"{c.workload:<8} {c.mode:<7} {c.system:<7} {c.p50:8.2f} {c.p99:8.2f} "
            f"{c.rate:8.0f} {percentile(c.loaded, 0.5) * 1e3:8.1f} {c.cpu_per_k:9.2f} "
            f"{c.server_per_k:9.2f}"
        )
    print()
    print("ratios dasync / floor")
    for (workload, mode, system), d in by.items():
        if system != "dasync" or (workload, mode, "floor") not in by:
            continue
        f = by[(workload, mode, "floor")]
        line = (
            f"  {workload} {mode:<7} p50 {d.p50 / f.p50:4.2f}x  p99 {d.p99 / f.p99:4.2f}x  "
            f"throughput {d.rate / f.rate:6.1%} of floor  CPU {d.cpu_per_k / f.cpu_per_k:4.2f}x  "
            f"server CPU {d.server_per_k / f.server_per_k:4.2f}x"
        )
        if workload == "W1":
            ok_lat = d.p50 / f.p50 <= 3.0
            ok_tput = d.rate / f.rate >= 0.35
            line += (
                f"   [targets: p50 <= 3x {'met' if ok_lat else 'MISSED'}, "
                f"throughput >= 35% {'met' if ok_tput else 'MISSED'}]"
            )
        print(line)
    print()
    print("operations per routine (counted on the client connection, sequential pass)")
    with_ops = [c for c in cells if c.ops]
    if with_ops:
        print(f"  {'':<52}" + "".join(f"{c.workload + ' ' + c.system:>13}" for c in with_ops))
        for kind, label in OpCounter.KINDS:
            if not any(c.ops.get(kind) for c in with_ops):
                continue
            print(f"  {label:<52}" + "".join(f"{c.ops.get(kind, 0.0):13.2f}" for c in with_ops))
        print("  ... and with 64 in flight (warm-up burst before the throughput phase)")
        for kind, label in OpCounter.KINDS:
            if not any(c.ops_loaded.get(kind) for c in with_ops):
                continue
            print(
                f"  {label:<52}"
                + "".join(f"{c.ops_loaded.get(kind, 0.0):13.2f}" for c in with_ops)
            )


async def main(args: argparse.Namespace) -> None:
    quick = args.quick
    cfg = Config(
        samples=args.samples or (60 if quick else 200),
        duration=args.duration or (2.0 if quick else 5.0),
        warmup=0.5 if quick else 1.0,
        count_runs=10 if quick else 20,
        profile=args.profile,
        profiler=args.profiler,
    )
    modes = ["inproc", "procs"] if args.mode == "both" else [args.mode]
    COUNTER.install()
    print("dasync workflow benchmark over NATS JetStream")
    print(f"machine: {machine()}")
    print(
        f"latency: {cfg.samples} routines one at a time; throughput: {INFLIGHT} in flight for "
        f"{cfg.duration:g} s; modes: {', '.join(modes)}; a fresh nats-server per cell"
    )
    cells = []
    for mode in modes:
        for workload in args.workloads:
            for system in SYSTEMS:
                t0 = time.perf_counter()
                cell = await measure(workload, system, mode, cfg)
                cells.append(cell)
                print(
                    f"  {workload} {mode:<7} {system:<7} p50 {cell.p50:6.2f} ms  "
                    f"{cell.rate:6.0f} routines/s  ({time.perf_counter() - t0:.1f} s)",
                    flush=True,
                )
    report(cells)
    if args.profile and args.profiler == "cprofile":
        for workload in args.workloads:
            for mode in modes:
                path = f"{args.profile}.{workload}.{mode}"
                if os.path.exists(path):
                    print(f"\nprofile {path} (top 25 by own time)")
                    pstats.Stats(path).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (< 30 s)")
    parser.add_argument("--mode", choices=["inproc", "procs", "both"], default="inproc")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--samples", type=int, help="routines for the latency percentiles")
    parser.add_argument("--duration", type=float, help="seconds of the throughput phase")
    parser.add_argument("--profile", metavar="PATH", help="profile dasync's throughput phase")
    parser.add_argument("--profiler", choices=["cprofile", "pyinstrument"], default="cprofile")
    parser.add_argument("--serve", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        asyncio.run(serve(arguments.serve, arguments.role, arguments.url))
    else:
        asyncio.run(main(arguments))
