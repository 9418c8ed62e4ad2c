"""Idempotent creation of the streams and consumers dasync uses (see docs/nats.md).

``declare`` may run in every worker at every start: creating an existing
stream with the same configuration is a no-op on the server. A process never
changes a stream that exists: a different configuration is reported (the
stream, both values, the fix) and the stream kept; only the provisioner
(``update=True``, ``dasync nats-provision``) applies new settings. Results are
remembered per connection so the hot path (``send``, ``append``) never
provisions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from dasync._errors import TransportError
from dasync.transports._contract import is_inbox, split_inbox

from . import _naming as naming
from ._connection import STREAM_NOT_FOUND, ApiError, Connection
from ._index import index_stream, index_subjects

__all__ = ["Provisioner"]

STREAM_NAME_IN_USE = 10058

_log = logging.getLogger("dasync.nats")

_COMPARED = (
    "subjects",
    "retention",
    "num_replicas",
    "max_age",
    "duplicate_window",
    "max_msgs_per_subject",
    "discard",
    "discard_new_per_subject",
    "allow_direct",
    "allow_msg_schedules",
    "storage",
)
"""The settings of a stream whose difference matters (the rest are descriptions)."""

_SETTING_OF = {
    "num_replicas": "$DASYNC_NATS_REPLICAS",
    "max_age": "$DASYNC_NATS_ACK_WAIT (claims), $DASYNC_NATS_INBOX_MAX_AGE, "
    "$DASYNC_NATS_EVENT_MAX_AGE",
    "duplicate_window": "$DASYNC_NATS_DUPLICATE_WINDOW",
}


def _differences(existing: dict[str, Any], wanted: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{setting: (existing, wanted)}`` for the settings of ``_COMPARED`` that differ."""
    found: dict[str, tuple[Any, Any]] = {}
    for key in _COMPARED:
        if key not in wanted:
            continue
        theirs, ours = existing.get(key), wanted[key]
        if isinstance(ours, list):
            same = sorted(theirs or []) == sorted(ours)
        else:
            same = theirs == ours or (theirs is None and ours in (False, 0))
        if not same:
            found[key] = (theirs, ours)
    return found


_NS = 1_000_000_000


def _ns(seconds: float) -> int:
    return int(seconds * _NS)


