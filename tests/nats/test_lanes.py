"""Worker lanes on a real server: a routine's replies and timers reach the worker that holds
it while that worker lives, and another worker's once it is gone (issue 14).

Transport level first (each pass of the take-over run by hand, so nothing waits on a
timer), then runtimes: two workers of a service that gathers calls, then one of them
killed while its routine waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

import pytest

import dasync
from dasync.transports import Delivery, Message, Origin
from dasync.transports.nats import NatsTransport, connect_nats, naming
from dasync.transports.nats._inputs import ServiceInputs
from dasync.transports.nats._lanes import LanedSubscription
from dasync.transports.nats._provision import Provisioner

from ..conftest import delete_namespace, nats_options

pytestmark = pytest.mark.timeout(60)


class Inbox:
    """A handler that keeps what it got; ``hold`` keeps deliveries unsettled."""

    def __init__(self, hold: bool = False) -> None:
        self.got: list[tuple[str, Origin]] = []
        self.hold = hold
        self.arrived = asyncio.Event()

    async def __call__(self, delivery: Delivery) -> None:
        self.got.append((delivery.message.msg_id, delivery.origin))
        self.arrived.set()
        if self.hold:
            await asyncio.Event().wait()
        await delivery.ack()


async def until(check: Any, within: float = 10.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def nats(nats_session_server: Any, request: pytest.FixtureRequest) -> Any:
    """``open(**options)`` -> a NATS transport in this test's namespace; all closed after."""
    namespace = f"lanes{abs(hash(request.node.nodeid)) % 10**8}"
    opened: list[Any] = []

    async def open_(**overrides: Any) -> NatsTransport:
        transport, store = await connect_nats(
            nats_options(nats_session_server.url, namespace, **overrides)
        )
        opened.append((transport, store))
        assert isinstance(transport, NatsTransport)
        return transport

    open_.url = nats_session_server.url  # type: ignore[attr-defined]
    open_.namespace = namespace  # type: ignore[attr-defined]
    yield open_
    for transport, store in opened:
        if not transport.conn.closed:
            await transport.close()
        await store.close()
    await delete_namespace(nats_session_server.url, namespace)


async def test_a_message_sent_to_a_lane_reaches_that_worker_only(nats: Any) -> None:
    one, two, caller = await nats(), await nats(), await nats()
    inbox_one, inbox_two = Inbox(), Inbox()
    await one.consume("Svc", inbox_one)
    await two.consume("Svc", inbox_two)
    assert one.lane_of("Svc") and two.lane_of("Svc") and one.lane_of("Svc") != two.lane_of("Svc")
    sender = Origin.service("Caller")
    for n in range(30):
        await caller.send_at("Svc", one.lane_of("Svc"), Message(f"m{n}", {}, b""), sender)
    await until(lambda: len(inbox_one.got) == 30, what="30 messages on lane one")
    assert inbox_two.got == []
    # the lane authenticates its sender as the shared lane does
    assert {origin for _, origin in inbox_one.got} == {sender}


