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