class Provisioner:
    """Creates (once per connection) the stream and consumer behind each queue and journal."""

    def __init__(self, conn: Connection, *, update: bool = False) -> None:
        self.conn = conn
        self.update = update
        """Bring existing streams to this configuration (the provisioner only)."""
        self.options = conn.options
        self.ns = conn.options.namespace
        self._done: dict[str, asyncio.Future[None]] = {}
        self._journals: set[str] = set()
        """Services whose journal stream is known to exist (``forget_journal`` drops one)."""
        self._indexes: set[str] = set()

    @property
    def schedules(self) -> bool:
        """Whether delayed messages use the server's scheduler (NATS 2.12+)."""
        return self.options.use_schedules and self.conn.server_version >= (2, 12, 0)

    # --- public ---------------------------------------------------------------------------

    async def topic(self, topic: str, *, own: bool = True) -> None:
        """The event stream of the service that publishes ``topic`` exists.

        ``own=False`` (a subscriber): create it if missing, never change it; only its
        publisher may (``docs/security.md``: no user administers another's streams).
        """
        service, _ = naming.split_topic(topic)
        name = naming.event_stream(service, self.ns)
        await self._once("stream:" + name, lambda: self._event_stream(service, own))

    async def queue(self, queue: str, *, consumer: bool = True) -> None:
        """The stream and (``consumer``) the shared durable consumer of ``queue`` exist.

        A caller declares its callee's stream only (the callee's workers create their
        consumer, which reads the stream from its start): messages wait in it.
        """
        if naming.is_group_queue(queue):
            topic, group = naming.parse_group_queue(queue)
            await self.topic(topic, own=False)
            await self._once("consumer:" + queue, lambda: self._group_consumer(topic, group))
        elif is_inbox(queue):
            identity, _ = split_inbox(queue)
            await self._once(
                "stream:" + naming.inbox_stream(identity, self.ns),
                lambda: self._inbox_stream(identity),
            )
            if consumer:
                await self._once("consumer:" + queue, lambda: self._inbox_consumer(queue))
        else:
            await self._once(
                "stream:" + naming.work_stream(queue, self.ns), lambda: self._work_stream(queue)
            )
            await self.starts(queue)
            if consumer:
                await self._once("consumer:" + queue, lambda: self._work_consumer(queue))
                await self._once("starts-consumer:" + queue, lambda: self._starts_consumer(queue))

    async def starts(self, service: str) -> None:
        """The stream of ``service``'s starts of calls between services exists (one message
        per routine: ``naming.start_subject``)."""
        name = naming.starts_stream(service, self.ns)
        await self._once("stream:" + name, lambda: self._starts_stream(service))

    async def lane(self, queue: str, lane: str) -> None:
        """The consumer of worker ``lane`` of service ``queue`` exists (its stream does)."""
        await self._once(f"lane:{queue}:{lane}", lambda: self._lane_consumer(queue, lane))

    def forget_lane(self, queue: str, lane: str) -> None:
        self._done.pop(f"lane:{queue}:{lane}", None)

    async def has_lanes(self, queue: str) -> bool:
        """Whether the work stream of ``queue`` takes worker lanes: a stream created before
        them keeps its subjects until ``dasync nats-provision`` updates it."""
        config = await self.stream_config(naming.work_stream(queue, self.ns))
        return naming.lanes_filter(queue, self.ns) in ((config or {}).get("subjects") or ())

    async def journal(self, service: str) -> None:
        """The journal stream of ``service`` exists (with direct get enabled)."""
        if service in self._journals:
            return  # the hot path: every claim and append asks
        name = naming.journal_stream(service, self.ns)
        await self._once("stream:" + name, lambda: self._journal_stream(service))
        self._journals.add(service)

    def forget(self, queue: str) -> None:
        """Provision again next time (the consumer or stream was deleted under us)."""
        self._done.pop("consumer:" + queue, None)
        self._done.pop("starts-consumer:" + queue, None)
        if naming.is_group_queue(queue):
            service, _ = naming.split_topic(naming.parse_group_queue(queue)[0])
            self._done.pop("stream:" + naming.event_stream(service, self.ns), None)
            return
        stream = self.stream_of(queue)
        self._done.pop("stream:" + stream, None)
        if not is_inbox(queue):
            self._done.pop("stream:" + naming.starts_stream(queue, self.ns), None)

    def forget_starts(self, service: str) -> None:
        """Provision the starts stream and its consumer again next time (deleted under us)."""
        self._done.pop("stream:" + naming.starts_stream(service, self.ns), None)
        self._done.pop("starts-consumer:" + service, None)

    async def index(self, service: str) -> None:
        """The routine index stream of ``service`` exists (``_index.py``)."""
        if service in self._indexes:
            return
        name = index_stream(service, self.ns)
        await self._once("stream:" + name, lambda: self._index_stream(service))
        self._indexes.add(service)

    async def state(self, service: str) -> None:
        """The private state stream of ``service`` exists (its key, crash counts)."""
        name = naming.state_stream(service, self.ns)
        await self._once("stream:" + name, lambda: self._state_stream(service))

    def forget_journal(self, service: str) -> None:
        self._journals.discard(service)
        self._done.pop("stream:" + naming.journal_stream(service, self.ns), None)

    def known(self, stream: str) -> bool:
        """Whether this connection declared ``stream`` (so it exists, or did)."""
        fut = self._done.get("stream:" + stream)
        return fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None

    def stream_of(self, queue: str) -> str:
        """The stream behind a service queue or client inbox, in this namespace."""
        if is_inbox(queue):
            return naming.inbox_stream(split_inbox(queue)[0], self.ns)
        return naming.work_stream(queue, self.ns)

    def metadata(self, kind: str, service: str | None = None) -> dict[str, str]:
        meta = {"dasync.kind": kind}
        if service is not None:
            meta["dasync.service"] = service
        if self.ns:
            meta["dasync.namespace"] = self.ns
        return meta

    async def stream_config(self, name: str) -> dict[str, Any] | None:
        """The configuration of stream ``name``, or ``None`` if it does not exist."""
        try:
            info = await self.conn.api(f"STREAM.INFO.{name}")
        except ApiError as exc:
            if exc.err_code == STREAM_NOT_FOUND or exc.code == 404:
                return None
            raise
        config = info.get("config")
        return config if isinstance(config, dict) else {}

    # --- once -----------------------------------------------------------------------------

    async def _once(self, key: str, create: Callable[[], Awaitable[None]]) -> None:
        fut = self._done.get(key)
        if fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None:
            return  # the hot path: provisioned already
        if fut is None or (fut.done() and (fut.cancelled() or fut.exception() is not None)):
            fut = self._done[key] = asyncio.ensure_future(create())
        try:
            await asyncio.shield(fut)
        except BaseException:
            if fut.done() and self._done.get(key) is fut:
                del self._done[key]
            raise

    # --- streams --------------------------------------------------------------------------

    async def _stream(self, config: dict[str, Any], *, own: bool = True) -> None:
        """Create the stream ``config`` describes, or accept the one that exists.

        A process never changes a stream that exists (whoever declared last would decide
        its settings, and a client at the defaults would scale a cluster's streams down):
        a difference in the settings that matter is logged, naming the stream, both values
        and the fix. Only the provisioner (``update=True``, ``dasync nats-provision``)
        brings an existing stream to new settings.
        """
        name = config["name"]
        config.setdefault("storage", "file")
        config.setdefault("num_replicas", self.options.replicas)
        config.setdefault("discard", "old")
        try:
            await self.conn.api(f"STREAM.CREATE.{name}", config)
            return
        except ApiError as exc:
            if exc.err_code != STREAM_NAME_IN_USE:
                raise TransportError(f"cannot create stream {name}: {exc.description}") from exc
        if not (own and self.update):
            existing = await self.stream_config(name)
            for key, (theirs, ours) in _differences(existing or {}, config).items():
                _log.warning(
                    "stream %s exists with %s=%r; this process asks for %r and keeps the "
                    "stream as it is (set the same value everywhere, e.g. %s, and run "
                    "'dasync nats-provision' to change it)",
                    name, key, theirs, ours, _SETTING_OF.get(key, "the same NatsOptions"),
                )  # fmt: skip
            return
        try:
            await self.conn.api(f"STREAM.UPDATE.{name}", config)
        except ApiError as upd:
            raise TransportError(
                f"stream {name} exists with an incompatible configuration: {upd.description}"
            ) from upd

    async def _work_stream(self, service: str) -> None:
        config: dict[str, Any] = {
            "name": naming.work_stream(service, self.ns),
            "description": f"dasync: calls, replies, timers and cancels for service {service}",
            "subjects": naming.work_subjects(service, self.ns),
            "retention": "workqueue",
            "duplicate_window": _ns(self.options.duplicate_window),
            "metadata": self.metadata("work", service),
        }
        if self.schedules:
            config["allow_msg_schedules"] = True
        await self._stream(config)

    async def _starts_stream(self, service: str) -> None:
        # a limits stream: an acknowledged start stays (and keeps refusing copies of itself,
        # err_code 10077) until the retention pass purges it with its routine's journal; no
        # max_age, which would drop the start of a workflow that runs for longer
        await self._stream(
            {
                "name": naming.starts_stream(service, self.ns),
                "description": f"dasync: the starts of calls to service {service}, one per "
                "routine, kept as long as its journal",
                "subjects": [naming.start_subjects(service, namespace=self.ns)],
                "retention": "limits",
                "max_msgs_per_subject": 1,
                "discard": "new",
                "discard_new_per_subject": True,
                "allow_direct": True,  # (the retention pass reads its old starts)
                "duplicate_window": _ns(self.options.duplicate_window),
                "metadata": self.metadata("starts", service),
            }
        )

    async def _journal_stream(self, service: str) -> None:
        await self._stream(
            {
                "name": naming.journal_stream(service, self.ns),
                "description": f"dasync: routine journals of service {service}, a subject each",
                "subjects": naming.journal_subjects(service, self.ns),
                "retention": "limits",
                "allow_direct": True,
                "max_msgs_per_subject": -1,
                "metadata": self.metadata("journal", service),
            }
        )

    async def _index_stream(self, service: str) -> None:
        await self._stream(
            {
                "name": index_stream(service, self.ns),
                "description": f"dasync: the index of {service} routines (status, method, "
                "times, parent), one subject each holding its current entry",
                "subjects": index_subjects(service, self.ns),
                "retention": "limits",
                "allow_direct": True,
                "max_msgs_per_subject": 1,
                "metadata": self.metadata("index", service),
            }
        )

    async def _state_stream(self, service: str) -> None:
        await self._stream(
            {
                "name": naming.state_stream(service, self.ns),
                "description": f"dasync: what the workers of {service} keep for themselves "
                "(the key of its message ids, counts of runs that crashed a worker)",
                "subjects": naming.state_subjects(service, self.ns),
                "retention": "limits",
                "allow_direct": True,
                "max_msgs_per_subject": 1,
                "metadata": self.metadata("state", service),
            }
        )

    async def _event_stream(self, service: str, own: bool = True) -> None:
        await self._stream(
            {
                "name": naming.event_stream(service, self.ns),
                "description": f"dasync: domain events published by service {service}",
                "subjects": naming.event_subjects(service, self.ns),
                "retention": "limits",
                "max_age": _ns(self.options.event_max_age),
                "duplicate_window": _ns(self.options.duplicate_window),
                "metadata": self.metadata("events", service),
            },
            own=own,
        )

    async def _inbox_stream(self, identity: str) -> None:
        await self._stream(
            {
                "name": naming.inbox_stream(identity, self.ns),
                "description": f"dasync: replies to the clients of identity {identity}, "
                "a subject per inbox and replying service",
                "subjects": naming.inbox_subjects(identity, self.ns),
                "retention": "workqueue",
                "max_age": _ns(self.options.inbox_max_age),
                "duplicate_window": _ns(
                    min(self.options.duplicate_window, self.options.inbox_max_age)
                ),
                "metadata": {**self.metadata("inboxes"), "dasync.identity": identity},
            }
        )

    # --- consumers ------------------------------------------------------------------------

    async def _consumer(self, stream: str, config: dict[str, Any]) -> None:
        name = config["durable_name"]
        config.setdefault("name", name)
        config.setdefault("deliver_policy", "all")
        config.update(ack_policy="explicit", replay_policy="instant")
        config.setdefault("max_deliver", -1)
        config.setdefault("ack_wait", _ns(self.options.ack_wait))
        try:
            await self.conn.api(
                f"CONSUMER.CREATE.{stream}.{name}", {"stream_name": stream, "config": config}
            )
        except ApiError as exc:
            raise TransportError(
                f"cannot create consumer {name} on stream {stream}: {exc.description}"
            ) from exc

    async def _work_consumer(self, service: str) -> None:
        await self._consumer(
            naming.work_stream(service, self.ns),
            {
                "durable_name": naming.WORK_CONSUMER,
                "description": f"dasync: the workers of service {service} (competing consumers)",
                "filter_subject": naming.inputs_filter(service, self.ns),
                "max_ack_pending": self.options.max_ack_pending,
            },
        )

    async def _starts_consumer(self, service: str) -> None:
        await self._consumer(
            naming.starts_stream(service, self.ns),
            {
                "durable_name": naming.WORK_CONSUMER,
                "description": f"dasync: the workers of service {service} (the starts of calls "
                "from other services)",
                "max_ack_pending": self.options.max_ack_pending,
            },
        )

    async def _lane_consumer(self, service: str, lane: str) -> None:
        # deleted by the server once nobody pulls it (its worker gone, its lane drained);
        # a worker taking over a lane that still holds messages creates it again
        await self._consumer(
            naming.work_stream(service, self.ns),
            {
                "durable_name": naming.lane_consumer(lane),
                "description": f"dasync: one worker of service {service} (its routines' replies "
                "and timers)",
                "filter_subject": naming.lane_filter(service, lane, self.ns),
                "inactive_threshold": _ns(self.options.lane_inactive),
                "max_ack_pending": self.options.max_ack_pending,
            },
        )

    async def _group_consumer(self, topic: str, group: str) -> None:
        # "new": a group subscribed for the first time starts with the next event; once it
        # exists, it resumes where it left off (catch-up after downtime)
        await self._consumer(
            naming.event_stream(naming.split_topic(topic)[0], self.ns),
            {
                "durable_name": naming.group_consumer(topic, group),
                "description": f"dasync: {group} handling event {topic}",
                "filter_subject": naming.event_subject(topic, self.ns),
                "deliver_policy": "new",
                "max_ack_pending": self.options.max_ack_pending,
            },
        )

    async def _inbox_consumer(self, queue: str) -> None:
        await self._consumer(
            self.stream_of(queue),
            {
                "durable_name": naming.inbox_consumer(queue),
                "description": "dasync: one client's replies",
                "filter_subject": naming.inbox_filter(queue, self.ns),
                "inactive_threshold": _ns(self.options.inbox_inactive),
                "max_ack_pending": 10_000,
            },
        )
