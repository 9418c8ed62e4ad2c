"""What the event tests share: a durable "world" on memory or NATS, a recorder, crash wrappers.

A ``World`` is the durable state every runtime of one test shares, as a NATS
server outlives its workers: a ``MemoryBroker`` with a virtual clock, or one
namespace on the events suite's NATS server. Runtimes come and go around it
(``start``, ``kill``), which is how the tests crash and restart processes.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import dasync
from dasync._engine import Emit, decode_step
from dasync._errors import TransportError
from dasync._runtime import _wire
from dasync.testing import VirtualClock
from dasync.transports import JournalStore, MemoryBroker, Message, Transport


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], within: float = 15.0, every: float = 0.005
) -> None:
    """Poll ``condition()`` (maybe async) until it holds; fail after ``within`` real seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(every)


async def quiet(seconds: float = 0.3) -> None:
    """Give stray (duplicate, phantom) deliveries time to show up before counting."""
    await asyncio.sleep(seconds)


@dataclass
class Recorder:
    """What handlers did, injected by name (``log``) into the services under test.

    ``runs`` counts executions of handler code (may exceed the events only after
    a crash); ``effects`` is keyed by the handler routine's stable id
    (``dasync.call_id()``), as an idempotent side effect would be.
    """

    runs: list[tuple[str, str, Any]] = field(default_factory=list)
    effects: dict[str, Any] = field(default_factory=dict)

    def handled(self, who: str, value: Any) -> None:
        key = dasync.call_id()
        self.runs.append((who, key, value))
        self.effects.setdefault(key, (who, value))

    def values(self, who: str) -> list[Any]:
        """Effects of one handler (``Service.handler``), in the order they first happened."""
        return [v for w, v in self.effects.values() if w == who]

    def run_count(self, who: str) -> int:
        return sum(1 for w, _, _ in self.runs if w == who)


class World:
    """The durable half of one test: a memory broker or a NATS namespace."""

    def __init__(self, kind: str, url: str | None = None) -> None:
        self.kind = kind
        self.url = url
        self.namespace = f"ev{uuid.uuid4().hex[:12]}"
        self.broker: MemoryBroker | None = None
        if kind == "memory":
            clock = VirtualClock()
            self.broker = MemoryBroker(clock)
            clock.is_busy = self.broker.busy
        self._runtimes: list[dasync.Runtime] = []
        self._resources: list[Any] = []

    @property
    def nats(self) -> bool:
        return self.kind == "nats"

    def options(self, **overrides: Any) -> Any:
        from dasync.transports.nats import NatsOptions

        settings: dict[str, Any] = {
            "servers": (self.url,),
            "namespace": self.namespace,
            "ack_wait": 1.0,  # a killed worker's deliveries come back after 1 s
            "reconnect_wait": 0.1,
            "close_timeout": 2.0,
        }
        settings.update(overrides)
        return NatsOptions(**settings)

    async def backend(self) -> tuple[Transport, JournalStore]:
        if self.broker is not None:
            from dasync.transports import MemoryStore, MemoryTransport

            return MemoryTransport(self.broker), MemoryStore(self.broker)
        from dasync.transports.nats import connect_nats

        transport, store = await connect_nats(self.options())
        self._resources.extend((transport, store))
        return transport, store

    async def make(
        self,
        services: Iterable[type],
        *,
        wrap_transport: Callable[[Transport], Transport] | None = None,
        wrap_store: Callable[[JournalStore], JournalStore] | None = None,
        **options: Any,
    ) -> dasync.Runtime:
        """A runtime on this world's durable state (not started)."""
        transport, store = await self.backend()
        if wrap_transport is not None:
            transport = wrap_transport(transport)
        if wrap_store is not None:
            store = wrap_store(store)
        rt = dasync.Runtime(services, transport=transport, store=store, **options)
        if self.broker is not None:
            rt.broker = self.broker
        self._runtimes.append(rt)
        return rt

    async def start(self, services: Iterable[type], **options: Any) -> dasync.Runtime:
        rt = await self.make(services, **options)
        await rt.start()
        return rt

    @asynccontextmanager
    async def runtime(self, services: Iterable[type], **options: Any) -> AsyncIterator[Any]:
        rt = await self.make(services, **options)
        async with rt:
            yield rt

    async def publish_raw(self, topic: str, message: Message) -> None:
        """Put a message straight onto an event topic, as a foreign publisher could."""
        transport, _ = await self.backend()
        await transport.declare_topic(topic)
        await transport.publish(topic, message)

    async def stored(self, topic: str) -> int:
        """How many distinct events of ``topic`` the broker / the event stream holds."""
        if self.broker is not None:
            ids: set[str] = set()
            for queue in self.broker.topics.get(topic, ()):
                ids.update(self.broker.queues[queue].seen)
            return len(ids)
        from dasync.transports.nats import naming

        transport, _ = await self.backend()
        conn = transport.conn  # type: ignore[attr-defined]
        service, _ = naming.split_topic(topic)
        stream = naming.event_stream(service, self.namespace)
        subject = naming.event_subject(topic, self.namespace)
        try:
            info = await conn.api(f"STREAM.INFO.{stream}", {"subjects_filter": subject})
        except Exception:  # the stream does not exist: nothing was published
            return 0
        return int(info.get("state", {}).get("subjects", {}).get(subject, 0))

    async def consumer_exists(self, topic: str, group: str) -> bool:
        """Whether the durable group (subscribing service + handler) exists for ``topic``."""
        if self.broker is not None:
            return f"_topic.{topic}@{group}" in self.broker.topics.get(topic, ())
        from dasync.transports.nats import naming

        transport, _ = await self.backend()
        conn = transport.conn  # type: ignore[attr-defined]
        stream = naming.event_stream(naming.split_topic(topic)[0], self.namespace)
        try:
            await conn.api(f"CONSUMER.INFO.{stream}.{naming.group_consumer(topic, group)}")
        except Exception:
            return False
        return True

    async def aclose(self) -> None:
        for rt in self._runtimes:
            await rt.close()  # a no-op for killed or closed runtimes
        for resource in self._resources:
            try:
                await resource.close()
            except Exception:
                pass
        if self.nats:
            await _delete_namespace(self.url or "", self.namespace)


