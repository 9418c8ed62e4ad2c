"""HTTP gateway benchmark: requests/s of a one-call routine with ``Prefer: wait``.

Run: ``python benchmarks/gateway.py`` (about 4 min: 2 rounds under both sync
settings), ``--quick`` (about 1 min: 1 round, shorter phases), ``--sync always``
or ``--sync default`` for one setting, ``--systems floor,gateway`` for fewer.
``docs/benchmarks.md`` ("HTTP gateway") has the figures and what they mean.

The routine, ``Edge.one(x)``, makes one durable call (``Leaf.work(x)``, itself a
routine) and returns ``x + 1``. Systems, each served by uvicorn from its own
process on 127.0.0.1 (the load comes from this one), each round on a fresh
``nats-server`` (JetStream file store in a temporary directory), under each
``sync_interval`` setting (``always``: fsync before every ack, as ``dasync run``'s
embedded server runs; ``default``: nats-server's own):

* **floor** — a bare Starlette endpoint doing the same NATS work by hand with
  bare nats-py (``_floor.py``): an acked JetStream publish of the start with its
  reply subject, the orchestrator's and the leaf's steps journaled with one KV put
  each, the call, the reply and the result as acked publishes, durable pull
  consumers, then the result read from the endpoint's inbox consumer;
* **gateway** — ``dasync.gateway_app`` on the client of a ``dasync.Runtime``
  hosting both services, as ``dasync run FILE --http`` serves it;
* **client** — for reference, no HTTP: the same runtime and 64 concurrent
  ``client.proxy(Edge).one(x)`` calls made in the services' own process (so its
  CPU figure includes the load).

Load: ``--clients`` (64) keep-alive HTTP/1.1 connections, each sending ``POST
/Edge/one`` with ``Prefer: wait=30`` back to back and checking every answer
(``200``, the right result), a warm-up, then ``--duration`` seconds measured:
requests/s, p50/p99 latency, CPU seconds per 1,000 requests of the serving
process and of nats-server (``/proc/<pid>/stat``). The HTTP client is a few lines
of asyncio (a full client library would cost more CPU than the servers measured).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _floor
import _workloads
import orjson
from nats.aio.msg import Msg

import dasync
from dasync.transports.nats import NatsServer, connect_nats

SYSTEMS = ("floor", "gateway", "client")
DEFAULT_SYSTEMS = ("floor", "gateway")
SERVER_SYNC = {"always": "always", "default": None}
"""``--sync`` -> ``NatsServer(sync=...)``: fsync before every ack (what ``dasync run``'s
embedded server does), or nats-server's default (a sync every 2 minutes)."""
CLK_TCK = os.sysconf("SC_CLK_TCK")
PATH = "/Edge/one"


# --- the routine ---------------------------------------------------------------------------


class Edge(Protocol):
    async def one(self, x: int) -> int: ...


class EdgeService(Edge):
    def __init__(self, leaf: _workloads.Leaf) -> None:
        self._leaf = leaf

    async def one(self, x: int) -> int:
        return await self._leaf.work(x)


class OneCallWorker(_floor.FloorWorker):
    """The floor's orchestrator for a one-call routine (``_floor`` has W1's three)."""

    async def _orch(self, msg: Msg) -> None:
        m = orjson.loads(msg.data)
        rid = m["rid"]
        if m["kind"] == "start":
            self._state[rid] = m
            await self.kv.put(f"{rid}.0", msg.data)  # step 0: the start
            await self._call(rid, 1, m["x"])
            await msg.ack()
            return
        start = self._state.pop(rid)
        await self.kv.put(f"{rid}.1", msg.data)  # step 1: the reply
        await self.js.publish(
            start["reply"],
            orjson.dumps({"rid": rid, "result": m["x"]}),
            headers={"Nats-Msg-Id": f"reply:{rid}"},
        )
        await msg.ack()


# --- serving processes ---------------------------------------------------------------------