async def test_a_live_workers_lane_is_left_alone_and_a_dead_ones_taken(nats: Any) -> None:
    holder, other, caller = await nats(), await nats(), await nats()
    held, rescued = Inbox(hold=True), Inbox()
    await holder.consume("Svc", held)
    inputs = await other.consume("Svc", rescued)
    assert isinstance(inputs, ServiceInputs)
    sub = inputs.main
    assert isinstance(sub, LanedSubscription)
    lane = holder.lane_of("Svc")
    await caller.send_at("Svc", lane, Message("first", {}, b""), Origin.service("Caller"))
    await asyncio.wait_for(held.arrived.wait(), 5)
    for _ in range(3):  # a lane with a message in flight, its worker present: not taken
        await sub.rescue()
    assert sub.taken == {} and rescued.got == []

    holder.kill()  # kill -9: connection gone, the delivery unacknowledged
    await caller.send_at("Svc", lane, Message("second", {}, b""), Origin.service("Caller"))
    # not before the rescuer has had the server for ack_wait since its connection opened
    # (after an outage, as after a restart, a worker absent at first may only be late)
    settled_at = other.conn.unavailable_at + other.ack_wait
    for _ in range(400):  # until the server has seen the connection go (a few ms)
        await asyncio.gather(sub.rescue(), sub.rescue())  # passes at once take it once
        if sub.taken:
            break
        await asyncio.sleep(0.05)
    assert list(sub.taken) == [lane] and sub.takeovers == 1
    assert time.time() >= settled_at
    # the undelivered message at once, the unacknowledged one after ack_wait (5 s here)
    await until(lambda: {m for m, _ in rescued.got} == {"first", "second"}, within=15)
    # drained: a pass after the server has removed the acknowledged messages lets it go
    await until(lambda: _drained(sub), what="the taken lane drained")
    for _ in range(100):
        await sub.rescue()
        if not sub.taken:
            break
        await asyncio.sleep(0.05)
    assert sub.taken == {} and len(sub.released) <= 1


def _drained(sub: LanedSubscription) -> bool:
    return all(not consumer.inflight for consumer in sub.taken.values())


async def test_a_stream_without_lanes_keeps_the_shared_queue(nats: Any, caplog: Any) -> None:
    """A work stream made by an older release has no ``at.>`` subjects: no lane is used,
    and a send to a lane there (a caller's claim) lands on the shared queue."""
    old = await nats()
    ns = nats.namespace
    await old.conn.api(
        f"STREAM.CREATE.{naming.work_stream('Old', ns)}",
        {
            "name": naming.work_stream("Old", ns),
            "subjects": naming.work_subjects("Old", ns)[:3],
            "retention": "workqueue",
            "storage": "file",
        },
    )
    worker, caller = await nats(), await nats()
    inbox = Inbox()
    with caplog.at_level(logging.WARNING, "dasync.nats"):
        await worker.consume("Old", inbox)
    assert worker.lane_of("Old") == ""
    assert "no worker lanes" in caplog.text and "nats-provision" in caplog.text
    await caller.send_at("Old", "0123456789abcdef", Message("m", {}, b""), Origin.service("C"))
    await until(lambda: len(inbox.got) == 1, what="the message on the shared queue")
    assert inbox.got[0][1] == Origin.service("C")


async def test_nats_provision_gives_an_old_stream_its_lanes(nats: Any) -> None:
    """What the warning says to do: the provisioner (``update=True``) adds the lanes'
    subjects to a stream made before them, and its workers then use lanes."""
    old = await nats()
    ns = nats.namespace
    stream = naming.work_stream("Old", ns)
    await old.conn.api(
        f"STREAM.CREATE.{stream}",
        {
            "name": stream,
            "subjects": naming.work_subjects("Old", ns)[:3],
            "retention": "workqueue",
            "storage": "file",
        },
    )
    assert not await old.provisioner.has_lanes("Old")
    await Provisioner(old.conn, update=True).queue("Old", consumer=False)
    assert await old.provisioner.has_lanes("Old")
    worker = await nats()
    await worker.consume("Old", Inbox())
    assert worker.lane_of("Old")


async def test_lanes_can_be_turned_off(nats: Any) -> None:
    off = await nats(lanes=False)
    await off.consume("Svc", Inbox())
    assert off.lane_of("Svc") == ""


async def test_a_lane_that_is_not_one_of_ours_goes_to_the_shared_queue(nats: Any) -> None:
    worker, caller = await nats(), await nats()
    inbox = Inbox()
    await worker.consume("Svc", inbox)
    await caller.send_at("Svc", "not-a-lane", Message("m", {}, b""), Origin.service("C"))
    await until(lambda: len(inbox.got) == 1)


# --- runtimes ------------------------------------------------------------------------------


class Leaf(Protocol):
    async def echo(self, n: int) -> int: ...


class Fan(Protocol):
    async def run(self, n: int) -> int: ...


