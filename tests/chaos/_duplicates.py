"""A transport wrapper that injects duplicate deliveries, for a fraction of the messages.

Two kinds, chosen per message by a seeded hash of its id (so the choice does not
depend on timing):

* ``copy``: the message (a call, a reply, a timer, a cancel or an event) is
  published a second time right after the first, under another message id
  (``<id>#dup``), so JetStream's dedupe window cannot drop it: the copy is a
  second, independent delivery, possibly to another worker at the same time;
* ``twice``: a delivery is handed to the worker's handler twice, concurrently,
  the second time as a redelivery racing the first one would be (``Redelivered``:
  its attempt counts one more, and a start the transport keeps once says it was
  delivered before).

Each injection is appended to a log file at once (one line, ``kind msg_id``), so
the count survives a ``kill -9`` of the process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from pathlib import Path
from typing import Any, TextIO

from dasync.transports import Delivery, Handler, Message, Origin, Subscription, Transport
from dasync.transports._contract import REDELIVERED, SOLE


def _fraction(seed: str, msg_id: str) -> float:
    digest = hashlib.blake2b(f"{seed}:{msg_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Redelivered:
    """``delivery`` as the server would hand it again: the same message and settlement,
    one more attempt, and no longer the first delivery of a start kept once."""

    def __init__(self, delivery: Delivery) -> None:
        self._delivery = delivery

    @property
    def attempt(self) -> int:
        return self._delivery.attempt + 1

    def copy_of(self, key: str) -> str:
        copy_of = getattr(self._delivery, "copy_of", None)
        found = copy_of(key) if copy_of is not None else ""
        return REDELIVERED if found == SOLE else str(found)

    def __getattr__(self, name: str) -> Any:  # message, origin, ack, nak, term...
        return getattr(self._delivery, name)


class Duplicating:
    """Wraps a ``Transport``; everything not overridden goes to the inner transport."""

    def __init__(
        self,
        inner: Transport,
        *,
        copy_rate: float,
        twice_rate: float,
        seed: str,
        log: Path | None = None,
    ) -> None:
        self.inner = inner
        self.copy_rate = copy_rate
        self.twice_rate = twice_rate
        self.seed = seed
        self.injected = 0
        self.copied: set[str] = set()
        self._log: TextIO | None = open(log, "a", buffering=1) if log else None

    def _record(self, kind: str, msg_id: str) -> None:
        self.injected += 1
        if kind == "copy":
            self.copied.add(msg_id)
        if self._log is not None:
            self._log.write(f"{kind} {msg_id}\n")

    def _copy(self, message: Message) -> Message | None:
        if message.msg_id.endswith("#dup"):
            return None
        if _fraction(self.seed, message.msg_id) >= self.copy_rate:
            return None
        return dataclasses.replace(message, msg_id=message.msg_id + "#dup")

    async def send(self, queue: str, message: Message, origin: Origin | None = None) -> None:
        await self.inner.send(queue, message, origin)
        if (copy := self._copy(message)) is not None:
            await self.inner.send(queue, copy, origin)
            self._record("copy", message.msg_id)

    async def send_at(self, queue: str, lane: str, message: Message, origin: Origin) -> None:
        await self.inner.send_at(queue, lane, message, origin)
        if (copy := self._copy(message)) is not None:
            await self.inner.send_at(queue, lane, copy, origin)
            self._record("copy", message.msg_id)

    async def publish(self, topic: str, message: Message) -> None:
        await self.inner.publish(topic, message)
        if (copy := self._copy(message)) is not None:
            await self.inner.publish(topic, copy)
            self._record("copy", message.msg_id)

    def _doubling(self, handler: Handler) -> Handler:
        if not self.twice_rate:
            return handler

        async def twice(delivery: Delivery) -> None:
            msg_id = delivery.message.msg_id
            if delivery.attempt == 1 and _fraction(self.seed + "/2", msg_id) < self.twice_rate:
                self._record("twice", msg_id)
                again: Any = Redelivered(delivery)
                await asyncio.gather(handler(delivery), handler(again))
            else:
                await handler(delivery)

        return twice

    async def consume(self, queue: str, handler: Handler, **kw: Any) -> Subscription:
        return await self.inner.consume(queue, self._doubling(handler), **kw)

    async def subscribe(self, topic: str, group: str, handler: Handler, **kw: Any) -> Subscription:
        return await self.inner.subscribe(topic, group, self._doubling(handler), **kw)

    async def close(self) -> None:
        await self.inner.close()
        if self._log is not None:
            self._log.close()

    def __getattr__(self, name: str) -> Any:  # declare, declare_topic, dead_letters...
        return getattr(self.inner, name)
