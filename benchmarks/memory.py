"""Worker memory: over many calls, and with many routines suspended in its cache.

``python benchmarks/memory.py [CALLS]`` (default 50,000; about 4 minutes on 2 cores):
RSS of one process hosting two services on NATS, printed every 5,000 calls; 64
calls in flight. ``docs/reliability.md`` ("Worker memory over 50,000 calls") has
the figures.

``python benchmarks/memory.py --suspended 10000`` (about 2-3 minutes): RSS of a
worker holding N routines suspended in its cache (issue 14: at most 100 MiB for
10,000). Three processes besides this one (the client): the **holder** worker
hosting ``Holder`` (its ``run(i)`` awaits one call, ``Callee.hold(i)``), the
**callee** worker hosting ``Callee`` and a fresh ``nats-server``. After a warm-up
of 200 routines run to completion, the callee process stops; the client starts N
routines (``client.start``, 64 starts in flight), each of which the holder runs to
its call and then keeps in its cache waiting for the answer; once the holder
holds them all (its cache, read through a command on its stdin) and its RSS is
stable, the RSS is read again; then the callee starts again and every routine
finishes (results checked), and the RSS is read a last time. Prints RSS before,
with the N suspended (total and per routine) and after they finished.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Protocol

import dasync
from dasync.testing._nats_server import NatsServer
from dasync.transports.nats import NatsOptions, connect_nats


class Leaf(Protocol):
    async def add(self, a: int) -> int: ...


class Root(Protocol):
    async def run(self, n: int) -> int: ...


class LeafService(Leaf):
    async def add(self, a: int) -> int:
        return a + 1


class RootService(Root):
    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def run(self, n: int) -> int:
        return await self.leaf.add(n)


def rss_kb(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


async def main(total: int) -> None:
    dasync.tune_collector()  # as `dasync run` sets it for its workers
    with NatsServer(store_dir=tempfile.mkdtemp()) as server:
        transport, store = await connect_nats(NatsOptions(servers=(server.url,)))
        async with dasync.Runtime(
            [LeafService, RootService], transport=transport, store=store
        ) as rt:
            proxy = rt.client.proxy(Root)
            done = 0
            sem = asyncio.Semaphore(64)

            async def one(i):
                nonlocal done
                async with sem:
                    assert await proxy.run(i) == i + 1
                    done += 1

            start = time.time()
            step = 5000
            for base in range(0, total, step):
                await asyncio.gather(*(one(i) for i in range(base, base + step)))
                print(
                    f"{done} calls  rss {rss_kb() / 1024:.1f} MB  {time.time() - start:.0f}s",
                    flush=True,
                )


# --- suspended routines ---------------------------------------------------------------------


class Callee(Protocol):
    async def hold(self, i: int) -> int: ...


class Holder(Protocol):
    async def run(self, i: int) -> int: ...


class CalleeService(Callee):
    async def hold(self, i: int) -> int:
        return i + 1


class HolderService(Holder):
    def __init__(self, callee: Callee) -> None:
        self.callee = callee

    async def run(self, i: int) -> int:
        return await self.callee.hold(i)


SERVICES: dict[str, type] = {"holder": HolderService, "callee": CalleeService}


async def serve(role: str, url: str, cache_size: int) -> None:
    """A worker process: ``stats`` on stdin answers its cache and RSS; EOF stops it."""
    dasync.tune_collector()  # as `dasync run` sets it for its workers
    transport, store = await connect_nats(NatsOptions(servers=(url,)))
    async with dasync.Runtime(
        [SERVICES[role]], transport=transport, store=store, cache_size=cache_size
    ) as rt:
        print("ready", flush=True)
        while line := await asyncio.to_thread(sys.stdin.readline):
            if line.strip() == "stats":
                cache: Any = getattr(rt.worker, "_cache", None)  # dasync's own, read only
                stats = {
                    "cached": len(cache) if cache is not None else -1,
                    "rss_kib": rss_kb(),
                    "blocks": sys.getallocatedblocks(),
                }
                print(json.dumps(stats), flush=True)


class Worker:
    def __init__(self, role: str, url: str, cache_size: int) -> None:
        self.role = role
        self.popen = subprocess.Popen(
            [sys.executable, __file__, "--serve", role, "--url", url]
            + ["--cache-size", str(cache_size)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.popen.stdout is not None
        if (line := self.popen.stdout.readline()).strip() != "ready":
            self.popen.kill()
            raise RuntimeError(f"{role} worker did not start: {line!r}")

    def stats(self) -> dict[str, int]:
        assert self.popen.stdin is not None and self.popen.stdout is not None
        self.popen.stdin.write("stats\n")
        self.popen.stdin.flush()
        return json.loads(self.popen.stdout.readline())  # type: ignore[no-any-return]

    def stop(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.close()
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


async def suspended(n: int, cache_size: int, sync: str | None) -> None:
    print(f"{n} routines suspended in one worker's cache (cache_size {cache_size})")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with NatsServer(store_dir=tempfile.mkdtemp(), sync=sync) as server:
        holder = await asyncio.to_thread(Worker, "holder", server.url, cache_size)
        callee = await asyncio.to_thread(Worker, "callee", server.url, cache_size)
        try:
            async with dasync.connect(server.url) as client:
                proxy = client.proxy(Holder)
                sem = asyncio.Semaphore(64)

                async def one(i: int) -> None:
                    async with sem:
                        assert await proxy.run(i) == i + 1

                await asyncio.gather(*(one(i) for i in range(200)))  # warm-up, to completion
                await asyncio.to_thread(callee.stop)
                before = await asyncio.to_thread(holder.stats)
                print(
                    f"holder after 200 warm-up routines: RSS {_mib(before['rss_kib'])}, "
                    f"{before['cached']} cached"
                )
                t0 = time.perf_counter()
                handles: list[Any] = []

                async def start(i: int) -> None:
                    async with sem:
                        handles.append((i, await client.start(Holder.run, i)))

                await asyncio.gather(*(start(i) for i in range(1000, 1000 + n)))
                print(f"started {n} routines in {time.perf_counter() - t0:.1f} s")
                last = -1
                while True:  # until the holder has them all and its RSS stays put
                    await asyncio.sleep(1.0)
                    now = await asyncio.to_thread(holder.stats)
                    if now["cached"] >= n and now["rss_kib"] == last:
                        break
                    last = now["rss_kib"]
                    if time.perf_counter() - t0 > 600:
                        raise TimeoutError(f"the holder caches {now['cached']} of {n}")
                held = now
                grown = held["rss_kib"] - before["rss_kib"]
                print(
                    f"holder with {held['cached']} routines suspended "
                    f"({time.perf_counter() - t0:.1f} s after the first start): "
                    f"RSS {_mib(held['rss_kib'])}, {_mib(grown)} more than before: "
                    f"{grown / n:.1f} KiB per routine "
                    f"({(held['blocks'] - before['blocks']) / n:.0f} Python allocated blocks "
                    f"per routine); issue 14's target: at most 100 MiB for 10,000 "
                    f"({'met' if grown * 10_000 / n <= 100 * 1024 else 'MISSED'})"
                )
                t1 = time.perf_counter()
                callee = await asyncio.to_thread(Worker, "callee", server.url, cache_size)
                waiters = getattr(client, "_waiters", {})
                for i, handle in handles:  # dasync's own futures first: no journal polling
                    fut = waiters.get(f"{handle.service}/{handle.routine_id}")
                    if fut is not None:
                        await fut
                    assert await handle.result() == i + 1
                print(
                    f"all {n} finished {time.perf_counter() - t1:.1f} s after the callee came back"
                )
                await asyncio.sleep(2.0)
                after = await asyncio.to_thread(holder.stats)
                print(
                    f"holder after they finished: RSS {_mib(after['rss_kib'])}, "
                    f"{after['cached']} cached"
                )
        finally:
            await asyncio.to_thread(holder.stop)
            await asyncio.to_thread(callee.stop)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calls", nargs="?", type=int, default=50_000)
    parser.add_argument("--suspended", type=int, metavar="N", help="N routines suspended")
    parser.add_argument("--cache-size", type=int, default=10_000, help="the workers' cache_size")
    parser.add_argument("--fsync", action="store_true", help="server with sync_interval: always")
    parser.add_argument("--serve", choices=sorted(SERVICES), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.url, args.cache_size))
    elif args.suspended:
        asyncio.run(suspended(args.suspended, args.cache_size, "always" if args.fsync else None))
    else:
        asyncio.run(main(args.calls))
