"""The client's CPU per JetStream publish: nats-py's ``request`` against dasync's lean path.

Run::

    python benchmarks/requests.py            # 20,000 acked publishes per cell, about 30 s
    python benchmarks/requests.py --n 50000

Each cell publishes ``--n`` messages (100 bytes, 3 headers with a fresh ``Nats-Msg-Id``)
to one JetStream stream and waits for every ack, one at a time and with 64 in flight,
through: ``nats-py`` (``nc.request``, what ``js.publish`` does), ``Connection`` with the
lean path off (``conn.lean = False``: nats-py's public API under dasync's mapping) and
on (``transports/nats/_requests.py``). Reported: publishes per second and this
process's CPU (user + system) per publish; the server is a separate process. Cells run
twice, alternating, on a fresh ``nats-server`` (``sync_interval`` default).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

from dasync.transports.nats import NatsOptions, NatsServer
from dasync.transports.nats._connection import Connection

Publish = Callable[[int], Awaitable[object]]


async def _cell(publish: Publish, n: int, inflight: int) -> tuple[float, float]:
    numbers = iter(range(n))

    async def worker() -> None:
        for i in numbers:
            await publish(i)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return n / (time.perf_counter() - wall), (time.process_time() - cpu) / n * 1e6


async def main(n: int) -> None:
    body = b"x" * 100
    with NatsServer(sync=None) as server:
        conn = await Connection.open(NatsOptions(servers=(server.url,)))
        await conn.api("STREAM.CREATE.BENCH", {"name": "BENCH", "subjects": ["bench.>"]})
        nc = conn.nc

        ids = itertools.count()

        def headers(i: int, tag: str) -> dict[str, str]:  # a fresh id each: no duplicates
            fresh = f"{tag}{next(ids)}"
            return {"Nats-Msg-Id": fresh, "dasync-kind": "reply", "dasync-routine": "r"}

        async def via_nats_py(i: int) -> object:
            return await nc.request(f"bench.{i % 64}", body, timeout=5, headers=headers(i, "a"))

        async def via_public(i: int) -> object:
            conn.lean = False
            return await conn.publish(f"bench.{i % 64}", body, headers(i, "b"))

        async def via_lean(i: int) -> object:
            conn.lean = True
            return await conn.publish(f"bench.{i % 64}", body, headers(i, "c"))

        systems = {"nats-py request": via_nats_py, "Connection, public API": via_public,
                   "Connection, lean path": via_lean}  # fmt: skip
        print(f"{n} acked publishes per cell; client CPU per publish (the server apart)")
        for round_ in (1, 2):
            for label, publish in systems.items():
                for inflight in (1, 64):
                    rate, cpu = await _cell(publish, n, inflight)
                    print(f"  round {round_}  {label:24} {inflight:2} in flight "
                          f"{rate:8.0f}/s  {cpu:6.1f} us CPU")  # fmt: skip
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().n))