async def serve(system: str, url: str, http: str = "auto") -> None:
    """A serving process: prints ``ready <port>``, serves until stdin closes."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from dasync._gateway import gateway_app, serving

    if system != "client":  # the client system reads a command line first
        stdin_closed = asyncio.ensure_future(asyncio.to_thread(sys.stdin.read))
    if system == "floor":
        nc = await _floor.connect(url)
        await _floor.provision(nc)
        worker = OneCallWorker(nc)
        await worker.start(64)
        client = _floor.FloorClient(nc)
        await client.open()

        async def one(request: Request) -> Response:
            x = orjson.loads(await request.body())["x"]
            if type(x) is not int:
                return Response(b'{"detail":"x must be an integer"}', 400)
            return Response(orjson.dumps(await client.run("W1", x)), 200, media_type=JSON)

        app = Starlette(routes=[Route(PATH, one, methods=["POST"])])
        async with serving(app, "127.0.0.1", 0, http=http) as where:
            print(f"ready {where.port}", flush=True)
            await stdin_closed
        await client.close()
        await worker.stop()
        await nc.close()
        return
    transport, store = await connect_nats(url)
    services = [EdgeService, _workloads.LeafService]
    async with dasync.Runtime(services, transport=transport, store=store) as rt:
        if system == "gateway":
            app = gateway_app([Edge], client=rt.client)
            async with serving(app, "127.0.0.1", 0, http=http) as where:
                print(f"ready {where.port}", flush=True)
                await stdin_closed
            return
        edge = rt.client.proxy(Edge)
        for i in range(20):
            assert await edge.one(i) == i + 1
        print("ready 0", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        clients, warmup, duration = (float(v) for v in line.split())
        await _load(lambda x: edge.one(x), int(clients), warmup, [])
        latencies: list[float] = []
        count, seconds = await _load(lambda x: edge.one(x), int(clients), duration, latencies)
        print(json.dumps({"count": count, "seconds": seconds, "latencies": latencies}), flush=True)
        await asyncio.to_thread(sys.stdin.read)


JSON = "application/json"


async def _load(
    call: Any, clients: int, seconds: float, latencies: list[float]
) -> tuple[int, float]:
    """``clients`` tasks calling back to back for ``seconds``: (calls done, seconds)."""
    stop = time.perf_counter() + seconds
    done = 0

    async def driver(k: int) -> None:
        nonlocal done
        x = k * 1_000_000
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            assert await call(x) == x + 1
            latencies.append(time.perf_counter() - t0)
            done += 1
            x += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(driver(k) for k in range(clients)))
    return done, time.perf_counter() - t0


# --- the HTTP load --------------------------------------------------------------------------


class _Connection:
    """One keep-alive HTTP/1.1 connection posting ``{"x": n}`` and reading the answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, x: int) -> int:
        body = b'{"x":%d}' % x
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Prefer: wait=30\r\nContent-Length: %d\r\n\r\n%s" % (PATH.encode(), len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        if head[9:12] != b"200":
            raise RuntimeError(f"{head[:12]!r}: {payload[:200]!r}")
        result: int = orjson.loads(payload)
        return result


async def http_load(
    port: int, clients: int, seconds: float, latencies: list[float]
) -> tuple[int, float]:
    connections = [
        _Connection(*await asyncio.open_connection("127.0.0.1", port)) for _ in range(clients)
    ]
    pool = list(connections)

    async def call(x: int) -> int:
        connection = pool.pop()
        try:
            return await connection.post(x)
        finally:
            pool.append(connection)

    try:
        return await _load(call, clients, seconds, latencies)
    finally:
        for connection in connections:
            connection.writer.close()


# --- measuring ------------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (seconds), from /proc/<pid>/stat (0 if unreadable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass
class Cell:
    system: str
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    cpu_process: float = 0.0
    cpu_server: float = 0.0
    rates: list[float] = field(default_factory=list)

    def merge(self, other: Cell) -> None:
        self.requests += other.requests
        self.seconds += other.seconds
        self.latencies += other.latencies
        self.cpu_process += other.cpu_process
        self.cpu_server += other.cpu_server
        self.rates += other.rates

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def per_k(self, cpu: float) -> float:
        return cpu / self.requests * 1000 if self.requests else float("nan")


@contextlib.asynccontextmanager
async def serving_process(
    system: str, url: str, http: str
) -> AsyncIterator[tuple[subprocess.Popen[str], int]]:
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, __file__, "--serve", system, "--url", url, "--http", http],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = await asyncio.to_thread(proc.stdout.readline)
        if not line.startswith("ready "):
            raise RuntimeError(f"the {system} process did not start: {line!r}")
        yield proc, int(line.split()[1])
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            await asyncio.to_thread(proc.wait, 20)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