async def _delete_namespace(url: str, namespace: str) -> None:
    import nats

    nc = await nats.connect(url, connect_timeout=5)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            name = info.config.name or ""
            if name.startswith(f"DASYNC-{namespace}_"):
                await js.delete_stream(name)
    finally:
        await nc.close()


def event_message(topic: str, event_id: str, body: bytes, msg_id: str | None = None) -> Message:
    """An event as the runtime publishes it (``msg_id`` overridable to dodge dedupe)."""
    message = _wire.event_message(topic, event_id, body)
    if msg_id is not None:
        message = Message(msg_id, message.headers, message.body)
    return message


# --- crash injection --------------------------------------------------------------------------


class _Forever:
    async def wait(self) -> None:
        await asyncio.Event().wait()  # until the runtime is killed (its task cancelled)


class CrashingStore:
    """A store whose first append of a step that fires an event does not go through.

    ``mode="hang"``: the append never returns, as if the process died right
    there; the test then kills the runtime. ``mode="raise"``: the append fails
    with a ``TransportError``, an infrastructure error the worker retries.
    """

    def __init__(self, inner: JournalStore, mode: str = "hang") -> None:
        self.inner = inner
        self.mode = mode
        self.armed = True
        self.hit = asyncio.Event()

    async def load(self, service: str, routine_id: str) -> list[bytes]:
        return await self.inner.load(service, routine_id)

    async def append(self, service: str, routine_id: str, entry: bytes, expected: int) -> None:
        if self.armed and any(isinstance(c, Emit) for c in decode_step(entry).commands):
            self.armed = False
            self.hit.set()
            if self.mode == "raise":
                raise TransportError("injected: the journal store is unreachable")
            await _Forever().wait()
        await self.inner.append(service, routine_id, entry, expected)

    async def close(self) -> None:
        await self.inner.close()


class CrashingTransport:
    """A transport whose first event publish never completes: the process "dies" there.

    ``after_publish=False``: between the journal commit and the publish (the event
    never left). ``after_publish=True``: after the publish, before the input is
    acknowledged (the event left; the restarted worker will publish it again).
    """

    def __init__(self, inner: Transport, after_publish: bool = False) -> None:
        self.inner = inner
        self.after_publish = after_publish
        self.armed = True
        self.hit = asyncio.Event()

    async def publish(self, topic: str, message: Message) -> None:
        if self.armed:
            self.armed = False
            if self.after_publish:
                await self.inner.publish(topic, message)
            self.hit.set()
            await _Forever().wait()
        await self.inner.publish(topic, message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