class LeafImpl(Leaf):
    def __init__(self) -> None:
        self.gate: Any = None
        self.runs = 0

    async def echo(self, n: int) -> int:
        self.runs += 1
        if self.gate is not None:
            await self.gate  # a future of the host loop: real I/O, as far as routines know
        return n


class FanImpl(Fan):
    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def run(self, n: int) -> int:
        parts = await asyncio.gather(*(self.leaf.echo(n + i) for i in range(10)))
        await asyncio.sleep(0.05)  # a timer: it comes back to the same worker too
        return sum(parts)


async def _runtimes(url: str, namespace: str, services: list[type], count: int, **kw: Any) -> Any:
    started = []
    for _ in range(count):
        transport, store = await connect_nats(nats_options(url, namespace, **kw))
        rt = dasync.Runtime(services, transport=transport, store=store)
        await rt.start()
        started.append(rt)
    return started


@pytest.mark.parametrize("lanes", [True, False])
async def test_replies_of_a_gather_reach_the_worker_that_holds_the_routine(
    nats_session_server: Any, lanes: bool
) -> None:
    """Two workers of Fan, 40 routines of 10 concurrent calls and a timer each: with lanes,
    no reply or timer finds its routine elsewhere (no conflict, no replay); without them
    (the control), some do."""
    url, namespace = nats_session_server.url, f"fan{int(lanes)}{id(object()) % 10**6}"
    fans = await _runtimes(url, namespace, [FanImpl], 2, lanes=lanes)
    leaves = await _runtimes(url, namespace, [LeafImpl], 1, lanes=lanes)
    try:
        client = fans[0].client
        handles = [await client.start(Fan.run, n * 100) for n in range(40)]
        results = await asyncio.gather(*(h.result(timeout=30) for h in handles))
        assert results == [sum(n * 100 + i for i in range(10)) for n in range(40)]
        stats = [rt.worker.stats for rt in fans]
        assert all(s.activations > 0 for s in stats), "both workers held routines"
        crossed = sum(s.replays + s.conflicts for s in stats)
        if lanes:
            assert crossed == 0, [(s.replays, s.conflicts) for s in stats]
        else:
            assert crossed > 0, "the control: replies on a shared queue reach either worker"
    finally:
        for rt in fans + leaves:
            await rt.close()
        await delete_namespace(url, namespace)


async def test_a_routine_whose_worker_was_killed_completes_on_another(
    nats_session_server: Any,
) -> None:
    """The worker holding a routine is killed while its call runs; the reply lands on the
    dead worker's lane and the other worker takes the lane over: one result, the call
    run once."""
    url, namespace = nats_session_server.url, f"kill{id(object()) % 10**6}"
    gate = asyncio.get_running_loop().create_future()
    fans = await _runtimes(url, namespace, [FanImpl], 2, lane_rescue=0.2)
    transport, store = await connect_nats(nats_options(url, namespace))
    leaf_rt = dasync.Runtime([LeafImpl], transport=transport, store=store)
    await leaf_rt.start()
    leaf = leaf_rt.instance_of(LeafImpl)
    leaf.gate = gate
    try:
        handle = await leaf_rt.client.start(Fan.run, 7, routine_id="held-1")
        await until(lambda: leaf.runs == 10, what="the ten calls running")
        holder = next(rt for rt in fans if ("Fan", "held-1") in rt.worker._cache)
        survivor = next(rt for rt in fans if rt is not holder)
        holder.kill()
        gate.set_result(None)
        assert await handle.result(timeout=30) == sum(7 + i for i in range(10))
        subs = [
            s.main
            for s in survivor.worker._subscriptions
            if isinstance(s, ServiceInputs) and isinstance(s.main, LanedSubscription)
        ]
        assert sum(s.takeovers for s in subs) >= 1
        assert leaf.runs == 10, "each call ran once"
    finally:
        for rt in [*fans, leaf_rt]:
            if rt is not None:
                try:
                    await rt.close()
                except Exception:
                    pass
        await delete_namespace(url, namespace)
