"""The effect log services write to, the same object in plain asyncio and in dasync.

Inside a routine an effect is keyed by ``dasync.call_id()`` as the guide says
side effects must be: code a killed worker was running runs again, and the
second recording of the same (call id, label) is the same effect, not a new
one. Outside a routine (the plain-asyncio oracle) there is no call id and
every recording counts. ``labels`` is in first-recording order, which in one
process is the real order in which effects happened.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import dasync
from dasync._engine import evicting_instance

__all__ = ["Effects"]


class Effects:
    """Records labelled effects; ``await when(label)`` waits for one (drivers use it)."""

    def __init__(self, durable: bool = False) -> None:
        self.durable = durable
        """True for dasync runs: an effect recorded outside any routine is a stray."""
        self.labels: list[str] = []
        self.strays: list[str] = []
        """(dasync runs) effects recorded with no routine running: code that ran inline
        where it should have been a durable call (a ``finally`` run at eviction...)."""
        self.evictions: list[str] = []
        """(dasync runs) recordings from finally blocks run by an eviction: not counted."""
        self.dying = False
        """True while a killed runtime unwinds: what it records then happened after death."""
        self.after_death: list[str] = []
        self.executions: Counter[str] = Counter()
        """Every recording, re-runs included (diagnostics)."""
        self._seen: set[tuple[str, str]] = set()
        self._waiters: list[tuple[str, asyncio.Future[None]]] = []

    def record(self, label: str) -> None:
        self.executions[label] += 1
        if self.dying:
            self.after_death.append(label)
            return
        if evicting_instance() is not None:
            # a finally block CPython runs because its routine is dropped from memory (forced
            # replay, cache eviction): documented in the guide, not an effect of the routine
            self.evictions.append(label)
            return
        try:
            key = dasync.call_id()
        except dasync.NotInRoutine:
            if self.durable:
                self.strays.append(label)
                return
            self.labels.append(label)
        else:
            if (key, label) in self._seen:
                return
            self._seen.add((key, label))
            self.labels.append(label)
        for wanted, fut in list(self._waiters):
            if wanted == label and not fut.done():
                fut.set_result(None)

    def has(self, label: str) -> bool:
        return label in self.labels

    async def when(self, label: str) -> None:
        """Return once ``label`` has been recorded (on the caller's loop)."""
        if label in self.labels:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((label, fut))
        try:
            await fut
        finally:
            self._waiters.remove((label, fut))
