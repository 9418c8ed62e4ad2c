"""Pulling from a durable JetStream consumer and settling deliveries.

One loop per ``consume()`` call issues pull requests for exactly as many
messages as it has free handler slots and hands each message to its own task
as soon as it arrives (no batching latency). Each request has its own reply
subject, so the loop knows which expiry or error status belongs to it (messages
themselves arrive with their own subject and are counted against the current
request: an old request's late message costs at most a little overshoot). The
loop survives disconnects: a reconnect, a missing heartbeat or an expired
request just leads to a new pull; a deleted consumer is provisioned again.

While a handler runs, its delivery is kept alive with ``+WPI`` every third of
``ack_wait``, so a slow step is never handed to a second worker while this one
lives; a killed worker stops doing it and the message is redelivered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from dasync._errors import TransportError
from dasync.transports._contract import (
    COPY,
    REDELIVERED,
    SOLE,
    UNKNOWN_ORIGIN,
    Handler,
    Message,
    Origin,
)

from . import _envelope as env
from . import _naming as naming
from ._connection import Connection, Inbox, RawMsg
from ._provision import Provisioner
from ._requests import valid_header_name

__all__ = ["NatsDelivery", "PullConsumer"]

_log = logging.getLogger("dasync.nats")

_RECREATE_AFTER = 5
"""Unanswered pulls in a row before the consumer is re-created (it may have been deleted)."""
_NS = 1_000_000_000


class _ConsumerGone(TransportError):
    """The consumer (or its stream) no longer exists."""


class NatsDelivery:
    """One delivery from JetStream; settling sends the matching ack to the server.

    Settling never raises: if the ack cannot be sent (disconnected), the server
    redelivers the message after ``ack_wait``, which the runtime tolerates.
    """

    __slots__ = ("_consumer", "_message", "_raw", "attempt", "origin", "settled", "stream_seq")

    def __init__(self, raw: RawMsg, consumer: PullConsumer) -> None:
        self._raw = raw
        self._consumer = consumer
        self.attempt, self.stream_seq = env.ack_info(raw.reply)
        self._message = env.to_message(raw, f"{consumer.stream}:{self.stream_seq}")
        self.origin = consumer.origin_of(raw.subject, raw.headers.get(env.SCHEDULER))
        self.settled = False

    @property
    def message(self) -> Message:
        return self._message

    def copy_of(self, key: str) -> str:
        """``UniqueDelivery``: from a starts stream, on the subject of routine ``key``."""
        if not self._consumer.unique:
            return COPY if env.KEPT in self._raw.headers else ""
        if naming.start_routine_token(self._raw.subject) != naming.token(key, 200):
            return ""
        return SOLE if self.attempt == 1 else REDELIVERED

    async def ack(self) -> None:
        await self._settle(b"+ACK")

    async def nak(self, delay: float = 0.0) -> None:
        if delay > 0:
            await self._settle(b"-NAK " + json.dumps({"delay": int(delay * _NS)}).encode())
        else:
            await self._settle(b"-NAK")

    async def in_progress(self) -> None:
        if not self.settled:
            await self._consumer.send_ack(self._raw.reply, b"+WPI")

    async def term(self, reason: str) -> None:
        if self.settled:
            return
        if not await self._consumer.keep_dead(self._raw, self._message, reason):
            await self.nak(1.0)  # could not record it: try again rather than lose the reason
            return
        await self._settle(b"+TERM " + env.header_safe(reason, 1000).encode())

    async def _settle(self, payload: bytes) -> None:
        if self.settled:
            return
        self.settled = True
        await self._consumer.send_ack(self._raw.reply, payload)


class PullConsumer:
    """The pull loop over one durable consumer; a ``Subscription`` for the runtime."""

    def __init__(
        self,
        conn: Connection,
        provisioner: Provisioner,
        queue: str,
        handler: Handler,
        concurrency: int,
        *,
        stream: str,
        consumer: str,
        dead_subject: str | None,
        delete_on_stop: bool = False,
        origin: Origin | None = None,
        lane: str = "",
        unique: bool = False,
    ) -> None:
        self.conn = conn
        self.provisioner = provisioner
        self.queue = queue
        self.handler = handler
        self.concurrency = max(1, concurrency)
        self.stream = stream
        self.consumer = consumer
        self.dead_subject = dead_subject
        self.origin = origin
        """The sender of every message here (an event stream's publisher), if fixed."""
        self.delete_on_stop = delete_on_stop
        self.lane = lane
        """The worker lane this consumer pulls (``""``: the shared queue)."""
        self.unique = unique
        """A starts stream's: one copy per routine (``NatsDelivery.copy_of``)."""
        opts = conn.options
        self.expires = max(1.0, opts.pull_expires)
        self.heartbeat = max(0.5, min(5.0, self.expires / 4))
        self.keepalive = max(0.2, opts.ack_wait / 3)
        self.inflight: dict[NatsDelivery, asyncio.Task[None]] = {}
        self.killed = False
        self.breaks = 0
        """Times this loop may have lost its place (reconnected, consumer re-created): the
        ``Continuity`` capability."""
        self._freed = asyncio.Event()
        self._requests = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._started: dict[NatsDelivery, float] = {}
        self._keeper: asyncio.Task[None] | None = None

    async def backlog(self) -> int:
        """``Backlog``: the consumer's ``num_pending`` (stored, not yet delivered)."""
        info = await self.conn.api(f"CONSUMER.INFO.{self.stream}.{self.consumer}")
        return int(info.get("num_pending", 0))

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop pulling; in-flight deliveries may still be settled."""
        if self._stopping:
            return
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.delete_on_stop and not self.conn.closed:
            # a client inbox: nobody will pull from it again (replies left expire with max_age)
            try:
                await self.conn.api(f"CONSUMER.DELETE.{self.stream}.{self.consumer}")
            except TransportError as exc:
                _log.debug("deleting consumer %s/%s: %s", self.stream, self.consumer, exc)
            self._forget()

    async def drain(self, grace: float) -> None:
        """Stop, give handlers ``grace`` seconds, hand the rest back for redelivery now."""
        await self.stop()
        tasks = list(self.inflight.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for delivery, task in list(self.inflight.items()):
            await delivery.nak(0.0)
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def kill(self) -> None:
        """Vanish like a killed process: nothing more is settled, the server redelivers."""
        self.killed = self._stopping = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for task in self.inflight.values():
            task.cancel()

    def _forget(self) -> None:
        if self.lane:
            self.provisioner.forget_lane(self.queue, self.lane)
        else:
            self.provisioner.forget(self.queue)

    async def _provision(self) -> None:
        if self.lane:
            await self.provisioner.lane(self.queue, self.lane)
        else:
            await self.provisioner.queue(self.queue)

    # --- settling -------------------------------------------------------------------------

    async def send_ack(self, reply: str, payload: bytes) -> None:
        if self.killed or not reply or self.conn.closed:
            return
        try:
            await self.conn.send(reply, payload)
        except TransportError as exc:
            _log.debug("ack %r on %s not sent (%s); the server will redeliver", payload, reply, exc)

    def origin_of(self, subject: str, scheduler: str | None = None) -> Origin:
        """Who sent a message, from the subject the server let only that sender use (for a
        message a schedule fired, the schedule's subject: ``naming.sender_lane``)."""
        if self.origin is not None:
            return self.origin
        ns = self.conn.options.namespace
        found = naming.origin_of(naming.sender_lane(subject, scheduler, ns), ns)
        return Origin(*found) if found is not None else UNKNOWN_ORIGIN

    async def keep_dead(self, raw: RawMsg, message: Message, reason: str) -> bool:
        """Store a copy of a poison message with its reason (the dead-letter subject)."""
        if self.dead_subject is None or self.killed:
            return True
        # a sender's own names are kept if they can be sent again (a name nats-py would
        # refuse must not keep the letter from being recorded: it would come back forever)
        headers = {
            k: v
            for k, v in raw.headers.items()
            if not k.startswith("Nats-") and valid_header_name(k)
        }
        headers.update(
            {
                env.MSG_ID: message.msg_id,
                env.DEAD_REASON: env.header_safe(reason),
                env.DEAD_QUEUE: self.queue,
                # a retry goes back on the real sender's lane, not a schedule's target
                env.DEAD_SUBJECT: naming.sender_lane(
                    raw.subject, raw.headers.get(env.SCHEDULER), self.conn.options.namespace
                ),
                env.NATS_MSG_ID: f"dead:{self.stream}:{env.ack_info(raw.reply)[1]}",
            }
        )
        try:
            await self.conn.publish(self.dead_subject, raw.data, headers)
        except TransportError as exc:
            _log.warning("could not keep dead message %s: %s", message.msg_id, exc)
            return False
        return True

    # --- pulling --------------------------------------------------------------------------

    async def _run(self) -> None:
        inbox = await self.conn.subscribe(f"{self.conn.new_inbox()}.*")
        base = inbox.subject[:-2]
        pause = 0.0
        unanswered = 0
        try:
            while not self.conn.closed and not self._stopping:
                try:
                    await self._pull(inbox, base)
                except _ConsumerGone as exc:
                    # no responder: the consumer is gone, or (on a cluster) electing a new
                    # leader. Pull again soon; re-create it only if that keeps failing,
                    # since a create waits for a leader as long as a request may
                    unanswered += 1
                    pause = min(1.0, 0.1 * 2 ** min(unanswered - 1, 4))
                    if unanswered % _RECREATE_AFTER == 0:
                        _log.info(
                            "consumer %s/%s does not answer (%s); recreating",
                            self.stream, self.consumer, exc,
                        )  # fmt: skip
                        self._forget()
                        try:
                            await self._provision()
                            self.breaks += 1
                            pause = 0.0
                        except TransportError as err:
                            _log.warning("recreating %s/%s: %s", self.stream, self.consumer, err)
                except TransportError as exc:
                    _log.warning("pulling from %s/%s: %s", self.stream, self.consumer, exc)
                    pause = _next_pause(pause)
                else:
                    pause = 0.0
                    unanswered = 0
                if pause:
                    await asyncio.sleep(pause)
        finally:
            await inbox.close()
            for raw in inbox.pending():  # arrived as we stopped: hand back at once
                if not raw.status:
                    await self.send_ack(raw.reply, b"-NAK")

    async def _pull(self, inbox: Inbox, base: str) -> None:
        """Issue pull requests until one fails; returns normally to simply start over."""
        loop = asyncio.get_running_loop()
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.consumer}"
        while not self._stopping:
            free = self.concurrency - len(self.inflight)
            if free <= 0:
                self._freed.clear()
                await self._freed.wait()
                continue
            self._requests += 1
            reply = f"{base}.{self._requests}"
            request = {
                "batch": free,
                "expires": int(self.expires * _NS),
                "idle_heartbeat": int(self.heartbeat * _NS),
            }
            await self.conn.send(subject, json.dumps(request).encode(), reply=reply)
            remaining = free
            deadline = loop.time() + self.expires + self.heartbeat
            heard = loop.time()
            while remaining > 0 and not self._stopping:
                now = loop.time()
                if now >= deadline or now - heard > 2.5 * self.heartbeat:
                    return  # expired or lost (no heartbeat): pull again
                item = await inbox.get(min(deadline - now, 2.5 * self.heartbeat - (now - heard)))
                if item is None:
                    continue
                if not isinstance(item, RawMsg):
                    self.breaks += 1
                    return  # reconnected: the server forgot our pull request
                heard = loop.time()
                status = item.status
                if not status:  # a message; it carries its own subject, not our reply subject
                    self._dispatch(item)
                    remaining -= 1
                elif item.subject != reply or status == "100":
                    continue
                elif status in ("408", "404"):
                    break
                elif status == "503":
                    raise _ConsumerGone(item.description or "no responders")
                elif status == "409":
                    if "deleted" in item.description.lower():
                        raise _ConsumerGone(item.description)
                    _log.debug("pull %s/%s: 409 %s", self.stream, self.consumer, item.description)
                    await asyncio.sleep(0.2)
                    break
                else:
                    raise TransportError(f"pull refused: {status} {item.description}")

    # --- handling -------------------------------------------------------------------------

    def _dispatch(self, raw: RawMsg) -> None:
        delivery = NatsDelivery(raw, self)
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._handle(delivery))
        self.inflight[delivery] = task
        # the server's ack_wait runs from now, not from when a busy loop starts the task:
        # kept alive from receipt, a delivery waiting for its turn is not handed to another
        self._started[delivery] = time.monotonic()
        if self._keeper is None or self._keeper.done():
            self._keeper = loop.create_task(self._keep_alive())

    async def _handle(self, delivery: NatsDelivery) -> None:
        try:
            due = delivery.message.deliver_at
            if due is not None and (wait := due - time.time()) > 0:
                await delivery.nak(wait)  # early (no server scheduler, or clock skew)
                return
            if self.unique and delivery.attempt > 1 and (wait := self._unsettled()) > 0:
                await delivery.nak(wait)
                return
            await self.handler(delivery)
        except Exception:
            _log.exception("handler failed on %s", delivery.message.msg_id)
            await delivery.nak(1.0)
        finally:
            self._started.pop(delivery, None)
            self.inflight.pop(delivery, None)
            self._freed.set()

    def _unsettled(self) -> float:
        """Seconds to hold a redelivered start back: its first delivery ran without a claim,
        and after an outage (the server restarted, or this worker's connection broke) its
        worker may live and still run it, unable to tell the server so. The runtime's
        heartbeat (every third of ``ack_wait``) claims every first step that has run for a
        heartbeat, at its first beat with the server back: ``ack_wait`` after this
        connection found the server available is enough for that claim to be seen (as
        ``Connection.lease_lapsed``)."""
        return self.conn.options.ack_wait - self.conn.available_for()

    async def _keep_alive(self) -> None:
        """One sweep for all deliveries, twice per ``keepalive``: each one held longer than
        half of it is kept, so its first ``in_progress`` leaves at most ``keepalive`` after
        it arrived (a third of ``ack_wait``)."""
        half = self.keepalive / 2
        while self._started:
            await asyncio.sleep(half)
            due = time.monotonic() - half
            for delivery, started in list(self._started.items()):
                if started <= due and not delivery.settled:
                    await delivery.in_progress()


def _next_pause(pause: float, first: float = 0.1, cap: float = 2.0) -> float:
    return min(cap, pause * 2) if pause else first
