"""Workers ride out a NATS server restart: calls fail fast while it is down, nothing is lost."""

from __future__ import annotations

import asyncio
import time

import pytest

import dasync

from ._helpers import Recorder, msg, wait_until


async def test_consumer_keeps_receiving_across_a_server_restart(
    restartable_server, connect_restartable, service
):
    transport, store = await connect_restartable(request_timeout=1.0)
    rec = Recorder()
    await transport.consume(service, rec)
    for i in range(5):
        await transport.send(service, msg(f"before{i}"))
    await wait_until(lambda: len(rec.all) == 5)
    await store.append(service, "r", b"0", 0)

    await asyncio.to_thread(restartable_server.stop)
    with pytest.raises(dasync.TransportError):
        await transport.send(service, msg("while-down"))
    with pytest.raises(dasync.TransportError):
        await store.load(service, "r")
    await asyncio.to_thread(restartable_server.start)

    await _eventually_send(transport, service, [f"after{i}" for i in range(5)])
    expected = {f"before{i}" for i in range(5)} | {f"after{i}" for i in range(5)}
    # "while-down" may arrive too: a publish that timed out may still be flushed on reconnect
    await wait_until(lambda: {r.message.msg_id for r in rec.all} >= expected, within=15)
    assert await store.load(service, "r") == [b"0"]
    await store.append(service, "r", b"1", 1)
    assert await store.load(service, "r") == [b"0", b"1"]


async def test_unacked_and_scheduled_messages_survive_a_restart(
    restartable_server, connect_restartable, service
):
    transport, _ = await connect_restartable(ack_wait=1.0, request_timeout=1.0)
    await transport.declare(service)
    due = time.time() + 1.5
    await transport.send(service, msg("timer", deliver_at=due))
    for i in range(3):
        await transport.send(service, msg(f"job{i}"))

    await asyncio.to_thread(restartable_server.restart)

    rec = Recorder()
    await transport.consume(service, rec)
    await wait_until(lambda: {r.message.msg_id for r in rec.all} >= {"job0", "job1", "job2"})
    await wait_until(lambda: any(r.message.msg_id == "timer" for r in rec.all), within=10)
    timer = next(r for r in rec.all if r.message.msg_id == "timer")
    assert timer.at >= due


async def test_a_delivery_in_flight_during_a_restart_is_settled_or_redelivered(
    restartable_server, connect_restartable, service
):
    transport, _ = await connect_restartable(ack_wait=1.0, request_timeout=1.0)
    release = asyncio.Event()

    async def settle(d):
        if d.attempt == 1:
            await release.wait()
        await d.ack()

    rec = Recorder(settle)
    await transport.consume(service, rec)
    await transport.send(service, msg("inflight"))
    await rec.next()
    await asyncio.to_thread(restartable_server.restart)
    release.set()
    await asyncio.sleep(2.0)  # past ack_wait: redelivered if the ack was lost, else nothing
    assert {r.message.msg_id for r in rec.all} == {"inflight"}
    assert len(rec.all) <= 2


async def _eventually_send(transport, service, ids, within=10.0):
    """Send each id, retrying TransportError while the client reconnects (as the worker does)."""
    deadline = time.monotonic() + within
    for msg_id in ids:
        while True:
            try:
                await transport.send(service, msg(msg_id))
                break
            except dasync.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
