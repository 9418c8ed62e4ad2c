"""The client's CPU per received message: nats-py's protocol ``Parser`` against dasync's
``LeanParser`` (``transports/nats/_protocol.py``), on the stream a worker reads.

Run::

    python benchmarks/protocol.py            # 100,000 messages per cell, a few seconds
    python benchmarks/protocol.py --n 200000

The streams are what a worker mostly receives: PubAck-sized ``MSG``s (a reply on the
wildcard inbox, about 60 bytes of JSON) and ``HMSG`` deliveries (a ``$JS.ACK`` reply, 10
headers of about 300 bytes, a 200-byte body), alternating, then each alone, fed in 64 KiB
reads. Two measures:

- parser only: the client's ``_process_msg`` does nothing (what the parser itself costs);
- to the queue: a ``LeanClient`` not connected, with the two subscriptions in its
  ``_subs`` and a ``Forward`` queue that drops each ``Msg``; nats-py's parser (which calls
  ``Client._process_msg``: headers, ``Msg``, queue) against ``LeanParser`` (which does the
  same in line for plain subscriptions).

Reported: microseconds of this process's CPU per message, best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from nats.aio.subscription import Subscription
from nats.protocol.parser import Parser

from dasync.transports.nats._protocol import LeanParser
from dasync.transports.nats._requests import Forward, LeanClient, header_block, install

CHUNK = 65536


def stream(n: int, kinds: str = "mixed") -> bytes:
    """``n`` messages: PubAcks on sid 1 and JetStream deliveries on sid 2, alternating
    (``mixed``), or only one of them (``acks``, ``deliveries``)."""
    out = []
    for i in range(n):
        if kinds == "acks" or (kinds == "mixed" and i % 2 == 0):
            ack = json.dumps({"stream": "Svc_JOURNAL", "seq": 100000 + i, "domain": ""}).encode()
            inbox = b"_INBOX.Zl2hV9sQk3XbT1pQa7.%xa3f9c2e1b7d4" % i
            out.append(b"MSG %s 1 %d\r\n%s\r\n" % (inbox, len(ack), ack))
        else:
            headers = header_block(
                {
                    "dasync-kind": "work",
                    "dasync-routine": f"r-{i:08d}",
                    "dasync-service": "Orders",
                    "dasync-step": "charge",
                    "dasync-attempt": "1",
                    "dasync-deadline": "1733212345.125",
                    "dasync-trace": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    "Nats-Msg-Id": f"Orders.r-{i:08d}.charge.1",
                    "dasync-origin": "gateway-1",
                    "dasync-lane": "3",
                }
            )
            body = b"x" * 200
            reply = b"$JS.ACK.Svc_WORK.workers.1.%d.%d.1733212345125000000.0" % (i, i)
            out.append(
                b"HMSG Svc.work.Orders.charge 2 %s %d %d\r\n%s%s\r\n"
                % (reply, len(headers), len(headers) + len(body), headers, body)
            )
    return b"".join(out)


class Nothing:
    """A client whose callbacks do nothing."""

    async def _process_msg(self, *args: object) -> None:
        return None

    async def _process_ping(self) -> None:
        return None

    async def _process_pong(self) -> None:
        return None

    async def _process_info(self, info: object) -> None:
        return None

    async def _process_err(self, err: str) -> None:
        return None


def client() -> LeanClient:
    nc = LeanClient()
    for sid in (1, 2):
        sub = Subscription(nc, sid, "x", pending_bytes_limit=0)
        install(sub, Forward(lambda msg: None))
        nc._subs[sid] = sub
    return nc


async def cell(parser: Parser, data: bytes, n: int) -> float:
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    cpu = time.process_time()
    for chunk in chunks:
        await parser.parse(chunk)
    return (time.process_time() - cpu) / n * 1e6


async def main(n: int, repeat: int) -> None:
    cells = {
        "parser only, nats-py Parser": lambda: Parser(Nothing()),
        "parser only, LeanParser": lambda: LeanParser(Nothing()),
        "to the queue, nats-py Parser + Client._process_msg": lambda: Parser(client()),
        "to the queue, LeanParser": lambda: LeanParser(client()),
    }
    for kinds in ("mixed", "acks", "deliveries"):
        data = stream(n, kinds)
        print(f"{kinds}: {n} messages, {len(data) / n:.0f} bytes each, {CHUNK} byte reads")
        best = {name: float("inf") for name in cells}
        for _ in range(repeat):
            for name, make in cells.items():
                best[name] = min(best[name], await cell(make(), data, n))
        for name, us in best.items():
            print(f"  {name:52} {us:6.2f} us/message")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.repeat))
