"""What a retention pass costs on NATS: remove finished journals, keep running ones.

Run: ``python benchmarks/retention.py [FINISHED] [RUNNING]`` (default 10,000 and 1,000).
A fresh ``nats-server`` (fsync before ack) in a temporary directory; the journals are
written straight through the store (3 entries per finished routine, 2 per running one,
as a routine with two calls has), then one pass removes the finished ones and a second
pass finds nothing left to remove but still reads the running routines' old entries.
``docs/reliability.md`` ("Journal retention") has the figures.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time

from dasync._engine import Call, Complete, Resolve, Start, StepRecord, encode_step
from dasync._runtime._retention import purge
from dasync.testing._nats_server import NatsServer
from dasync.transports.nats import NatsOptions, connect_nats

SERVICE = "Orders"


def entries(finished: bool) -> list[bytes]:
    start = Start(b'{"n":1}', 1.0, {"method": "run"}, seed=1)
    steps = [
        StepRecord(start, (Call(1, "Billing", "charge", b"{}"),)),
        StepRecord(Resolve(1, True, b"1", 2.0), (Call(2, "Stock", "reserve", b"{}"),)),
    ]
    if finished:
        steps.append(StepRecord(Resolve(2, True, b"2", 3.0), (Complete(3, True, b"3"),)))
    return [encode_step(s) for s in steps]


async def main(finished: int, running: int) -> None:
    with NatsServer(store_dir=tempfile.mkdtemp(), sync="always") as server:
        _, store = await connect_nats(NatsOptions(servers=(server.url,)))
        try:
            began = time.perf_counter()
            sem = asyncio.Semaphore(256)

            async def write(routine: str, done: bool) -> None:
                async with sem:
                    for i, entry in enumerate(entries(done)):
                        await store.append(SERVICE, routine, entry, i)

            await asyncio.gather(
                *(write(f"done-{i}", True) for i in range(finished)),
                *(write(f"run-{i}", False) for i in range(running)),
            )
            print(f"wrote {finished} finished and {running} running journals in "
                  f"{time.perf_counter() - began:.1f} s")  # fmt: skip
            await asyncio.sleep(1.0)
            for label in ("first pass", "second pass"):
                began = time.perf_counter()
                report = await purge(store, SERVICE, 0.5)
                took = time.perf_counter() - began
                print(f"{label}: {report} in {took:.2f} s "
                      f"({took / max(1, report.purged + report.running) * 1e6:.0f} us "
                      "per routine met)")  # fmt: skip
            left = [await store.load(SERVICE, f"done-{i}") for i in range(0, finished, 997)]
            kept = [await store.load(SERVICE, f"run-{i}") for i in range(0, running, 97)]
            assert all(not e for e in left) and all(len(e) == 2 for e in kept)
        finally:
            await store.close()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(args + [10_000, 1_000][len(args) :])))