async def measure(system: str, sync: str, cfg: argparse.Namespace) -> Cell:
    cell = Cell(system)
    async with NatsServer(sync=SERVER_SYNC[sync]) as nats:
        assert nats.pid is not None
        async with serving_process(system, nats.url, cfg.http) as (proc, port):
            pids = (proc.pid, nats.pid)
            if system == "client":
                assert proc.stdin is not None and proc.stdout is not None
                before = [proc_cpu(p) for p in pids]
                proc.stdin.write(f"{cfg.clients} {cfg.warmup} {cfg.duration}\n")
                proc.stdin.flush()
                result = json.loads(await asyncio.to_thread(proc.stdout.readline))
                after = [proc_cpu(p) for p in pids]  # includes the warm-up: scaled below
                share = result["seconds"] / (result["seconds"] + cfg.warmup)
                cell.requests, cell.seconds = result["count"], result["seconds"]
                cell.latencies = result["latencies"]
                cell.cpu_process = (after[0] - before[0]) * share
                cell.cpu_server = (after[1] - before[1]) * share
            else:
                await http_load(port, cfg.clients, cfg.warmup, [])
                before = [proc_cpu(p) for p in pids]
                cell.requests, cell.seconds = await http_load(
                    port, cfg.clients, cfg.duration, cell.latencies
                )
                after = [proc_cpu(p) for p in pids]
                cell.cpu_process = after[0] - before[0]
                cell.cpu_server = after[1] - before[1]
            cell.rates = [cell.rate]
    return cell


def machine() -> str:
    from importlib.metadata import version

    from dasync.transports.nats._server import find_binary

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    server = subprocess.run([find_binary(), "--version"], capture_output=True, text=True)
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"starlette {version('starlette')}, uvicorn {version('uvicorn')} "
        f"(HTTP parser: {parser} when auto), "
        f"nats-py {version('nats-py')}, {server.stdout.strip()}"
    )


def report(sync: str, cells: dict[str, Cell]) -> None:
    print()
    print(f"sync {sync}:")
    print()
    print(
        "| system | requests/s | rounds | p50 ms | p99 ms | CPU s / 1k (serving process) "
        "| CPU s / 1k (nats-server) |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for name, cell in cells.items():
        rounds = ", ".join(f"{r:.0f}" for r in cell.rates)
        print(
            f"| {name} | {cell.rate:.0f} | {rounds} | {percentile(cell.latencies, 0.5) * 1e3:.1f} "
            f"| {percentile(cell.latencies, 0.99) * 1e3:.1f} | {cell.per_k(cell.cpu_process):.2f} "
            f"| {cell.per_k(cell.cpu_server):.2f} |"
        )
    if "floor" in cells and "gateway" in cells:
        floor, gateway = cells["floor"], cells["gateway"]
        print()
        cpu = gateway.per_k(gateway.cpu_process) / floor.per_k(floor.cpu_process)
        print(
            f"gateway / floor: throughput {gateway.rate / floor.rate:.1%}, p50 "
            f"{percentile(gateway.latencies, 0.5) / percentile(floor.latencies, 0.5):.2f}x, "
            f"CPU per request {cpu:.2f}x"
        )
    if "client" in cells and "gateway" in cells:
        print(
            f"gateway / client (the HTTP layer): throughput "
            f"{cells['gateway'].rate / cells['client'].rate:.1%}"
        )


async def main(cfg: argparse.Namespace) -> None:
    systems = [s for s in cfg.systems.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"unknown systems {sorted(unknown)}: use {', '.join(SYSTEMS)}")
    syncs = list(SERVER_SYNC) if cfg.sync == "both" else [cfg.sync]
    cells: dict[tuple[str, str], Cell] = {}
    for round_ in range(cfg.rounds):
        for sync in syncs:
            order = systems if round_ % 2 == 0 else systems[::-1]
            for system in order:
                cell = await measure(system, sync, cfg)
                print(
                    f"round {round_ + 1}, sync {sync:<7}: {system:<8} {cell.rate:7.0f} req/s  "
                    f"p50 {percentile(cell.latencies, 0.5) * 1e3:6.1f} ms",
                    flush=True,
                )
                if (sync, system) in cells:
                    cells[(sync, system)].merge(cell)
                else:
                    cells[(sync, system)] = cell
    print()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print(f"{cfg.clients} concurrent clients, {cfg.rounds} round(s) of {cfg.duration:g} s")
    for sync in syncs:
        report(sync, {s: cells[(sync, s)] for s in systems})


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, shorter phases")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument(
        "--systems",
        default=",".join(DEFAULT_SYSTEMS),
        help=f"comma-separated, of {', '.join(SYSTEMS)} (default: {','.join(DEFAULT_SYSTEMS)})",
    )
    parser.add_argument("--sync", choices=[*SERVER_SYNC, "both"], default="both")
    parser.add_argument(
        "--http",
        choices=["auto", "h11", "httptools"],
        default="auto",
        help="uvicorn's HTTP parser (auto: httptools if installed, else h11)",
    )
    parser.add_argument("--serve", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 5.0, 2.0
    return args


if __name__ == "__main__":
    arguments = parse()
    if arguments.serve:
        asyncio.run(serve(arguments.serve, arguments.url, arguments.http))
    else:
        asyncio.run(main(arguments))
