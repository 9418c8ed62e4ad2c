"""The raw-NATS floor: the durable work of W1/W2, written by hand with bare nats-py.

It does, message for message, the durable work dasync does for the same
workloads (W1: three sequential calls to three leaf services ``leaf``, ``leaf2``,
``leaf3``; W1-1leaf: the same three calls to ``leaf``; W2: ten concurrent calls
to ``leaf``) (see ``docs/benchmarks.md`` for the counts):

* the client starts a routine with an acked JetStream publish (``Nats-Msg-Id``
  for dedupe) to the orchestrator's work-queue stream, and receives the result
  as an acked JetStream publish to its own inbox subject, read with a durable
  pull consumer (dasync's client does the same through ``DASYNC_INBOXES``);
* every call and every reply is an acked JetStream publish to the callee's /
  caller's work-queue stream, consumed by durable pull consumers shared by the
  workers of each service (competing consumers), with explicit acks;
* every step of every routine (the orchestrator's start and each reply it
  consumes, and the leaf's one step) is journaled with one KV put before its
  outgoing messages are published, and the input is acked after both.

What it leaves out is exactly what dasync adds on top: no replay engine, no
deterministic loop, no codec (orjson dicts), no contracts or proxies, no
journal reads, no keep-alive, no redelivery handling. Orchestrator state
lives in a dict (dasync keeps live routines in a cache too).

Pulling: each consumer keeps up to ``concurrency`` (64) messages in flight,
and asks for more (one pull request for the missing half) when in-flight plus
outstanding credit falls to half, as nats.go's ``Consume`` does.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

__all__ = ["FloorClient", "FloorWorker", "PullLoop", "provision"]

ORCH_STREAM, ORCH_SUBJECT = "FLOOR_ORCH", "floor.orch"
LEAF_STREAM, LEAF_SUBJECT = "FLOOR_LEAF", "floor.leaf"
LEAVES = {  # role -> (stream, subject): one work-queue stream per service, as dasync has
    "leaf": (LEAF_STREAM, LEAF_SUBJECT),
    "leaf2": ("FLOOR_LEAF2", "floor.leaf2"),
    "leaf3": ("FLOOR_LEAF3", "floor.leaf3"),
}
SEQUENTIAL_TARGETS = {  # a sequential workload's three calls: which leaf service each goes to
    "W1": ("leaf", "leaf2", "leaf3"),  # three different services (issue 14's W1)
    "W1-1leaf": ("leaf", "leaf", "leaf"),
}
INBOX_STREAM, INBOX_PREFIX = "FLOOR_INBOX", "floor.inbox"
BUCKET = "floor_journal"
WORKERS = "workers"
_NS = 1_000_000_000
W2_FANOUT = 10


async def provision(nc: NatsClient) -> None:
    """Streams, shared consumers and the journal bucket (file storage, like dasync's)."""
    js = nc.jetstream()
    queues = [(ORCH_STREAM, [ORCH_SUBJECT])] + [(st, [sub]) for st, sub in LEAVES.values()]
    for name, subjects in queues:
        await js.add_stream(
            StreamConfig(
                name=name,
                subjects=subjects,
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=120.0,
            )
        )
        await js.add_consumer(
            name,
            ConsumerConfig(
                durable_name=WORKERS,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30.0,
                max_deliver=-1,
                max_ack_pending=20_000,
                filter_subject=subjects[0],
            ),
        )
    await js.add_stream(
        StreamConfig(
            name=INBOX_STREAM,
            subjects=[f"{INBOX_PREFIX}.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            max_age=3600.0,
            duplicate_window=120.0,
        )
    )
    await js.create_key_value(KeyValueConfig(bucket=BUCKET, history=1, storage=StorageType.FILE))


class PullLoop:
    """Keeps ``concurrency`` messages in flight from one durable pull consumer.

    Each message gets its own task running ``handler`` (which acks). A pull
    request asks for what is missing once in-flight + outstanding credit has
    dropped to half of ``concurrency``; a 408 (request expired) returns its
    unused credit.
    """

    def __init__(
        self,
        nc: NatsClient,
        stream: str,
        durable: str,
        handler: Callable[[Msg], Awaitable[None]],
        concurrency: int = 64,
        expires: float = 30.0,
    ) -> None:
        self.nc = nc
        self.handler = handler
        self.concurrency = concurrency
        self.threshold = max(1, concurrency // 2)
        self.expires = int(expires * _NS)
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.inflight = 0
        self.credit = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.inbox = ""
        self._sub: Any = None

    async def start(self) -> None:
        self.inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(self.inbox, cb=self._on_msg)
        await self._refill()

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=5.0)

    async def _refill(self) -> None:
        want = self.concurrency - self.inflight - self.credit
        if want >= self.threshold and self._sub is not None:
            self.credit += want
            request = json.dumps({"batch": want, "expires": self.expires}).encode()
            await self.nc.publish(self.next_subject, request, reply=self.inbox)

    async def _on_msg(self, msg: Msg) -> None:
        if not msg.data and msg.headers and "Status" in msg.headers:
            status = msg.headers.get("Status")
            if status == "100":
                return
            pending = msg.headers.get("Nats-Pending-Messages")
            self.credit = max(0, self.credit - int(pending)) if pending else 0
            await self._refill()
            return
        self.credit = max(0, self.credit - 1)
        self.inflight += 1
        task = asyncio.get_running_loop().create_task(self._run(msg))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, msg: Msg) -> None:
        try:
            await self.handler(msg)
        finally:
            self.inflight -= 1
            await self._refill()


class FloorWorker:
    """The orchestrator and/or leaf services of the floor, on one connection.

    ``roles``: ``orch`` and any of ``leaf``, ``leaf2``, ``leaf3`` (``LEAVES``)."""

    def __init__(self, nc: NatsClient, roles: tuple[str, ...] = ("orch", "leaf")) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.roles = roles
        self.loops: list[PullLoop] = []
        self._state: dict[str, dict[str, Any]] = {}

    async def start(self, concurrency: int = 64) -> None:
        self.kv = await self.js.key_value(BUCKET)
        if "orch" in self.roles:
            self.loops.append(PullLoop(self.nc, ORCH_STREAM, WORKERS, self._orch, concurrency))
        for role, (stream, _) in LEAVES.items():
            if role in self.roles:
                self.loops.append(PullLoop(self.nc, stream, WORKERS, self._leaf, concurrency))
        for loop in self.loops:
            await loop.start()

    async def stop(self) -> None:
        for loop in self.loops:
            await loop.stop()

    async def _call(self, rid: str, seq: int, x: int, role: str = "leaf") -> None:
        body = orjson.dumps({"rid": rid, "seq": seq, "x": x})
        subject = LEAVES[role][1]
        await self.js.publish(subject, body, headers={"Nats-Msg-Id": f"call:{rid}-{seq}"})

    async def _orch(self, msg: Msg) -> None:
        m = orjson.loads(msg.data)
        rid = m["rid"]
        if m["kind"] == "start":
            self._state[rid] = st = {"m": m, "step": 0, "got": 0, "acc": 0, "lock": asyncio.Lock()}
            async with st["lock"]:
                await self.kv.put(f"{rid}.0", msg.data)  # step 0: the start
                if m["w"] != "W2":
                    await self._call(rid, 1, m["x"], SEQUENTIAL_TARGETS[m["w"]][0])
                else:
                    for i in range(W2_FANOUT):
                        await self._call(rid, i + 1, m["x"] + i)
            await msg.ack()
            return
        st = self._state[rid]
        # steps of one routine commit one at a time, in order (as a journal must, and as
        # dasync does): replies to the same routine wait for each other
        async with st["lock"]:
            st["step"] += 1
            st["got"] += 1
            await self.kv.put(f"{rid}.{st['step']}", msg.data)  # one journal entry per step
            start = st["m"]
            if start["w"] != "W2":
                if st["got"] < 3:
                    target = SEQUENTIAL_TARGETS[start["w"]][st["got"]]
                    await self._call(rid, st["got"] + 1, m["x"], target)
                    await msg.ack()
                    return
                result = m["x"]
            else:
                st["acc"] += m["x"]
                if st["got"] < W2_FANOUT:
                    await msg.ack()
                    return
                result = st["acc"]
            del self._state[rid]
            await self.js.publish(
                start["reply"],
                orjson.dumps({"rid": rid, "result": result}),
                headers={"Nats-Msg-Id": f"reply:{rid}"},
            )
        await msg.ack()

    async def _leaf(self, msg: Msg) -> None:
        m = orjson.loads(msg.data)
        callee = f"{m['rid']}-{m['seq']}"
        await self.kv.put(f"{callee}.0", msg.data)  # the callee routine's one step
        reply = orjson.dumps({"kind": "reply", "rid": m["rid"], "seq": m["seq"], "x": m["x"] + 1})
        await self.js.publish(ORCH_SUBJECT, reply, headers={"Nats-Msg-Id": f"reply:{callee}"})
        await msg.ack()


class FloorClient:
    """Starts floor routines and receives their results on a durable inbox consumer."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.id = uuid.uuid4().hex
        self.subject = f"{INBOX_PREFIX}.{self.id}"
        self._waiters: dict[str, asyncio.Future[int]] = {}

    async def open(self) -> None:
        durable = f"inbox_{self.id}"
        await self.js.add_consumer(
            INBOX_STREAM,
            ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30.0,
                filter_subject=self.subject,
                inactive_threshold=300.0,
                max_ack_pending=10_000,
            ),
        )
        self._loop = PullLoop(self.nc, INBOX_STREAM, durable, self._on_result, 64)
        await self._loop.start()

    async def close(self) -> None:
        await self._loop.stop()

    async def run(self, workload: str, x: int) -> int:
        rid = uuid.uuid4().hex
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters[rid] = fut
        body = orjson.dumps(
            {"kind": "start", "rid": rid, "w": workload, "x": x, "reply": self.subject}
        )
        await self.js.publish(ORCH_SUBJECT, body, headers={"Nats-Msg-Id": f"call:{rid}"})
        return await fut

    async def _on_result(self, msg: Msg) -> None:
        m = orjson.loads(msg.data)
        fut = self._waiters.pop(m["rid"], None)
        if fut is not None and not fut.done():
            fut.set_result(m["result"])
        await msg.ack()


async def connect(url: str) -> NatsClient:
    return await nats.connect(url, max_reconnect_attempts=-1)
