"""Worker memory over many calls: RSS of one process hosting two services on NATS.

Run: ``python benchmarks/memory.py [CALLS]`` (default 50,000; about 4 minutes on 2
cores). Prints the calls done and the process's RSS every 5,000 calls; a fresh
``nats-server`` in a temporary directory, 64 calls in flight. ``docs/reliability.md``
("Worker memory over 50,000 calls") has the figures.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from typing import Protocol

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


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


async def main(total: int) -> None:
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


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000))
