"""What listing routines costs on NATS: ``dasync ls`` over 100,000 routines; and what
keeping the index costs the workers.

Run: ``python benchmarks/index.py [ROUTINES]`` (default 100,000), or ``python
benchmarks/index.py --cost``: a routine making 3 sequential calls, 640 of them with
64 in flight, on a fresh server per run, with the index and without
(``Runtime(index=False)``), twice each, under both server sync settings. A fresh ``nats-server``
in a temporary directory (fsync every 2 minutes, the server's default: the writes are
the set-up, not what is measured); the index entries are written straight through the
store (as a worker's observer writes them: a routine's final entry, 32 writes in flight),
then ``Client.list_routines`` (what ``dasync ls`` calls) runs three times for each
query: everything, every routine of a status that 1% have, the latest 50 of it, the
latest 50 of a method, and the whole ``dasync ls --json`` command in-process. ``docs/benchmarks.md``
("Listing routines") has the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
import tempfile
import time
from typing import Any, Protocol

import dasync
from dasync._clock import SystemClock
from dasync._runtime import Client
from dasync.cli import main as cli_main
from dasync.testing._nats_server import NatsServer
from dasync.transports import RoutineEntry
from dasync.transports.nats import NatsOptions, connect_nats

SERVICE = "Orders"


def entry(i: int, now: float) -> RoutineEntry:
    failed = i % 100 == 0
    return RoutineEntry(
        SERVICE,
        f"order-{i:06d}",
        "failed" if failed else "completed",
        method="place" if i % 2 else "cancel_order",
        started=now - 60 + i / 1e5,
        ended=now - 30 + i / 1e5,
        parent="",
        caller="client:bench",
        error="OutOfStock: unicorn" if failed else "",
        rank=6,
        updated=now,
        finished=True,
    )


async def timed(what: str, run: Any, rounds: int = 3) -> None:
    times = []
    count = 0
    for _ in range(rounds):
        began = time.perf_counter()
        count = await run()
        times.append(time.perf_counter() - began)
    print(f"{what:<48} {count:>7} rows  best {min(times):.3f} s  worst {max(times):.3f} s")


async def main(routines: int) -> None:
    with NatsServer(store_dir=tempfile.mkdtemp(), sync=None) as server:
        transport, store = await connect_nats(NatsOptions(servers=(server.url,)))
        try:
            now = time.time()
            began = time.perf_counter()
            for i in range(0, routines, 256):
                batch = [entry(n, now) for n in range(i, min(i + 256, routines))]
                await asyncio.gather(*(store.index_put(e) for e in batch))
            print(f"wrote {routines} index entries in {time.perf_counter() - began:.1f} s")
            client = Client(transport, store, SystemClock())

            async def everything() -> int:
                return len(await client.list_routines(SERVICE, limit=None))

            async def failed() -> int:
                return len(await client.list_routines(SERVICE, status="failed", limit=None))

            async def failed_latest() -> int:
                return len(await client.list_routines(SERVICE, status="failed"))

            async def newest() -> int:
                return len(await client.list_routines(SERVICE, method="place"))

            def command() -> int:
                text = io.StringIO()
                with contextlib.redirect_stdout(text):
                    code = cli_main(["ls", SERVICE, "--nats", server.url, "--json"])
                assert code == 0, text.getvalue()
                return text.getvalue().count('"routine_id"')

            async def cli() -> int:
                return await asyncio.to_thread(command)

            await timed("list_routines(all)", everything)
            await timed("list_routines(status='failed', limit=None)", failed)
            await timed("list_routines(status='failed'), newest 50", failed_latest)
            await timed("list_routines(method='place'), newest 50", newest)
            await timed("dasync ls Orders --json (whole command)", cli)
        finally:
            await transport.close()
            await store.close()


class Leaf(Protocol):
    async def add(self, n: int) -> int: ...


class Flow(Protocol):
    async def run(self, n: int) -> int: ...


class LeafImpl(Leaf):
    async def add(self, n: int) -> int:
        return n + 1


class FlowImpl(Flow):
    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def run(self, n: int) -> int:
        for _ in range(3):
            n = await self.leaf.add(n)
        return n


async def throughput(index: bool, sync: str | None, total: int = 640) -> float:
    """Routines (of Flow) per second, 64 in flight, after a warm-up."""
    with NatsServer(store_dir=tempfile.mkdtemp(), sync=sync) as server:
        transport, store = await connect_nats(NatsOptions(servers=(server.url,)))
        async with dasync.Runtime(
            [LeafImpl, FlowImpl], transport=transport, store=store, retention=None, index=index
        ) as rt:
            flow = rt.client.proxy(Flow)
            await asyncio.gather(*(flow.run(i) for i in range(32)))
            gate = asyncio.Semaphore(64)

            async def one(i: int) -> None:
                async with gate:
                    await flow.run(i)

            began = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(total)))
            return total / (time.perf_counter() - began)


async def cost() -> None:
    for sync in (None, "always"):
        for index in (False, True, False, True):
            rate = await throughput(index, sync)
            kept = "with the index" if index else "without"
            print(f"sync {sync or 'default':<7} {kept:<15} {rate:6.0f} routines/s", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--cost"]:
        asyncio.run(cost())
    else:
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
