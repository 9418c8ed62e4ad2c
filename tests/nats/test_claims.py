"""First-step leases on NATS: taken once, refused to others, renewed by their holder.

A lease is a create-if-absent message that expires with the claims stream's
``max_age`` (``ack_wait``). Its holder renews it when it claims again (a redelivery
to the same worker, the worker's heartbeat during a long first step), so it does not
expire in the middle of a run and let a second worker start the same call.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import dasync

ACK_WAIT = 2.0


async def test_a_lease_is_exclusive_and_renewed_by_its_holder(connect):
    namespace = f"c{uuid.uuid4().hex[:8]}"
    _, first = await connect(ack_wait=ACK_WAIT, namespace=namespace)
    _, second = await connect(ack_wait=ACK_WAIT, namespace=namespace)
    taken = time.monotonic()
    assert await first.claim("Svc", "r1", "worker-a")
    assert not await second.claim("Svc", "r1", "worker-b")
    await asyncio.sleep(ACK_WAIT * 0.6)
    assert await first.claim("Svc", "r1", "worker-a")  # renewed while still held
    # past the first lease's end (the server expires messages within about half a
    # second of max_age), within the renewed one's
    await asyncio.sleep(taken + ACK_WAIT * 1.3 - time.monotonic())
    assert not await second.claim("Svc", "r1", "worker-b")
    # left alone, it expires and another worker may take it
    deadline = time.monotonic() + ACK_WAIT * 5
    while not await second.claim("Svc", "r1", "worker-b"):
        assert time.monotonic() < deadline, "the lease never expired"
        await asyncio.sleep(0.1)
    assert not await first.claim("Svc", "r1", "worker-a")


async def test_a_lease_outlives_a_server_outage_until_its_holder_could_renew_it(
    restartable_server, connect_restartable
):
    """A server outage longer than ``ack_wait`` stops every renewal: the holder is alive
    but could not reach the server. Another worker takes the lease over only once the
    holder had a full ``ack_wait`` of a reachable server to renew it (the chaos suite saw a
    second worker start a call 0.2 s after a restart, while its holder was committing)."""
    namespace = f"o{uuid.uuid4().hex[:8]}"
    _, holder = await connect_restartable(ack_wait=ACK_WAIT, namespace=namespace)
    _, other = await connect_restartable(ack_wait=ACK_WAIT, namespace=namespace)
    assert await holder.claim("Svc", "r1", "worker-a")
    await asyncio.to_thread(restartable_server.stop)
    await asyncio.sleep(ACK_WAIT * 1.2)  # longer than the lease: no renewal could land
    await asyncio.to_thread(restartable_server.start)
    deadline = time.monotonic() + 15
    while True:  # both reconnect (the first requests may still time out)
        try:
            claimed = await other.claim("Svc", "r1", "worker-b")
            break
        except dasync.TransportError:
            assert time.monotonic() < deadline, "never reconnected"
            await asyncio.sleep(0.1)
    back = time.monotonic()
    assert not claimed  # the lease's own timestamp is old, but the server was away
    assert await holder.claim("Svc", "r1", "worker-a")  # the holder renews it in time
    assert not await other.claim("Svc", "r1", "worker-b")
    # a holder that stays silent for a full ack_wait of a reachable server loses it
    while not await other.claim("Svc", "r1", "worker-b"):
        assert time.monotonic() < back + ACK_WAIT * 5, "the lease never lapsed"
        await asyncio.sleep(0.1)
    assert time.monotonic() - back >= ACK_WAIT * 0.9
