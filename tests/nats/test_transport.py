"""NatsTransport behaves like the memory transport: queues, dedupe, settling, delays."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest

import dasync
from dasync.transports import Delivery, Origin, Transport
from dasync.transports.nats import naming

from ._helpers import Recorder, msg, wait_until


async def test_satisfies_the_transport_protocol(connect):
    transport, store = await connect()
    assert isinstance(transport, Transport)
    assert isinstance(store, dasync.transports.JournalStore)


async def test_message_roundtrip_keeps_id_headers_and_body(connect, service):
    transport, _ = await connect()
    await transport.declare(service)
    rec = Recorder()
    await transport.consume(service, rec)
    await transport.send(service, msg("m-1", b"\x00payload", **{"dasync-kind": "start"}))
    got = await rec.next()
    assert got.message.msg_id == "m-1"
    assert got.message.body == b"\x00payload"
    assert dict(got.message.headers) == {"dasync-test": "1", "dasync-kind": "start"}
    assert got.attempt == 1


async def test_messages_sent_before_anyone_consumes_wait_in_the_queue(connect, service):
    transport, _ = await connect()
    await transport.declare(service)
    for i in range(5):
        await transport.send(service, msg(f"m{i}"))
    rec = Recorder()
    await transport.consume(service, rec)
    ids = {(await rec.next()).message.msg_id for _ in range(5)}
    assert ids == {f"m{i}" for i in range(5)}


async def test_duplicate_ids_are_dropped(connect, service):
    transport, _ = await connect()
    await transport.declare(service)
    rec = Recorder()
    await transport.consume(service, rec)
    for _ in range(3):
        await transport.send(service, msg("same", b"1"))
    await transport.send(service, msg("other", b"2"))
    assert {(await rec.next()).message.msg_id for _ in range(2)} == {"same", "other"}
    await rec.nothing_within(0.3)


async def test_send_to_undeclared_queue_raises_unknown_service(connect, service):
    transport, _ = await connect()
    with pytest.raises(dasync.UnknownService):
        await transport.send(service, msg("x"))


async def test_declare_is_idempotent_across_connections(connect, service):
    t1, _ = await connect()
    t2, _ = await connect(ack_wait=7)  # a different setting updates the consumer
    await t1.declare(service)
    await t1.declare(service)
    await t2.declare(service)
    await t2.send(service, msg("ok"))


async def test_nak_redelivers_with_increasing_attempt(connect, service):
    transport, _ = await connect()
    await transport.declare(service)

    async def settle(d: Delivery) -> None:
        if d.attempt < 3:
            await d.nak()
        else:
            await d.ack()

    rec = Recorder(settle)
    await transport.consume(service, rec)
    await transport.send(service, msg("retry"))
    assert [(await rec.next()).attempt for _ in range(3)] == [1, 2, 3]
    await rec.nothing_within(0.3)


async def test_nak_with_delay_waits_that_long(connect, service):
    transport, _ = await connect()
    await transport.declare(service)

    async def settle(d: Delivery) -> None:
        await (d.nak(0.5) if d.attempt == 1 else d.ack())

    rec = Recorder(settle)
    await transport.consume(service, rec)
    await transport.send(service, msg("later"))
    first, second = await rec.next(), await rec.next()
    assert second.attempt == 2
    assert second.at - first.at >= 0.45


async def test_term_stops_redelivery_and_keeps_the_reason(connect, service):
    transport, _ = await connect(ack_wait=1)
    await transport.declare(service)

    async def settle(d: Delivery) -> None:
        await d.term("poison:\ncannot decode")

    rec = Recorder(settle)
    await transport.consume(service, rec)
    await transport.send(service, msg("bad", b"junk"))
    await rec.next()
    await rec.nothing_within(1.5)  # beyond ack_wait: terminated, not redelivered
    info = await transport.conn.api(
        f"STREAM.MSG.GET.{naming.work_stream(service)}",
        {"last_by_subj": naming.dead_subject(service)},
    )
    headers = base64.b64decode(info["message"]["hdrs"]).decode()
    assert "Dasync-Dead-Reason: poison: cannot decode" in headers
    assert f"Dasync-Dead-Queue: {service}" in headers
    assert base64.b64decode(info["message"]["data"]) == b"junk"


async def test_unacked_message_of_a_dead_worker_is_redelivered_after_ack_wait(connect, service):
    dying, _ = await connect(ack_wait=1)
    await dying.declare(service)
    hold = Recorder(settle=lambda d: asyncio.sleep(3600))
    await dying.consume(service, hold)
    await dying.send(service, msg("orphan"))
    await hold.next()
    started = time.monotonic()
    dying.kill()

    survivor, _ = await connect(ack_wait=1)
    rec = Recorder()
    await survivor.consume(service, rec)
    got = await rec.next(within=5)
    assert got.message.msg_id == "orphan"
    assert got.attempt == 2
    assert time.monotonic() - started >= 0.5


async def test_a_slow_handler_keeps_its_message(connect, service):
    """While the handler runs, the transport extends the ack deadline (memory semantics)."""
    transport, _ = await connect(ack_wait=0.6)
    await transport.declare(service)

    async def slow(d: Delivery) -> None:
        await asyncio.sleep(2.0)
        await d.ack()

    rec = Recorder(slow)
    await transport.consume(service, rec)
    await transport.send(service, msg("slow"))
    await rec.next()
    await rec.nothing_within(2.5)


async def test_close_hands_unfinished_messages_back_at_once(connect, service):
    first, _ = await connect(ack_wait=30, close_timeout=0.2)
    await first.declare(service)
    hold = Recorder(settle=lambda d: asyncio.sleep(3600))
    await first.consume(service, hold)
    await first.send(service, msg("unfinished"))
    await hold.next()
    await first.close()

    second, _ = await connect(ack_wait=30)
    rec = Recorder()
    await second.consume(service, rec)
    got = await rec.next(within=3)  # far sooner than ack_wait
    assert got.message.msg_id == "unfinished"


async def test_in_progress_is_accepted(connect, service):
    transport, _ = await connect()
    await transport.declare(service)

    async def settle(d: Delivery) -> None:
        await d.in_progress()
        await d.ack()
        await d.in_progress()  # after settling: ignored
        await d.nak()  # settled once only

    rec = Recorder(settle)
    await transport.consume(service, rec)
    await transport.send(service, msg("wpi"))
    await rec.next()
    await rec.nothing_within(0.3)


async def test_competing_consumers_share_the_work_exactly_once(connect, service):
    workers = [await connect() for _ in range(3)]
    seen: list[tuple[int, str]] = []

    def handler(n: int):
        async def handle(d: Delivery) -> None:
            seen.append((n, d.message.msg_id))
            await asyncio.sleep(0.01)
            await d.ack()

        return handle

    for n, (transport, _) in enumerate(workers):
        await transport.consume(service, handler(n), concurrency=2)
    sender = workers[0][0]
    for i in range(60):
        await sender.send(service, msg(f"job{i}"))
    await wait_until(lambda: len(seen) >= 60)
    await asyncio.sleep(0.2)
    assert sorted(m for _, m in seen) == sorted(f"job{i}" for i in range(60))
    assert len({n for n, _ in seen}) > 1  # more than one worker took part


async def test_concurrency_bounds_deliveries_in_flight(connect, service):
    transport, _ = await connect()
    running = 0
    peak = 0
    done = 0

    async def handle(d: Delivery) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        done += 1
        await d.ack()

    await transport.consume(service, handle, concurrency=3)
    for i in range(12):
        await transport.send(service, msg(f"c{i}"))
    await wait_until(lambda: done == 12)
    assert peak <= 3


async def test_stop_stops_fetching(connect, service):
    transport, _ = await connect()
    rec = Recorder()
    sub = await transport.consume(service, rec)
    await transport.send(service, msg("before"))
    await rec.next()
    await sub.stop()
    await transport.send(service, msg("after"))
    await rec.nothing_within(0.3)
    other, _ = await connect()
    rec2 = Recorder()
    await other.consume(service, rec2)
    assert (await rec2.next(within=3)).message.msg_id == "after"


@pytest.mark.parametrize("schedules", [True, False], ids=["scheduled", "nak-until-due"])
async def test_delayed_delivery_is_never_early(connect, service, schedules):
    transport, _ = await connect(use_schedules=schedules)
    rec = Recorder()
    await transport.consume(service, rec)
    now = time.time()
    await transport.send(service, msg("t2", deliver_at=now + 0.8))
    await transport.send(service, msg("t1", deliver_at=now + 0.4))
    await transport.send(service, msg("now"))
    await transport.send(service, msg("past", deliver_at=now - 10))
    got = [await rec.next(within=5) for _ in range(4)]
    order = [g.message.msg_id for g in got]
    assert set(order[:2]) == {"now", "past"}
    assert order[2:] == ["t1", "t2"]
    for g in got[2:]:
        assert g.message.deliver_at is not None
        assert g.at >= g.message.deliver_at
    assert got[3].at - now < 3.0


async def test_delayed_message_dedupe_keeps_one_timer(connect, service):
    transport, _ = await connect()
    rec = Recorder()
    await transport.consume(service, rec)
    at = time.time() + 0.3
    for _ in range(3):
        await transport.send(service, msg("timer:r:1", deliver_at=at))
    assert (await rec.next()).message.msg_id == "timer:r:1"
    await rec.nothing_within(0.5)


async def test_client_inbox_queues(connect):
    transport, _ = await connect()
    inbox = "_inbox.web.0123456789abcdef"
    await transport.declare(inbox)
    rec = Recorder()
    sub = await transport.consume(inbox, rec)
    await transport.send(inbox, msg("reply:1", b"42"), Origin.service("Shop"))
    got = await rec.next()
    assert (got.message.msg_id, got.message.body) == ("reply:1", b"42")
    assert got.delivery.origin == Origin.service("Shop")  # from the subject, not a header
    consumer = f"CONSUMER.INFO.{naming.inbox_stream('web')}.{naming.inbox_consumer(inbox)}"
    await transport.conn.api(consumer)
    await sub.stop()  # a client going away removes its consumer at once
    with pytest.raises(dasync.TransportError, match="10014"):
        await transport.conn.api(consumer)


async def test_reply_to_a_vanished_inbox_does_not_raise(connect):
    transport, _ = await connect()
    await transport.declare("_inbox.web.alive")
    await transport.send("_inbox.web.neverdeclared", msg("reply:lost"), Origin.service("Shop"))


async def test_closed_transport_refuses_to_send(connect, service):
    transport, _ = await connect()
    await transport.declare(service)
    await transport.close()
    with pytest.raises(dasync.TransportError):
        await transport.send(service, msg("late"))
