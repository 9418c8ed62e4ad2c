"""The raw-NATS floor: the same durable work as dasync's W1/W2, written by hand with nats-py.

Per routine step it does what a durable workflow cannot avoid: an acked
JetStream publish for every call and every reply, pull consumers shared by
the workers of each service, and one KV put per step (the journal). No
replay, no codec, no framework: the lower bound dasync is compared to.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import orjson
from nats.js.api import ConsumerConfig, KeyValueConfig, RetentionPolicy, StreamConfig

__all__ = ["Floor"]


class Floor:
    """Orchestrator and leaf workers for W1 (3 sequential calls) and W2 (gather of 10)."""

    def __init__(self, url: str, prefix: str = "floor") -> None:
        self.url = url
        self.prefix = prefix
        self._tasks: list[asyncio.Task[None]] = []
        self._waiters: dict[str, asyncio.Future[bytes]] = {}
        self._state: dict[str, dict[str, Any]] = {}

    async def start(self) -> None:
        self.nc = await nats.connect(self.url)
        self.js = self.nc.jetstream()
        p = self.prefix
        for svc in ("orch", "leaf"):
            name = f"{p}_{svc}".upper()
            with contextlib.suppress(Exception):
                await self.js.delete_stream(name)
            await self.js.add_stream(
                StreamConfig(
                    name=name, subjects=[f"{p}.{svc}"], retention=RetentionPolicy.WORK_QUEUE
                )
            )
        with contextlib.suppress(Exception):
            await self.js.delete_key_value(f"{p}_journal")
        self.kv = await self.js.create_key_value(KeyValueConfig(bucket=f"{p}_journal", history=1))
        self._inbox = f"_INBOX.{uuid.uuid4().hex}"
        await self.nc.subscribe(self._inbox, cb=self._on_result)
        self._tasks.append(asyncio.create_task(self._serve("orch", self._orchestrate)))
        self._tasks.append(asyncio.create_task(self._serve("leaf", self._leaf)))

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.nc.close()

    async def run(self, workload: str) -> None:
        """Start one routine of ``workload`` ("W1" or "W2") and wait for its result."""
        rid = uuid.uuid4().hex
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters[rid] = fut
        body = orjson.dumps({"kind": "start", "rid": rid, "w": workload, "reply": self._inbox})
        await self.js.publish(f"{self.prefix}.orch", body, headers={"Nats-Msg-Id": f"s:{rid}"})
        await fut

    async def _on_result(self, msg: Any) -> None:
        data = orjson.loads(msg.data)
        fut = self._waiters.pop(data["rid"], None)
        if fut is not None and not fut.done():
            fut.set_result(msg.data)

    async def _serve(self, svc: str, handle: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        sub = await self.js.pull_subscribe(
            f"{self.prefix}.{svc}",
            durable=f"{svc}_workers",
            config=ConsumerConfig(max_ack_pending=1024),
        )
        running: set[asyncio.Task[None]] = set()

        async def one(msg: Any) -> None:
            await handle(orjson.loads(msg.data))
            await msg.ack()

        while True:
            try:
                msgs = await sub.fetch(64, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                task = asyncio.create_task(one(msg))
                running.add(task)
                task.add_done_callback(running.discard)

    async def _call(self, rid: str, seq: int, value: int) -> None:
        body = orjson.dumps({"kind": "call", "rid": rid, "seq": seq, "v": value})
        await self.js.publish(
            f"{self.prefix}.leaf", body, headers={"Nats-Msg-Id": f"c:{rid}:{seq}"}
        )

    async def _orchestrate(self, m: dict[str, Any]) -> None:
        rid = m["rid"]
        if m["kind"] == "start":
            st = self._state[rid] = {
                "w": m["w"],
                "reply": m["reply"],
                "step": 0,
                "got": 0,
                "sum": 0,
            }
            await self.kv.put(f"{rid}.0", orjson.dumps(m))
            if st["w"] == "W1":
                await self._call(rid, 1, 1)
            else:
                for seq in range(1, 11):
                    await self._call(rid, seq, seq)
            return
        st = self._state[rid]
        st["step"] += 1
        st["got"] += 1
        st["sum"] += m["v"]
        await self.kv.put(f"{rid}.{st['step']}", orjson.dumps(m))
        if st["w"] == "W1" and st["got"] < 3:
            await self._call(rid, st["got"] + 1, st["sum"])
            return
        if st["w"] == "W2" and st["got"] < 10:
            return
        del self._state[rid]
        await self.nc.publish(st["reply"], orjson.dumps({"rid": rid, "sum": st["sum"]}))

    async def _leaf(self, m: dict[str, Any]) -> None:
        rid, seq = m["rid"], m["seq"]
        await self.kv.put(f"{rid}-{seq}.0", orjson.dumps(m))
        reply = orjson.dumps({"kind": "reply", "rid": rid, "seq": seq, "v": m["v"] + 1})
        await self.js.publish(
            f"{self.prefix}.orch", reply, headers={"Nats-Msg-Id": f"r:{rid}:{seq}"}
        )
