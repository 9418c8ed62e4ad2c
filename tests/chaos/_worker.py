"""One worker process of the chaos suite: a ``dasync.Runtime`` hosting one service on NATS.

    python -m tests.chaos._worker SERVICE NAME CONFIG_JSON

``CONFIG_JSON`` holds ``url``, ``namespace``, ``workdir``, ``ack_wait``,
``copy_rate``, ``twice_rate`` and ``seed``. The process wraps its transport in
``Duplicating`` (injections logged to ``WORKDIR/dups-NAME.log``) and its store in
``RecordingStore`` (journal appends logged to ``WORKDIR/appends-NAME.log``),
counts side effects in ``WORKDIR/<SERVICE>.sqlite``, touches ``WORKDIR/NAME.ready`` once it
serves and stops gracefully on SIGTERM; the controller also ``kill -9``s it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import dasync
from dasync._errors import JournalConflict
from dasync.transports import JournalStore
from dasync.transports.nats import NatsOptions, connect_nats

from ._duplicates import Duplicating
from ._shop import SERVICE_CLASSES, Ledger


class RecordingStore:
    """Logs the outcome of every journal append (``ok``, ``conflict`` or ``error``), one line
    each, written at once: ``outcome pid service routine expected time``. The controller
    matches them with the executions in the SQLite tally, to tell why an execution did not
    commit (the process was killed: no line; the server was away: ``error``; another
    execution of the same routine committed first: ``conflict``)."""

    def __init__(self, inner: JournalStore, log: Path) -> None:
        self.inner = inner
        self._log: TextIO = open(log, "a", buffering=1)
        self._pid = os.getpid()

    async def append(self, service: str, routine_id: str, entry: bytes, expected: int) -> None:
        try:
            await self.inner.append(service, routine_id, entry, expected)
        except JournalConflict:
            self._write("conflict", service, routine_id, expected)
            raise
        except BaseException:
            self._write("error", service, routine_id, expected)
            raise
        self._write("ok", service, routine_id, expected)

    def _write(self, outcome: str, service: str, routine_id: str, expected: int) -> None:
        line = f"{outcome} {self._pid} {service} {routine_id} {expected} {time.time():.6f}"
        self._log.write(line + "\n")

    async def load(self, service: str, routine_id: str) -> list[bytes]:
        return await self.inner.load(service, routine_id)

    async def claim(self, service: str, routine_id: str, owner: str) -> bool:
        return await self.inner.claim(service, routine_id, owner)  # type: ignore[attr-defined, no-any-return]

    async def claim_start(self, service: str, routine_id: str, owner: str) -> str:
        return await self.inner.claim_start(service, routine_id, owner)  # type: ignore[attr-defined, no-any-return]

    # the routine index, as in production: its writes (and held first entries) are part
    # of what a kill or a server restart may interrupt

    @property
    def index_hold(self) -> float:
        return float(getattr(self.inner, "index_hold", 0.0))

    async def index_put(self, entry: Any, *, first: bool = False) -> bool:
        return await self.inner.index_put(entry, first=first)  # type: ignore[attr-defined, no-any-return]

    async def index_get(self, service: str, routine_id: str) -> Any:
        return await self.inner.index_get(service, routine_id)  # type: ignore[attr-defined]

    def index_pages(self, service: str, **options: Any) -> Any:
        return self.inner.index_pages(service, **options)  # type: ignore[attr-defined]

    async def index_services(self) -> list[str]:
        return await self.inner.index_services()  # type: ignore[attr-defined, no-any-return]

    async def index_remove(self, service: str, routine_ids: list[str]) -> None:
        await self.inner.index_remove(service, routine_ids)  # type: ignore[attr-defined]

    async def close(self) -> None:
        await self.inner.close()
        self._log.close()


def nats_options(config: dict[str, Any], name: str) -> NatsOptions:
    return NatsOptions(
        servers=(config["url"],),
        namespace=config["namespace"],
        name=f"dasync-chaos-{name}",
        ack_wait=config["ack_wait"],
        reconnect_wait=0.2,
        request_timeout=2.0,
        close_timeout=2.0,
    )


async def serve(service: str, name: str, config: dict[str, Any]) -> None:
    workdir = Path(config["workdir"])
    for attempt in range(60):  # the server may be restarting while this process starts
        try:
            transport, store = await connect_nats(nats_options(config, name))
            break
        except Exception as exc:
            if attempt == 59:
                raise
            logging.warning("connect failed (%r); retrying", exc)
            await asyncio.sleep(0.5)
    duplicating = Duplicating(
        transport,
        copy_rate=config["copy_rate"],
        twice_rate=config["twice_rate"],
        seed=config["seed"],
        log=workdir / f"dups-{name}.log",
    )
    container = {} if service == "Orders" else {"ledger": Ledger(workdir / f"{service}.sqlite")}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    runtime = dasync.Runtime(
        [SERVICE_CLASSES[service]],
        transport=duplicating,
        store=RecordingStore(store, workdir / f"appends-{name}.log"),
        container=container,
    )
    async with runtime:
        (workdir / f"{name}.ready").touch()
        await stop.wait()


def main() -> None:
    service, name, raw = sys.argv[1:4]
    logging.basicConfig(
        level=logging.WARNING,
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(service, name, json.loads(raw)))


if __name__ == "__main__":
    main()
