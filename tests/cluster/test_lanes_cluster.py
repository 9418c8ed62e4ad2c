"""Worker lanes across a real 3-node cluster: the worker holding a lane, the one taking it
over and the sender each connected to a different node.

A worker's presence is a core subscription on the node it is connected to; the other
nodes learn of it through the routes. The test checks that a worker on another node
sees it present (and leaves the lane alone), and sees it gone once it is killed (and
takes the lane over), with every stream at 3 replicas.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dasync.transports import Delivery, Message, Origin
from dasync.transports.nats import NatsOptions, NatsTransport, connect_nats
from dasync.transports.nats._inputs import ServiceInputs
from dasync.transports.nats._lanes import LanedSubscription

from ._cluster import NatsCluster

pytestmark = pytest.mark.timeout(120)


class Held:
    """Keeps what it got; ``hold``: leaves the deliveries unsettled."""

    def __init__(self, hold: bool) -> None:
        self.got: list[str] = []
        self.hold = hold

    async def __call__(self, delivery: Delivery) -> None:
        self.got.append(delivery.message.msg_id)
        if self.hold:
            await asyncio.Event().wait()
        await delivery.ack()


async def _transport(url: str) -> tuple[NatsTransport, Any]:
    options = NatsOptions(
        servers=(url,), namespace="lanes", replicas=3, ack_wait=2.0, reconnect_wait=0.2
    )
    transport, store = await connect_nats(options)
    return transport, store


async def test_a_lane_is_taken_over_across_nodes_only_once_its_worker_is_gone(
    tmp_path: Path,
) -> None:
    with NatsCluster(tmp_path / "cluster") as cluster:
        await cluster.ready()
        one, two, three = (node.url for node in cluster.nodes)
        holder, holder_store = await _transport(one)
        rescuer, rescuer_store = await _transport(two)
        sender, sender_store = await _transport(three)
        try:
            held, rescued = Held(hold=True), Held(hold=False)
            await holder.consume("Svc", held)
            inputs = await rescuer.consume("Svc", rescued)
            assert isinstance(inputs, ServiceInputs)
            sub = inputs.main
            assert isinstance(sub, LanedSubscription)
            lane = holder.lane_of("Svc")
            origin = Origin.service("Caller")
            await sender.send_at("Svc", lane, Message("first", {}, b""), origin)
            for _ in range(100):
                if held.got:
                    break
                await asyncio.sleep(0.05)
            assert held.got == ["first"]
            for _ in range(5):  # present through the routes: not taken
                await sub.rescue()
                await asyncio.sleep(0.1)
            assert sub.taken == {} and rescued.got == []

            holder.kill()
            await sender.send_at("Svc", lane, Message("second", {}, b""), origin)
            for _ in range(100):
                await sub.rescue()
                if sub.taken:
                    break
                await asyncio.sleep(0.1)
            assert list(sub.taken) == [lane]
            for _ in range(200):
                if set(rescued.got) == {"first", "second"}:
                    break
                await asyncio.sleep(0.05)
            assert set(rescued.got) == {"first", "second"}
            info = await rescuer.conn.api(f"CONSUMER.INFO.DASYNC-lanes_Svc_WORK.at_{lane}")
            assert len((info.get("cluster") or {}).get("replicas") or []) == 2  # 3 peers
        finally:
            for transport, store in ((rescuer, rescuer_store), (sender, sender_store)):
                await transport.close()
                await store.close()
            await holder_store.close()
