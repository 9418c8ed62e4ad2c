"""Workflow benchmark over NATS JetStream: dasync against the raw nats-py floor.

Run: ``python benchmarks/workflows.py`` (about 150 s), ``--quick`` (about
40 s), ``--mode procs`` / ``--mode both`` to also run each service in its own
process, ``--sync always|default|both`` for the server's JetStream
``sync_interval`` (default both: every cell under each), ``--profile PREFIX``
to profile the throughput phase (py-spy from outside when installed, else
cProfile). ``docs/benchmarks.md`` explains the figures.

Workloads (``_workloads.py``):

* **W1** — a routine making 3 sequential calls to another service;
* **W2** — a routine gathering 10 calls to another service.

Systems:

* **dasync** — ``Flow``/``Leaf`` services on ``NatsTransport``/``NatsStore``,
  started through the client proxy;
* **floor** — the same durable work by hand with bare nats-py (``_floor.py``):
  acked JetStream publishes of every start, call, reply and result, durable
  pull consumers, one KV put per routine step, ack after commit.

Every (workload, system, sync) cell runs ``--rounds`` times (systems
alternating, pooled), each on a fresh ``nats-server`` (file storage in a temp
dir, 127.0.0.1), and measures:

* **latency** — p50/p99 of one routine at a time (client call to result);
* **throughput** — routines/s with 64 routines in flight (64 client tasks
  starting routines back to back);
* **CPU** — seconds of CPU per 1,000 routines during the throughput phase:
  the Python processes (this one, plus the service processes with
  ``--mode procs``) and, separately, nats-server (``/proc/<pid>/stat``);
* **operations per routine** — every publish the nats-py client makes,
  classified (acked message publish, journal write, journal read, ack, pull
  request, other JetStream API), over a sequential pass and a loaded one.

Sync settings (``--sync``): ``always`` runs nats-server with ``jetstream {
sync_interval: always }`` (every write fsynced before it is acknowledged: what
``dasync run``'s embedded server does), ``default`` with nats-server's default
(a sync every 2 minutes). The floor and dasync of a comparison always run on a
server with the same setting; the ratios are printed per setting, and the cost
of fsync-before-ack per system (always against default).

Modes: ``inproc`` (default) runs the client and both services in this process,
on one NATS connection and one event loop, for both systems; ``procs`` runs
each service in its own process (client here), for both systems. On a 2-core
machine ``procs`` shares the cores among four processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _floor
import _profile
import _workloads
import nats.aio.client

import dasync
from dasync.transports.nats import NatsServer, connect_nats

INFLIGHT = 64
CLK_TCK = os.sysconf("SC_CLK_TCK")
WORKLOADS = ("W1", "W2")
SYSTEMS = ("floor", "dasync")
SYNCS = ("always", "default")
SERVER_SYNC = {"always": "always", "default": None}  # --sync -> NatsServer(sync=...)

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
        self._original = nats.aio.client.Client.publish

    @contextlib.contextmanager
    def counting(self, on: bool = True) -> Iterator[Counter[str]]:
        """Count publishes inside the block (the patch is removed outside it, costing nothing)."""
        self.counts = Counter()
        if not on:
            yield self.counts
            return
        original, counts, note = self._original, self.counts, self.note

        async def publish(self, subject, payload=b"", reply="", headers=None):  # type: ignore[no-untyped-def]
            note(counts, subject, payload, reply)
            return await original(self, subject, payload, reply, headers)

        nats.aio.client.Client.publish = publish  # type: ignore[method-assign]
        try:
            yield self.counts
        finally:
            nats.aio.client.Client.publish = original  # type: ignore[method-assign]

    @staticmethod
    def note(counts: Counter[str], subject: str, payload: bytes, reply: str) -> None:
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
        counts[kind] += 1


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
    sync: str = "always"
    latencies: list[float] = field(default_factory=list)
    loaded: list[float] = field(default_factory=list)
    routines: int = 0
    seconds: float = 0.0
    cpu_python: float = 0.0
    cpu_server: float = 0.0
    ops: dict[str, float] = field(default_factory=dict)
    ops_loaded: dict[str, float] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    """routines/s of each round"""

    def merge(self, other: Cell) -> None:
        """Pool another round of the same cell into this one."""
        self.latencies += other.latencies
        self.loaded += other.loaded
        self.routines += other.routines
        self.seconds += other.seconds
        self.cpu_python += other.cpu_python
        self.cpu_server += other.cpu_server
        self.rates += other.rates
        self.ops = self.ops or other.ops
        self.ops_loaded = self.ops_loaded or other.ops_loaded
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
            yield System(
                lambda w, x: flow.w1(x) if w == "W1" else flow.w2(x), [p.pid for p in procs]
            )
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
    rounds: int
    profile: str | None = None
    profiler: str = "py-spy"
    profile_systems: tuple[str, ...] = ("dasync",)


async def measure(workload: str, system: str, mode: str, sync: str, cfg: Config) -> Cell:
    cell = Cell(workload, system, mode, sync)
    async with NatsServer(sync=SERVER_SYNC[sync]) as server:
        assert server.pid is not None
        async with SYSTEM_FACTORIES[system](server.url, mode) as sysm:
            run = sysm.run
            await sequential(run, workload, 5)  # provisioning, codecs, caches
            counted = mode == "inproc"  # in procs mode the services publish elsewhere
            if counted:
                with COUNTER.counting() as counts:
                    await sequential(run, workload, cfg.count_runs)
                cell.ops = {k: v / cfg.count_runs for k, v in counts.items()}
            await sequential(run, workload, cfg.samples, cell.latencies)
            with COUNTER.counting(counted) as counts:
                warm, _ = await loaded(run, workload, cfg.warmup, [])
            if counted:
                cell.ops_loaded = {k: v / warm for k, v in counts.items()}
            pids = [server.pid, *sysm.children]
            before = [proc_cpu(p) for p in pids]
            own = time.process_time()
            tag = f"{system}.{workload}.{mode}.{sync}" if system in cfg.profile_systems else None
            with _profile.profiling(cfg.profile, cfg.profiler, tag) as path:
                cell.routines, cell.seconds = await loaded(run, workload, cfg.duration, cell.loaded)
            if path:
                cell.profiles.append(path)
            own = time.process_time() - own
            after = [proc_cpu(p) for p in pids]
            cell.cpu_server = after[0] - before[0]
            cell.cpu_python = own + sum(a - b for a, b in zip(after[1:], before[1:], strict=True))
            cell.rates = [cell.routines / cell.seconds]
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
        f"{'workload':<8} {'mode':<7} {'sync':<7} {'system':<7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'rt/s@64':>8} {'p50@64':>8} {'CPU s/1k':>9} {'srv s/1k':>9}  rounds rt/s"
    )
    print(hdr)
    print("-" * len(hdr))
    by = {(c.workload, c.mode, c.sync, c.system): c for c in cells}
    for c in sorted(cells, key=lambda c: (c.mode, c.workload, SYNCS.index(c.sync))):
        print(
            f"{c.workload:<8} {c.mode:<7} {c.sync:<7} {c.system:<7} {c.p50:8.2f} {c.p99:8.2f} "
            f"{c.rate:8.0f} {percentile(c.loaded, 0.5) * 1e3:8.1f} {c.cpu_per_k:9.2f} "
            f"{c.server_per_k:9.2f}  {' '.join(f'{r:.0f}' for r in c.rates)}"
        )
    print(
        "p50/p99: one routine at a time; rt/s@64: routines/s with 64 in flight (pooled over "
        "rounds);\np50@64: latency with 64 in flight; CPU s/1k: CPU seconds of the Python "
        "process(es) per 1,000 routines;\nsrv s/1k: the same for nats-server; sync: the "
        "server's sync_interval (always: fsync before every ack; default: every 2 min)"
    )
    print()
    print("ratios dasync / floor (both on a server with the same sync setting)")
    for (workload, mode, sync, system), d in sorted(by.items()):
        if system != "dasync" or (workload, mode, sync, "floor") not in by:
            continue
        f = by[(workload, mode, sync, "floor")]
        line = (
            f"  {workload} {mode:<7} sync {sync:<7} p50 {d.p50 / f.p50:4.2f}x  "
            f"p99 {d.p99 / f.p99:4.2f}x  "
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
    if len({c.sync for c in cells}) > 1:
        print()
        print("what fsync before ack costs: sync always / sync default, per system")
        for (workload, mode, sync, system), a in sorted(by.items()):
            if sync != "always" or (workload, mode, "default", system) not in by:
                continue
            n = by[(workload, mode, "default", system)]
            print(
                f"  {workload} {mode:<7} {system:<7} p50 {a.p50 / n.p50:4.2f}x  "
                f"p99 {a.p99 / n.p99:4.2f}x  throughput {a.rate / n.rate:6.1%}  "
                f"p50@64 {percentile(a.loaded, 0.5) / percentile(n.loaded, 0.5):4.2f}x  "
                f"server CPU {a.server_per_k / n.server_per_k:4.2f}x"
            )
    print()
    print("operations per routine (counted on the client connection, sequential pass)")
    first_sync = min((c.sync for c in cells), key=SYNCS.index, default="always")
    with_ops = [c for c in cells if c.ops and c.sync == first_sync]  # the same under each sync
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
                f"  {label:<52}" + "".join(f"{c.ops_loaded.get(kind, 0.0):13.2f}" for c in with_ops)
            )


async def main(args: argparse.Namespace) -> list[Cell]:
    quick = args.quick
    cfg = Config(
        samples=args.samples or (60 if quick else 200),
        duration=args.duration or (2.0 if quick else 5.0),
        warmup=0.5 if quick else 1.0,
        count_runs=10 if quick else 20,
        rounds=args.rounds or (1 if quick else 2),
        profile=args.profile,
        profiler=args.profiler or _profile.default_profiler(),
        profile_systems=tuple(args.profile_systems),
    )
    modes = ["inproc", "procs"] if args.mode == "both" else [args.mode]
    syncs = list(SYNCS) if args.sync == "both" else [args.sync]
    print("dasync workflow benchmark over NATS JetStream")
    print(f"machine: {machine()}")
    print(
        f"per cell and round: latency of {cfg.samples} routines one at a time, throughput with "
        f"{INFLIGHT} in flight for {cfg.duration:g} s; {cfg.rounds} round(s), systems "
        f"alternating; modes: {', '.join(modes)}; server sync_interval: {', '.join(syncs)}; "
        "a fresh nats-server per cell and round"
    )
    print(f"load average before the run: {os.getloadavg()[0]:.2f}")
    cells: dict[tuple[str, str, str, str], Cell] = {}
    for mode in modes:
        for workload in args.workloads:
            for r in range(cfg.rounds):
                # systems and settings alternate from round to round, so drift hits both
                order = SYSTEMS if r % 2 == 0 else SYSTEMS[::-1]
                for sync in syncs if r % 2 == 0 else syncs[::-1]:
                    for system in order:
                        t0 = time.perf_counter()
                        cell = await measure(workload, system, mode, sync, cfg)
                        print(
                            f"  round {r + 1}: {workload} {mode:<7} sync {sync:<7} {system:<7} "
                            f"p50 {cell.p50:6.2f} ms  {cell.rate:6.0f} routines/s  "
                            f"({time.perf_counter() - t0:.1f} s)",
                            flush=True,
                        )
                        key = (workload, mode, sync, system)
                        if key in cells:
                            cells[key].merge(cell)
                        else:
                            cells[key] = cell
    report(list(cells.values()))
    return list(cells.values())


def print_profiles(cells: list[Cell]) -> None:
    for cell in cells:
        for path in cell.profiles:
            print(
                f"\nprofile of {cell.system} {cell.workload} ({cell.mode}, "
                f"sync {cell.sync}): {path}"
            )
            if path.endswith(".folded"):
                per_round = cell.routines // max(len(cell.rates), 1)
                print(_profile.summarize(path, per_round))
            else:
                pstats.Stats(path).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (< 30 s)")
    parser.add_argument("--mode", choices=["inproc", "procs", "both"], default="inproc")
    parser.add_argument(
        "--sync",
        choices=[*SYNCS, "both"],
        default="both",
        help="nats-server sync_interval: always (fsync before ack), default (2 min), or both",
    )
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--samples", type=int, help="routines for the latency percentiles")
    parser.add_argument("--duration", type=float, help="seconds of the throughput phase")
    parser.add_argument("--rounds", type=int, help="rounds per cell (pooled; default 2, quick 1)")
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
