"""What listing routines costs on NATS: ``dasync ls`` over 100,000 routines.

Run: ``python benchmarks/index.py [ROUTINES]`` (default 100,000). A fresh ``nats-server``
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
from typing import Any

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


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
