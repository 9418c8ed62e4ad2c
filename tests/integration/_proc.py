"""One process of the reliability tests: a runtime hosting one service on NATS.

    python -m tests.integration._proc ledger|flow URL NAMESPACE WORKDIR NAME [ACK_WAIT]

It hosts ``LedgerService`` (counting in ``WORKDIR/tally.sqlite``) or
``FlowService``, touches ``WORKDIR/NAME.ready`` once it serves, and stops
gracefully on SIGTERM (the tests also ``kill -9`` it).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import dasync
from dasync.transports.nats import NatsOptions, connect_nats

from ._services import FlowService, LedgerService


async def serve(role: str, url: str, namespace: str, workdir: Path, name: str, ack_wait: float):
    options = NatsOptions(
        servers=(url,),
        namespace=namespace,
        name=f"dasync-test-{name}",
        ack_wait=ack_wait,
        reconnect_wait=0.2,
        request_timeout=2.0,
        close_timeout=2.0,
    )
    transport, store = await connect_nats(options)
    if role == "ledger":
        services: list[type] = [LedgerService]
        container = {"tally_path": str(workdir / "tally.sqlite")}
    else:
        services, container = [FlowService], {}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with dasync.Runtime(services, transport=transport, store=store, container=container):
        (workdir / f"{name}.ready").touch()
        await stop.wait()


def main() -> None:
    role, url, namespace, workdir, name = sys.argv[1:6]
    ack_wait = float(sys.argv[6]) if len(sys.argv) > 6 else 2.0
    logging.basicConfig(
        level=logging.WARNING, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(role, url, namespace, Path(workdir), name, ack_wait))


if __name__ == "__main__":
    main()
