"""Tracing on the memory transport: span structure and attributes, events for timers,
retries, redeliveries and dead letters, and nothing at all without a provider.

The same across processes over NATS, with a kill -9: ``test_processes.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import dasync
from dasync._engine import StepRecord, decode_step
from dasync._errors import TransportError
from dasync._runtime import _tracing, _wire
from dasync.transports import MemoryBroker, MemoryStore, MemoryTransport, Message, Origin

from ._services import Back, BackImpl, Front, Middle
from .conftest import attrs

WAIT = 10.0


class MiddleImpl(Middle):
    """Sleeps a durable minute (virtual here; ``_services.MiddleImpl`` sleeps a real
    second on NATS): the live log and metrics tests count those minutes."""

    def __init__(self, back: Back) -> None:
        self.back = back

    async def work(self, n: int) -> int:
        await asyncio.sleep(60)  # a durable timer: a step of its own
        return await self.back.leaf(n) + 1


class FrontImpl(Front):
    """Calls Middle twice (``_services.FrontImpl``, for the processes test, once)."""

    def __init__(self, middle: Middle) -> None:
        self.middle = middle

    async def run(self, n: int) -> int:
        return await self.middle.work(n) + await self.middle.work(n + 1)


def runtime(broker: MemoryBroker, services: Sequence[type], **kw: Any) -> dasync.Runtime:
    kw.setdefault("store", MemoryStore(broker))
    return dasync.Runtime(services, transport=MemoryTransport(broker), broker=broker, **kw)


def consumers(spans: Sequence[ReadableSpan], service: str) -> list[ReadableSpan]:
    found = [s for s in spans if s.kind is SpanKind.CONSUMER and s.name == f"process {service}"]
    return sorted(found, key=lambda s: (attrs(s)["dasync.routine.id"], attrs(s)["dasync.step"]))


def producers(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [
        s
        for s in spans
        if s.kind is SpanKind.PRODUCER
        and s.parent is not None
        and s.parent.span_id == parent.context.span_id
    ]


def parent_of(span: ReadableSpan) -> int:
    assert span.parent is not None, span.name
    return span.parent.span_id


async def test_caller_call_callee_nested_call_is_one_trace(
    spans: InMemorySpanExporter, broker: MemoryBroker
) -> None:
    async with runtime(broker, [BackImpl, MiddleImpl, FrontImpl]) as rt:
        with trace.get_tracer("test").start_as_current_span("client") as client:
            handle = await rt.client.start(Front.run, 1, routine_id="order-1")
        assert await handle.result(timeout=WAIT) == 10 + 1 + 20 + 1
        journal = [decode_step(e) for e in await rt.store.load("Front", "order-1")]
    finished = spans.get_finished_spans()
    assert {s.context.trace_id for s in finished} == {client.get_span_context().trace_id}

    front = consumers(finished, "Front")
    assert [attrs(s)["dasync.step"] for s in front] == [0, 1, 2]
    # every activation of a routine is a child of what started it: here the client's span
    assert {parent_of(s) for s in front} == {client.get_span_context().span_id}
    assert [attrs(s)["dasync.input"] for s in front] == ["start", "reply", "reply"]
    # the journal keeps that context, so any worker continues the trace
    start = journal[0].input
    assert isinstance(start, dasync._engine.Start)
    assert start.meta["traceparent"].split("-")[2] == format(
        client.get_span_context().span_id, "016x"
    )

    [call] = producers(finished, front[0])
    assert call.name == "send Middle"
    a = attrs(call)
    assert a["messaging.system"] == "nats" and a["messaging.operation.type"] == "send"
    assert a["messaging.destination.name"] == "Middle" and a["dasync.message.kind"] == "call"
    assert a["messaging.message.id"].startswith("call:order-1/")
    assert a["dasync.routine.id"] == "order-1" and a["dasync.target.method"] == "work"

    middle = [s for s in consumers(finished, "Middle") if parent_of(s) == call.context.span_id]
    # start (timer set), timer fired (calls Back), Back's reply (completes)
    assert [attrs(s)["dasync.input"] for s in middle] == ["start", "timer", "reply"]
    m = attrs(middle[0])
    assert (
        m["messaging.operation.type"] == "process"
        and m["messaging.consumer.group.name"] == "Middle"
    )
    assert m["dasync.service"] == "Middle" and m["dasync.method"] == "work"
    assert m["dasync.routine.id"] == a["messaging.message.id"].split(":", 1)[1].split("#")[0]
    assert m["messaging.message.id"] == a["messaging.message.id"]
    assert [e.name for e in middle[0].events] == ["dasync.timer.scheduled"]

    [nested] = producers(finished, middle[1])
    assert nested.name == "send Back"
    [back] = [s for s in consumers(finished, "Back") if parent_of(s) == nested.context.span_id]
    [reply] = producers(finished, back)
    assert reply.name == "send Middle" and attrs(reply)["dasync.message.kind"] == "reply"
    # the reply wakes Middle: linked, not its parent
    assert [link.context.span_id for link in middle[2].links] == [reply.context.span_id]
    [to_client] = producers(finished, front[2])
    assert to_client.name == "send _inbox" and attrs(to_client)["messaging.destination.temporary"]


async def test_a_routine_started_untraced_keeps_its_first_activation_trace(
    spans: InMemorySpanExporter, broker: MemoryBroker
) -> None:
    async with runtime(broker, [BackImpl, MiddleImpl]) as rt:
        assert await rt.client.proxy(Middle).work(2) == 21
    middle = consumers(spans.get_finished_spans(), "Middle")
    assert len(middle) == 3 and middle[0].parent is None  # a root
    assert {s.context.trace_id for s in spans.get_finished_spans()} == {middle[0].context.trace_id}
    assert {parent_of(s) for s in middle[1:]} == {middle[0].context.span_id}


class Flaky(Protocol):
    async def fetch(self, n: int) -> int: ...


FAILURES: dict[int, int] = {}


class FlakyImpl(Flaky):
    @dasync.retry(attempts=3, backoff=1.0, on=TimeoutError)
    async def fetch(self, n: int) -> int:
        FAILURES[n] = FAILURES.get(n, 0) + 1
        if FAILURES[n] < 2:
            raise TimeoutError("upstream slow")
        return n


async def test_retries_are_span_events(spans: InMemorySpanExporter, broker: MemoryBroker) -> None:
    async with runtime(broker, [FlakyImpl]) as rt:
        assert await rt.client.proxy(Flaky).fetch(7) == 7
    first, retried = consumers(spans.get_finished_spans(), "Flaky")
    [event] = first.events
    assert event.name == "dasync.retry"
    assert dict(event.attributes or {})["dasync.retry.attempt"] == 1
    assert "TimeoutError: upstream slow" in str(dict(event.attributes or {})["dasync.retry.error"])
    assert attrs(retried)["dasync.input"] == "retry"
    assert [e.name for e in retried.events] == ["dasync.completed"]


class LoadsOnceBadly(MemoryStore):
    """The first read of one routine's state (its start claim, or its journal) fails, as a
    restarting server would."""

    def __init__(self, broker: MemoryBroker, routine_id: str) -> None:
        super().__init__(broker)
        self.routine_id = routine_id
        self.failed = False

    def _fail_once(self, routine_id: str) -> None:
        if routine_id == self.routine_id and not self.failed:
            self.failed = True
            raise TransportError("store unavailable")

    async def claim_start(self, service: str, routine_id: str, owner: str) -> str:
        self._fail_once(routine_id)
        return await super().claim_start(service, routine_id, owner)

    async def load(self, service: str, routine_id: str) -> list[bytes]:
        self._fail_once(routine_id)
        return await super().load(service, routine_id)


async def test_a_redelivery_is_an_attribute_and_an_event(
    spans: InMemorySpanExporter, broker: MemoryBroker
) -> None:
    store = LoadsOnceBadly(broker, "again")
    async with runtime(broker, [BackImpl], store=store) as rt:
        handle = await rt.client.start(Back.leaf, 3, routine_id="again")
        assert await handle.result(timeout=WAIT) == 30
    [span] = consumers(spans.get_finished_spans(), "Back")
    assert attrs(span)["dasync.delivery.attempt"] == 2
    assert [e.name for e in span.events][:1] == ["dasync.redelivered"]


class Refusing:
    """An observer that fails every step of routines named ``poison-*``."""

    async def committed(
        self, service: str, routine_id: str, index: int, record: StepRecord, *, resent: bool
    ) -> None:
        if routine_id.startswith("poison"):
            raise RuntimeError("index unavailable")

    async def set_aside(
        self, service: str, routine_id: str, entries: int, reason: str, *, told: bool
    ) -> None:
        pass


async def test_a_failed_delivery_and_a_dead_letter_are_on_spans_without_duplicates(
    spans: InMemorySpanExporter, broker: MemoryBroker
) -> None:
    async with runtime(broker, [BackImpl], observers=[Refusing()], poison_after=3) as rt:
        handle = await rt.client.start(Back.leaf, 1, routine_id="poison-1")
        with pytest.raises(dasync.CallFailed):
            await handle.result(timeout=WAIT)
    back = [s for s in spans.get_finished_spans() if s.name == "process Back"]
    # the step ran once; its redeliveries only re-sent (no span), the last one set it aside
    ran, settled = sorted(back, key=lambda s: attrs(s)["dasync.delivery.attempt"])
    assert "dasync.nak" in [e.name for e in ran.events]
    assert attrs(ran)["dasync.step"] == 0
    assert attrs(settled)["dasync.delivery.attempt"] == 3 and "dasync.step" not in attrs(settled)
    assert "dasync.dead_letter" in [e.name for e in settled.events]
    assert settled.status.status_code is StatusCode.ERROR
    assert attrs(settled)["error.type"]
    assert settled.context.trace_id == ran.context.trace_id
    # its caller is told, by a reply in the same trace
    [told] = producers(spans.get_finished_spans(), settled)
    assert attrs(told)["dasync.message.kind"] == "reply"


class Recording(MemoryTransport):
    def __init__(self, broker: MemoryBroker) -> None:
        super().__init__(broker)
        self.sent: list[Message] = []

    async def send(self, queue: str, message: Message, origin: Origin) -> None:
        self.sent.append(message)
        await super().send(queue, message, origin)


async def test_without_a_provider_nothing_is_traced(no_tracing: None, broker: MemoryBroker) -> None:
    assert not _tracing.enabled()
    transport = Recording(broker)
    rt = dasync.Runtime([BackImpl, MiddleImpl, FrontImpl], transport=transport, broker=broker)
    async with rt:
        with trace.get_tracer("test").start_as_current_span("client"):  # a no-op span
            handle = await rt.client.start(Front.run, 1, routine_id="plain")
        assert await handle.result(timeout=WAIT) == 32
        start = decode_step((await rt.store.load("Front", "plain"))[0]).input
    assert set(start.meta) == {"method", "caller", "reply_to", "reply_routine", "reply_seq", "run"}
    assert transport.sent and not [m for m in transport.sent if "traceparent" in m.headers]
    message = _wire.call_message("r", "m", b"{}", "", 0, msg_id="x")
    assert "traceparent" not in message.headers


async def test_a_client_start_carries_the_current_context(spans: InMemorySpanExporter) -> None:
    with trace.get_tracer("test").start_as_current_span("caller") as span:
        message = _wire.call_message("r", "m", b"{}", "", 0, msg_id="x")
    trace_id = message.headers["traceparent"].split("-")[1]
    assert trace_id == format(span.get_span_context().trace_id, "032x")
    outside = _wire.call_message("r", "m", b"{}", "", 0, msg_id="x")
    assert "traceparent" not in outside.headers


@dataclass(frozen=True)
class Registered:
    number: int


class Customers(Protocol):
    registered: dasync.Event[Registered]

    async def register(self, number: int) -> int: ...


class CustomersImpl(Customers):
    async def register(self, number: int) -> int:
        self.registered(Registered(number))
        return number


HANDLED: list[int] = []


@dasync.service(name="Welcome")
class Welcome:
    def __init__(self, customers: Customers) -> None:
        customers.registered += self.on_registered

    async def on_registered(self, event: Registered) -> None:
        HANDLED.append(event.number)


async def test_an_event_handler_is_a_child_of_the_publish(
    spans: InMemorySpanExporter, broker: MemoryBroker
) -> None:
    async with runtime(broker, [CustomersImpl, Welcome]) as rt:
        assert await rt.client.proxy(Customers).register(5) == 5
        for _ in range(500):
            if any(s.name == "process Welcome" for s in spans.get_finished_spans()):
                break
            await asyncio.sleep(0.01)
    finished = spans.get_finished_spans()
    [register] = consumers(finished, "Customers")
    [publish] = [s for s in producers(finished, register) if s.name.startswith("publish ")]
    assert attrs(publish)["messaging.operation.name"] == "publish"
    assert attrs(publish)["dasync.message.kind"] == "event"
    [handler] = consumers(finished, "Welcome")
    assert parent_of(handler) == publish.context.span_id
    assert attrs(handler)["dasync.input"] == "event"
    assert attrs(handler)["dasync.method"] == "on_registered"
