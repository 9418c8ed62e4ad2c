"""Engine benchmark: per-step overhead, and routines of 10, 100 and 1,000 sequential steps.

Run: ``python benchmarks/engine.py`` (add ``--quick`` for a short run).

Two measurements:

* **engine only** — a ``RoutineInstance`` driven directly with replies, no
  transport: what the deterministic loop, journal bookkeeping and step
  encoding cost per step.
* **runtime on the memory transport** — a routine making N sequential durable
  calls to a leaf service: everything but the network (codec, worker, journal
  commit, outbox). Growth from 10 to 1,000 steps must be linear, so the time
  per step should stay flat.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Protocol

import dasync
from dasync._codec import encode_failure
from dasync._engine import Resolve, RoutineInstance, Start, encode_step
from dasync.testing import runtime


class Leaf(Protocol):
    async def step(self, i: int) -> int: ...


class LeafService(Leaf):
    async def step(self, i: int) -> int:
        return i + 1


@dasync.service
class Chain:
    def __init__(self, leaf: Leaf) -> None:
        self._leaf = leaf

    async def run(self, steps: int) -> int:
        total = 0
        for i in range(steps):
            total += await self._leaf.step(i)
        return total


async def engine_only(steps: int) -> tuple[float, int]:
    """Seconds per step and journal bytes for a routine driven without a transport."""

    async def body(args: bytes) -> bytes:
        from dasync._engine import current_instance

        inst = current_instance()
        assert inst is not None
        for i in range(steps):
            await inst.call("Leaf", "step", b'{"i":%d}' % i)
        return b"0"

    inst = RoutineInstance("bench", "Chain", "run", body, encode_failure)
    journal_bytes = 0
    t0 = time.perf_counter()
    step = await inst.activate(Start(b"{}", 0.0, {"method": "run"}, seed=1))
    journal_bytes += len(encode_step(step))
    for seq in range(1, steps + 1):
        step = await inst.activate(Resolve(seq, True, b"1", 0.0))
        journal_bytes += len(encode_step(step))
    elapsed = time.perf_counter() - t0
    assert inst.done
    return elapsed / (steps + 1), journal_bytes


async def runtime_chain(steps: int, repeat: int) -> list[float]:
    times = []
    async with runtime([LeafService, Chain], virtual_time=False) as rt:
        chain = rt.client.proxy(Chain)
        await chain.run(2)  # warm up codecs and caches
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = await chain.run(steps)
            times.append(time.perf_counter() - t0)
            assert result == steps * (steps + 1) // 2
    return times


async def main(quick: bool) -> None:
    print(f"dasync engine benchmark (Python {sys.version.split()[0]})")
    print()
    print("engine only (RoutineInstance.activate + step encoding, no transport)")
    for steps in (10, 100, 1000):
        per_step, journal = await engine_only(steps)
        print(
            f"  {steps:>5} steps: {per_step * 1e6:8.1f} us/step, journal {journal:>8} bytes "
            f"({journal / (steps + 1):.0f} B/step)"
        )
    print()
    print("runtime on the memory transport (N sequential durable calls to a leaf service)")
    repeat = 2 if quick else 5
    rows = []
    for steps in (10, 100, 1000):
        times = await runtime_chain(steps, repeat if steps < 1000 else max(1, repeat // 2))
        best, med = min(times), statistics.median(times)
        rows.append((steps, best))
        # each call is two activations (the caller's call + reply) plus the callee's routine
        print(
            f"  {steps:>5} steps: median {med * 1e3:9.2f} ms, best {best * 1e3:9.2f} ms, "
            f"{best / steps * 1e6:8.1f} us per call"
        )
    (s10, t10), (s100, t100), (s1000, t1000) = rows
    print()
    print(
        f"growth: 100/10 steps = {t100 / t10:.1f}x time, 1000/100 steps = {t1000 / t100:.1f}x "
        f"time (linear = 10x)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    asyncio.run(main(parser.parse_args().quick))
