"""The processes of ``test_processes.py``: one role each, all on one NATS server.

    python _procs.py publisher URL NAMESPACE WORKDIR COUNT
    python _procs.py rewards|emails URL NAMESPACE WORKDIR

A subscriber counts what its handler does in ``WORKDIR/<role>.sqlite``:
``runs`` gets a row per execution (with the process id), ``effects`` one row per
handler routine id (``dasync.call_id()``, the same on every attempt) thanks to
its primary key, as an idempotent side effect would. Each process touches
``WORKDIR/<role>.ready`` once its runtime serves; subscribers stop on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import dasync
from dasync.transports.nats import NatsOptions, connect_nats


@dataclass(frozen=True)
class Registered:
    number: int


class Customers(Protocol):
    registered: dasync.Event[Registered]

    async def register(self, number: int) -> int: ...


class CustomerService(Customers):
    async def register(self, number: int) -> int:
        self.registered(Registered(number))  # leaves when this step commits
        return number


class Tally:
    """Durable counts of one subscriber, in SQLite (committed before the handler returns)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS runs (key TEXT, number INTEGER, pid INTEGER)")
        self.db.execute("CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, number INTEGER)")

    def handled(self, number: int) -> None:
        key = dasync.call_id()
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT INTO runs VALUES (?, ?, ?)", (key, number, os.getpid()))
            self.db.execute("INSERT OR IGNORE INTO effects VALUES (?, ?)", (key, number))


@dasync.service(name="Rewards")
class Rewards:
    def __init__(self, customers: Customers, tally: Tally) -> None:
        self.tally = tally
        customers.registered += self.on_registered

    async def on_registered(self, event: Registered) -> None:
        self.tally.handled(event.number)
        await dasync.io(asyncio.sleep(0.05))  # some real I/O: a kill may land after the effect


@dasync.service(name="Emails")
class Emails:
    def __init__(self, customers: Customers, tally: Tally) -> None:
        self.tally = tally
        customers.registered += self.on_registered

    async def on_registered(self, event: Registered) -> None:
        self.tally.handled(event.number)
        await dasync.io(asyncio.sleep(0.005))


async def main(role: str, url: str, namespace: str, workdir: Path, count: int) -> None:
    options = NatsOptions(
        servers=(url,), namespace=namespace, ack_wait=2.0, reconnect_wait=0.1, close_timeout=2.0
    )
    transport, store = await connect_nats(options)
    if role == "publisher":
        services: list[type] = [CustomerService]
        container = {}
    else:
        services = [{"rewards": Rewards, "emails": Emails}[role]]
        container = {"tally": Tally(workdir / f"{role}.sqlite")}
    async with dasync.Runtime(
        services, transport=transport, store=store, container=container
    ) as rt:
        (workdir / f"{role}.ready").touch()
        if role == "publisher":
            customers = rt.client.proxy(Customers)
            for start in range(0, count, 50):
                batch = range(start, min(start + 50, count))
                assert await asyncio.gather(*(customers.register(n) for n in batch)) == [*batch]
                await asyncio.sleep(0.05)  # a steady stream, so the kill lands mid-run
            print(f"published {count}", flush=True)
            return
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()


if __name__ == "__main__":
    role, url, namespace, workdir = sys.argv[1:5]
    count = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    asyncio.run(main(role, url, namespace, Path(workdir), count))
