"""``Transport`` on NATS JetStream: a work-queue stream per service, a shared inbox stream.

``send`` is a JetStream publish with ``Nats-Msg-Id`` (server-side dedupe
within ``duplicate_window``). A delayed message becomes a server-side schedule
(``Nats-Schedule: @at ...``, NATS 2.12+) on its own subject of the service's
stream, which the server turns into a normal work message when due; without
scheduler support it is published at once and the consumer naks it until due.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time

from dasync._errors import TransportError, TransportRefused, UnknownService
from dasync.transports._contract import DeadLetter, Handler, Message, Origin, is_inbox

from . import _envelope as env
from . import _naming as naming
from ._connection import ApiError, Connection, NoResponders, PermissionDenied
from ._consume import PullConsumer
from ._dead import list_dead_letters, redeliver_dead_letter, retry_dead_letter
from ._inputs import ServiceInputs
from ._lanes import LanedSubscription
from ._provision import Provisioner

__all__ = ["NatsTransport"]

STARTS_RECHECK = 60.0
"""Seconds a caller sends calls to a service without a starts stream (an older release's,
or one its permissions do not let it use) on their lane before it looks again."""

MAX_MSGS_PER_SUBJECT = 10077
"""The server's error for a second message on a subject of a stream that keeps one and
refuses others (``discard_new_per_subject``): a start stored already."""

_STORED, _KEPT_ALREADY, _ON_LANE = "stored", "kept already", "on lane"
"""What became of a call's start sent to a starts stream (``NatsTransport._send_start``)."""

INBOX_PATIENCE = 10.0
"""Seconds a reply keeps trying an inbox stream that does not answer (a leader election
lasts 4-9 s on a 3-node cluster) before its client is taken for gone."""


def _subject(queue: str, origin: Origin | None, ns: str) -> str:
    """The subject that says who sends: the server lets only that sender publish on it."""
    if is_inbox(queue):
        sender = origin.name if origin is not None and origin.kind == Origin.SERVICE else "-"
        return naming.inbox_subject(queue, sender, ns)
    if origin is None:
        return naming.work_subject(queue, ns)
    if origin.kind == Origin.SERVICE:
        return naming.call_subject(queue, origin.name, ns)
    if origin.kind == Origin.CLIENT:
        return naming.client_subject(queue, origin.name, ns)
    if origin.kind == Origin.OPERATOR:
        return naming.operator_subject(queue, ns)
    raise ValueError(f"cannot send as {origin}")


_log = logging.getLogger("dasync.nats")


def _schedule_target(headers: dict[str, str], subject: str, target: str) -> str:
    """The subject to publish on once ``target`` replaces a worker lane: a schedule's stays
    (its target header changes), a direct publish's is the target itself."""
    if "Nats-Schedule-Target" in headers:
        headers["Nats-Schedule-Target"] = target
        return subject
    return target


