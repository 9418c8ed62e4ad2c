"""The services of the reliability tests, and their durable tally in SQLite.

``Flow.run(n)`` (the calling service) gathers three calls to ``Ledger.book``
(the worker service) and, with ``pause``, sleeps on a durable timer first. It
returns ``expected(n)``.

``Ledger.book`` is the side effect. It counts in a SQLite file shared by every
process (WAL mode; each row is committed before ``book`` goes on, and SQLite
survives ``kill -9`` of a writer):

* ``executions``: one row per execution, with the process id and the time it
  began, appended *before* the external I/O (a kill during the I/O leaves the
  row: an execution that never committed);
* ``effects``: the effect itself, keyed by ``dasync.call_id()`` (the same on
  every attempt) with a primary key, as a payment API takes an idempotency
  key; ``writes`` counts how many executions reached it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import dasync

IO_SECONDS = 0.05
"""How long ``book``'s external call takes (a kill is likely to land in it)."""
CALLS_PER_FLOW = 3


def expected(n: int) -> int:
    return sum(n * 10 + i for i in range(CALLS_PER_FLOW))


def flow_id(n: int) -> str:
    return f"flow-{n}"


class Ledger(Protocol):
    async def book(self, account: str, amount: int) -> int: ...


class Flow(Protocol):
    async def run(self, n: int, pause: float) -> int: ...


class Tally:
    """The durable record of executions and effects (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS executions (call_id TEXT, pid INTEGER, began REAL)"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS effects (call_id TEXT PRIMARY KEY, account TEXT, "
            "amount INTEGER, pid INTEGER, writes INTEGER)"
        )

    def began(self, call_id: str) -> None:
        self.db.execute(
            "INSERT INTO executions VALUES (?, ?, ?)", (call_id, os.getpid(), time.time())
        )

    def effect(self, call_id: str, account: str, amount: int) -> None:
        self.db.execute(
            "INSERT INTO effects VALUES (?, ?, ?, ?, 1) "
            "ON CONFLICT(call_id) DO UPDATE SET writes = writes + 1",
            (call_id, account, amount, os.getpid()),
        )

    # --- reading (the tests) ----------------------------------------------------------------

    def effect_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM effects").fetchone()[0])

    def effects(self) -> dict[str, tuple[str, int, int, int]]:
        rows = self.db.execute("SELECT call_id, account, amount, pid, writes FROM effects")
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

    def executions(self) -> list[Execution]:
        rows = self.db.execute("SELECT call_id, pid, began FROM executions ORDER BY rowid")
        return [Execution(*r) for r in rows]

    def execution_counts(self) -> Counter[str]:
        return Counter(e.call_id for e in self.executions())

    def unfinished_by(self, pid: int) -> set[str]:
        """Executions of ``pid`` that have not applied their effect (yet)."""
        rows = self.db.execute(
            "SELECT call_id FROM executions WHERE pid = ? AND call_id NOT IN "
            "(SELECT call_id FROM effects)",
            (pid,),
        )
        return {r[0] for r in rows}

    def close(self) -> None:
        self.db.close()


@dataclass(frozen=True)
class Execution:
    call_id: str
    pid: int
    began: float


class LedgerService(Ledger):
    def __init__(self, tally_path: str) -> None:
        self.tally = Tally(tally_path)

    async def book(self, account: str, amount: int) -> int:
        key = dasync.call_id()
        self.tally.began(key)
        await dasync.io(asyncio.sleep(IO_SECONDS))  # the external API call
        self.tally.effect(key, account, amount)  # idempotent under the call id
        return amount


class FlowService(Flow):
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def run(self, n: int, pause: float) -> int:
        if pause:
            await asyncio.sleep(pause)  # a durable timer
        parts = await asyncio.gather(
            *(self.ledger.book(f"acct-{n}-{i}", n * 10 + i) for i in range(CALLS_PER_FLOW))
        )
        return sum(parts)


def call_ids(flows: int, pause: bool = False) -> set[str]:
    """The call id of every ``book`` call of flows ``0..flows-1`` (``<flow>/Flow.run.<seq>``;
    with a pause, the timer takes sequence number 1)."""
    first = 2 if pause else 1
    seqs = range(first, first + CALLS_PER_FLOW)
    return {f"{flow_id(n)}/Flow.run.{seq}" for n in range(flows) for seq in seqs}
