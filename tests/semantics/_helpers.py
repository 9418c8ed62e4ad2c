"""Small helpers shared by the core tests, the same on every transport.

``steps`` reads a routine's journal through the runtime's store; ``settled``
waits until a runtime has nothing left to do (no message pending or in
flight, no timer scheduled); ``dead_letters`` reads the messages a service's
worker rejected. On memory they read the broker, on NATS the server.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import dasync
from dasync._engine import StepRecord, decode_step
from dasync.transports import Message, Origin


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], within: float = 10.0, every: float = 0.001
) -> None:
    """Yield to the loop until ``condition()`` holds; fail after ``within`` real seconds.

    ``condition`` may be a coroutine function (e.g. one that reads a journal); it is
    then polled every 10 ms at least, to spare the server.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            every = max(every, 0.01)
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within}s: {condition}")
        await asyncio.sleep(every)


def journal(rt: dasync.Runtime, service: str, routine_id: str) -> list[StepRecord]:
    """The decoded journal of one routine, from the runtime's memory broker (memory only)."""
    assert rt.broker is not None
    return [decode_step(e) for e in rt.broker.journals.get((service, routine_id), [])]


async def steps(rt: dasync.Runtime, service: str, routine_id: str) -> list[StepRecord]:
    """The decoded journal of one routine, read through the runtime's store (any transport)."""
    return [decode_step(e) for e in await rt.store.load(service, routine_id)]


def _nats_conn(rt: dasync.Runtime) -> Any:
    conn = getattr(rt.transport, "conn", None)
    if conn is None:
        raise TypeError(f"{type(rt.transport).__name__} is neither the memory nor NATS transport")
    return conn


async def _nats_idle(rt: dasync.Runtime) -> bool:
    from dasync.transports.nats import naming

    conn = _nats_conn(rt)
    ns = conn.options.namespace
    for service in rt.worker.services:
        stream = naming.work_stream(service, ns)
        consumer = await conn.api(f"CONSUMER.INFO.{stream}.{naming.WORK_CONSUMER}")
        if consumer.get("num_pending", 0) or consumer.get("num_ack_pending", 0):
            return False
        schedules = naming.schedule_subject(service, "*", ns).rpartition(".")[0] + ".*"
        info = await conn.api(f"STREAM.INFO.{stream}", {"subjects_filter": schedules})
        if info.get("state", {}).get("subjects"):
            return False  # a timer is still scheduled
    return True


async def settled(rt: dasync.Runtime, within: float = 10.0) -> None:
    """Wait until ``rt``'s services have no message pending or in flight and no timer waiting.

    Memory: the broker is idle and nothing is scheduled. NATS: every work consumer
    reports nothing pending or unacknowledged and no schedule subject holds a
    message, twice in a row 50 ms apart.
    """
    if rt.broker is not None:
        broker = rt.broker
        await wait_until(
            lambda: not broker.busy() and broker.next_scheduled() is None, within=within
        )
        return

    async def idle_twice() -> bool:
        if not await _nats_idle(rt):
            return False
        await asyncio.sleep(0.05)
        return await _nats_idle(rt)

    await wait_until(idle_twice, within=within)


async def publish_raw(
    rt: dasync.Runtime, queue: str, message: Message, origin: Origin | None = None
) -> None:
    """Put a message on a service's queue as any producer could (bypassing the runtime),
    as sent by ``origin`` (default: the queue's own service)."""
    if rt.broker is not None:
        rt.broker.publish(queue, message, origin)
    else:
        await rt.transport.send(queue, message, origin)


async def dead_letters(rt: dasync.Runtime, queue: str) -> list[tuple[Message, str]]:
    """The messages of ``queue`` that workers terminated, with their reasons, oldest first."""
    if rt.broker is not None:
        return [(m, reason) for q, m, reason in rt.broker.dead if q == queue]
    from dasync.transports.nats import naming
    from dasync.transports.nats._connection import ApiError

    conn = _nats_conn(rt)
    ns = conn.options.namespace
    stream, subject = naming.work_stream(queue, ns), naming.dead_subject(queue, ns)
    found: list[tuple[Message, str]] = []
    seq = 1
    while True:
        try:
            info = await conn.api(f"STREAM.MSG.GET.{stream}", {"seq": seq, "next_by_subj": subject})
        except ApiError as exc:
            if exc.code == 404:
                return found
            raise
        raw = info["message"]
        headers = _parse_headers(base64.b64decode(raw.get("hdrs", "")).decode())
        body = base64.b64decode(raw.get("data", ""))
        reason = headers.get("Dasync-Dead-Reason", "")
        msg_id = headers.get("Dasync-Msg-Id") or headers.get("Nats-Msg-Id", "")
        found.append((Message(msg_id, headers, body), reason))
        seq = int(raw["seq"]) + 1


def _parse_headers(block: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split("\r\n")[1:]:
        if ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip()] = value.strip()
    return headers