class NatsTransport:
    """Durable queues on JetStream; see ``docs/nats.md`` for every name and setting."""

    def __init__(self, conn: Connection, provisioner: Provisioner | None = None) -> None:
        self.identity = conn.options.identity
        self.ack_wait = conn.options.ack_wait
        """How long a dead worker's delivery (and lease) lasts: the runtime renews leases of
        long first steps well within it."""
        self.conn = conn.retain()
        self.provisioner = provisioner or Provisioner(conn)
        self._consumers: list[PullConsumer | LanedSubscription | ServiceInputs] = []
        self.lane = secrets.token_hex(8) if conn.options.lanes else ""
        """This transport's worker lane (``Affinity``), the same for every service it consumes."""
        self._laned: dict[str, str] = {}
        """The services consumed here whose stream takes worker lanes: their lane."""
        self._closed = False
        self._fallback_logged = False
        self._seen: set[str] = set()
        """Streams a publish of this transport reached: one that stops answering is
        electing a leader (retry), not gone (no lookup that would wait a full timeout)."""
        self._lane_starts: dict[str, float] = {}
        """Services whose calls go on the sender's lane, not their starts stream (it does not
        exist, or may not be used), until the time given: then it is looked up again."""

    async def declare(self, queue: str) -> None:
        self._check_open()
        await self.provisioner.queue(queue, consumer=False)
        self._lane_starts.pop(queue, None)  # its starts stream exists now

    def lane_of(self, queue: str) -> str:
        """``Affinity``: the lane this worker pulls for ``queue`` (``""`` if none)."""
        return self._laned.get(queue, "")

    async def send_at(self, queue: str, lane: str, message: Message, origin: Origin) -> None:
        """``Affinity``: send to worker ``lane`` of service ``queue``; its shared queue if
        its stream has no lanes (created by an older release)."""
        self._check_open()
        try:
            naming.check_lane(lane)
        except ValueError:  # not a lane this release makes (a caller's own doing): shared
            lane = ""
        await self._send(queue, message, origin, "" if is_inbox(queue) else lane)

    async def send(self, queue: str, message: Message, origin: Origin | None = None) -> None:
        self._check_open()
        if (
            message.once
            and origin is not None
            and origin.kind == Origin.SERVICE
            and message.deliver_at is None
            and not is_inbox(queue)
        ):
            kept = await self._send_start(queue, message, origin.name)
            if kept == _STORED:
                return
            if kept == _KEPT_ALREADY:  # its workers send the journal's outcome again, if any
                message = dataclasses.replace(message, headers={**message.headers, env.KEPT: "1"})
        await self._send(queue, message, origin, "")

    async def _send_start(self, queue: str, message: Message, sender: str) -> str:
        """Store a call's start as the one message of its routine in ``queue``'s starts
        stream (``naming.start_subject``): ``_STORED``, ``_KEPT_ALREADY`` (a copy is kept),
        or ``_ON_LANE`` (the stream cannot be used: send it on the sender's lane)."""
        ns = self.conn.options.namespace
        stream = naming.starts_stream(queue, ns)
        if not await self._starts_usable(queue, stream):
            return _ON_LANE
        headers = dict(message.headers)
        headers[env.NATS_MSG_ID] = message.msg_id
        headers["Nats-Expected-Stream"] = stream
        subject = naming.start_subject(queue, sender, message.once, ns)
        try:
            await self.conn.publish(subject, message.body, headers)
        except ApiError as exc:
            if exc.err_code == MAX_MSGS_PER_SUBJECT:
                # stored already (a resend after the dedupe window, or a routine id started
                # again before its callee's journal was removed): that copy runs the routine
                return _KEPT_ALREADY
            raise
        except PermissionDenied as exc:
            self._lane_starts[queue] = time.monotonic() + STARTS_RECHECK
            _log.warning(
                "%s may not publish the starts of its calls to %s (%s): they go on its lane, "
                "with a claim each; regenerate the NATS permissions (dasync nats-permissions)",
                sender, queue, exc,
            )  # fmt: skip
            return _ON_LANE
        except NoResponders:
            raise TransportError(f"stream {stream} did not answer a publish to {subject}") from None
        self._seen.add(stream)
        return _STORED

    async def _starts_usable(self, queue: str, stream: str) -> bool:
        """Whether ``queue`` has a starts stream (looked up once, so that a missing one
        costs no publish that would find no responders)."""
        if stream in self._seen or self.provisioner.known(stream):
            return True
        until = self._lane_starts.get(queue)
        if until is not None and time.monotonic() < until:
            return False
        try:
            found = await self.provisioner.stream_config(stream) is not None
        except PermissionDenied:
            found = False
        if found:
            self._seen.add(stream)
            self._lane_starts.pop(queue, None)
        else:
            self._lane_starts[queue] = time.monotonic() + STARTS_RECHECK
            _log.info(
                "%s has no starts stream (workers of an older dasync, or not deployed yet): "
                "calls to it go on their sender's lane",
                queue,
            )
        return found

    async def _send(self, queue: str, message: Message, origin: Origin | None, lane: str) -> None:
        """Publish until stored: a worker lane's target falls back to its shared lane."""
        ns = self.conn.options.namespace
        inbox = is_inbox(queue)
        shared = _subject(queue, origin, ns)
        target = naming.lane_subject(shared, lane) if lane else shared
        stream = self.provisioner.stream_of(queue)
        headers = dict(message.headers)
        headers[env.NATS_MSG_ID] = message.msg_id
        headers["Nats-Expected-Stream"] = stream
        subject = target
        due = message.deliver_at
        if due is not None and due > time.time():
            headers[env.DELIVER_AT] = repr(due)
            if not inbox and self.provisioner.schedules:
                subject = naming.schedule_subject(queue, message.msg_id, ns)
                headers[env.MSG_ID] = message.msg_id
                headers["Nats-Schedule"] = env.at_spec(due)
                headers["Nats-Schedule-Target"] = target
        loop = asyncio.get_running_loop()
        patience = loop.time() + INBOX_PATIENCE
        delay = 0.1
        while True:
            try:
                await self._publish(queue, subject, target, message.body, headers)
                self._seen.add(stream)
                return
            except NoResponders:
                if target != shared:  # a stream without worker lanes: its shared queue
                    target = shared
                    subject = _schedule_target(headers, subject, shared)
                    continue
            # nobody answered for the stream: it does not exist, or (on a cluster) it is
            # electing a leader. A stream known to exist is retried by the caller at once;
            # an inbox's stream (its client's alone: no one else may look it up) a while here
            if stream in self._seen or self.provisioner.known(stream):
                if not inbox:
                    raise TransportError(f"stream {stream} did not answer a publish to {subject}")
            elif not inbox:
                if await self.provisioner.stream_config(stream) is None:
                    raise UnknownService(f"no service or inbox named {queue!r} is deployed")
                raise TransportError(f"stream {stream} did not answer a publish to {subject}")
            if loop.time() + delay > patience:
                raise UnknownService(f"no inbox {queue!r} answers: its client is gone")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _publish(
        self, queue: str, subject: str, target: str, body: bytes, headers: dict[str, str]
    ) -> None:
        try:
            await self.conn.publish(subject, body, headers)
        except ApiError as exc:
            if subject == target:
                raise
            self._log_fallback(queue, exc)
            for key in ("Nats-Schedule", "Nats-Schedule-Target", env.MSG_ID):
                headers.pop(key, None)
            await self.conn.publish(target, body, headers)

    async def consume(
        self, queue: str, handler: Handler, *, concurrency: int = 64
    ) -> PullConsumer | LanedSubscription | ServiceInputs:
        self._check_open()
        await self.provisioner.queue(queue)
        inbox = is_inbox(queue)
        ns = self.conn.options.namespace

        def pull(lane: str = "", *, starts: bool = False) -> PullConsumer:
            return PullConsumer(
                self.conn,
                self.provisioner,
                queue,
                handler,
                concurrency,
                stream=naming.starts_stream(queue, ns)
                if starts
                else self.provisioner.stream_of(queue),
                consumer=naming.lane_consumer(lane)
                if lane
                else naming.inbox_consumer(queue)
                if inbox
                else naming.WORK_CONSUMER,
                dead_subject=None if inbox else naming.dead_subject(queue, ns),
                delete_on_stop=inbox,
                lane=lane,
                unique=starts,
            )

        shared = pull()
        if inbox:
            shared.start()
            self._consumers.append(shared)
            return shared
        main: PullConsumer | LanedSubscription = shared
        if self.lane and await self._lanes_for(queue):
            main = LanedSubscription(self.conn, self.provisioner, shared, self.lane, pull)
            await main.start()
            self._laned[queue] = self.lane
        else:
            shared.start()
        inputs = ServiceInputs(main, pull(starts=True))
        inputs.starts.start()
        self._consumers.append(inputs)
        return inputs

    async def _lanes_for(self, queue: str) -> bool:
        if await self.provisioner.has_lanes(queue):
            return True
        _log.warning(
            "the stream of %s has no worker lanes (it was created by an older dasync): "
            "replies reach any of its workers; run 'dasync nats-provision' to add them",
            queue,
        )
        return False

    async def services(self) -> list[str]:
        """The services of this namespace whose queue exists (needs ``STREAM.LIST``)."""
        self._check_open()
        ns = self.conn.options.namespace
        found: list[str] = []
        offset = 0
        while True:
            page = await self.conn.api(
                "STREAM.LIST", {"offset": offset, "subject": naming.any_inputs_filter(ns)}
            )
            streams = page.get("streams") or []
            for info in streams:
                meta = (info.get("config") or {}).get("metadata") or {}
                if meta.get("dasync.kind") == "work" and meta.get("dasync.service"):
                    found.append(meta["dasync.service"])
            offset += len(streams)
            if not streams or offset >= int(page.get("total", 0)):
                return found

    async def dead_letters(self, queue: str) -> list[DeadLetter]:
        self._check_open()
        return await list_dead_letters(self.conn, queue)

    async def retry_dead_letter(self, queue: str, letter_id: str) -> None:
        self._check_open()
        await retry_dead_letter(self.conn, queue, letter_id)

    async def redeliver_dead_letter(self, queue: str, letter: DeadLetter, handler: Handler) -> None:
        self._check_open()
        await redeliver_dead_letter(self.conn, queue, letter, handler)

    async def declare_topic(self, topic: str) -> None:
        self._check_open()
        await self.provisioner.topic(topic)

    async def publish(self, topic: str, message: Message) -> None:
        self._check_open()
        ns = self.conn.options.namespace
        service, _ = naming.split_topic(topic)
        stream = naming.event_stream(service, ns)
        headers = dict(message.headers)
        headers[env.NATS_MSG_ID] = message.msg_id
        headers["Nats-Expected-Stream"] = stream
        try:
            await self.conn.publish(naming.event_subject(topic, ns), message.body, headers)
        except NoResponders:
            if await self.provisioner.stream_config(stream) is None:
                raise UnknownService(f"no service declares the event {topic!r}") from None
            raise TransportError(f"stream {stream} did not answer a publish of {topic}") from None

    async def subscribe(
        self, topic: str, group: str, handler: Handler, *, concurrency: int = 64
    ) -> PullConsumer:
        self._check_open()
        ns = self.conn.options.namespace
        queue = naming.group_queue(topic, group)
        await self.provisioner.queue(queue)
        consumer = PullConsumer(
            self.conn,
            self.provisioner,
            queue,
            handler,
            concurrency,
            stream=naming.event_stream(naming.split_topic(topic)[0], ns),
            consumer=naming.group_consumer(topic, group),
            # poison events are kept with the subscribing service's dead letters
            dead_subject=naming.dead_subject(group.partition(".")[0], ns),
            # only the publishing service may publish on its event stream
            origin=Origin.service(naming.split_topic(topic)[0]),
        )
        consumer.start()
        self._consumers.append(consumer)
        return consumer

    async def close(self) -> None:
        """Stop pulling, let handlers finish (``close_timeout``), hand back the rest, disconnect."""
        if self._closed:
            return
        self._closed = True
        for consumer in self._consumers:
            await consumer.stop()
        for consumer in self._consumers:
            await consumer.drain(self.conn.options.close_timeout)
        self._consumers.clear()
        await self.conn.release()

    def kill(self) -> None:
        """Simulate ``kill -9`` of this worker (tests): unacknowledged messages get redelivered."""
        self._closed = True
        for consumer in self._consumers:
            consumer.kill()
        self._consumers.clear()
        self.conn.abort()

    def _check_open(self) -> None:
        if self._closed or self.conn.closed:
            raise TransportRefused("the NATS transport is closed")

    def _log_fallback(self, queue: str, exc: ApiError) -> None:
        if not self._fallback_logged:
            self._fallback_logged = True
            _log.warning(
                "stream of %s refused a scheduled message (%s); delaying by redelivery instead",
                queue,
                exc.description,
            )
