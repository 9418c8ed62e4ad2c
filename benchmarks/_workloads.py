"""The two benchmark workloads written as dasync services.

* **W1** — ``Flow.chain``: three sequential calls to three services,
  ``Leaf.work``, ``Leaf2.work`` and ``Leaf3.work`` (``workflows.py``'s ``W1``);
* **W1-1leaf** — ``Flow.w1``: three sequential calls to ``Leaf.work`` (the W1 of
  the benchmarks before issue 14; ``tracing.py`` uses it);
* **W2** — ``Flow.w2``: ``asyncio.gather`` of ten calls to ``Leaf.work``.

``Leaf.work`` is itself a routine (every public method of a service is), so
each call is a journaled routine on the leaf side too. The floor
(``_floor.py``) does the same work by hand with nats-py.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = [
    "Flow",
    "FlowService",
    "Leaf",
    "Leaf2",
    "Leaf2Service",
    "Leaf3",
    "Leaf3Service",
    "LeafService",
    "expected",
]


class Leaf(Protocol):
    async def work(self, x: int) -> int: ...


class Leaf2(Protocol):
    async def work(self, x: int) -> int: ...


class Leaf3(Protocol):
    async def work(self, x: int) -> int: ...


class Flow(Protocol):
    async def chain(self, x: int) -> int: ...

    async def w1(self, x: int) -> int: ...

    async def w2(self, x: int) -> int: ...


class LeafService(Leaf):
    async def work(self, x: int) -> int:
        return x + 1


class Leaf2Service(Leaf2):
    async def work(self, x: int) -> int:
        return x + 1


class Leaf3Service(Leaf3):
    async def work(self, x: int) -> int:
        return x + 1


class FlowService(Flow):
    def __init__(self, leaf: Leaf, leaf2: Leaf2, leaf3: Leaf3) -> None:
        self._leaf = leaf
        self._leaf2 = leaf2
        self._leaf3 = leaf3

    async def chain(self, x: int) -> int:
        x = await self._leaf.work(x)
        x = await self._leaf2.work(x)
        return await self._leaf3.work(x)

    async def w1(self, x: int) -> int:
        for _ in range(3):
            x = await self._leaf.work(x)
        return x

    async def w2(self, x: int) -> int:
        results = await asyncio.gather(*(self._leaf.work(x + i) for i in range(10)))
        return sum(results)


def expected(workload: str, x: int) -> int:
    """The result both systems must return for ``workload`` started with ``x``."""
    if workload.startswith("W1"):
        return x + 3
    return sum(x + i + 1 for i in range(10))
