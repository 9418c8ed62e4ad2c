"""The routine index on JetStream: a stream per service, one subject per routine.

``DASYNC_<S>_INDEX`` keeps the last message of each subject only
(``max_msgs_per_subject: 1``), so the stream *is* the set of current entries:
listing a service reads the whole stream with batched direct gets (one
request per ``_BATCH`` entries), never a journal. A write is conditional on
the subject's last sequence (``Nats-Expected-Last-Subject-Sequence``), so
concurrent writers of one routine settle by rank and a late or repeated
report never replaces a newer entry.

A stream rather than a KV bucket: a bucket is a stream with the same settings
(``KV_<bucket>``, ``max_msgs_per_subject``), but its name would not carry the
namespace and service the way every other dasync stream does, and permissions,
provisioning and ``docs/nats.md`` treat all streams alike.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import orjson

from dasync._errors import TransportError
from dasync.transports._contract import RoutineEntry

from . import _naming as naming
from ._connection import STREAM_NOT_FOUND, WRONG_LAST_SEQUENCE, ApiError, Connection, NoResponders

if TYPE_CHECKING:
    from ._provision import Provisioner

__all__ = [
    "NatsIndex",
    "decode_entry",
    "encode_entry",
    "index_stream",
    "index_subject",
    "index_subjects",
]

_BATCH = 10_000
"""At most this many entries per direct-get request."""
_FIRST = 256
"""Sequences the first window reads: ``dasync ls`` shows the latest 50 by default."""
_PUT_TRIES = 20


def index_stream(service: str, namespace: str = "") -> str:
    return naming._stream(namespace, f"{naming.token(service)}_INDEX")


def index_subject(service: str, routine_id: str, namespace: str = "") -> str:
    """One subject per routine: its current index entry (the same token as its journal)."""
    return (
        f"{naming._root(namespace)}.{naming.token(service)}.index.{naming.token(routine_id, 200)}"
    )


def index_subjects(service: str, namespace: str = "") -> list[str]:
    return [f"{naming._root(namespace)}.{naming.token(service)}.index.*"]


def encode_entry(entry: RoutineEntry) -> bytes:
    return orjson.dumps(asdict(entry))


def decode_entry(data: bytes) -> RoutineEntry | None:
    """The entry in ``data``; ``None`` for anything a worker did not write."""
    try:
        fields: dict[str, Any] = orjson.loads(data)
        return RoutineEntry(**fields)
    except (orjson.JSONDecodeError, TypeError):
        return None


class NatsIndex:
    """``RoutineIndex`` over a connection (``NatsStore`` delegates to it)."""

    def __init__(self, conn: Connection, provisioner: Provisioner) -> None:
        self.conn = conn
        self.provisioner = provisioner
        self.ns = conn.options.namespace

    async def put(self, entry: RoutineEntry) -> bool:
        await self.provisioner.index(entry.service)
        stream = index_stream(entry.service, self.ns)
        subject = index_subject(entry.service, entry.routine_id, self.ns)
        data = encode_entry(entry)
        expected = 0  # most writes are a routine's first: try create-if-absent first
        if entry.rank > 2:
            kept = await self._last(stream, subject)
            expected = 0 if kept is None else kept[0]
            if kept is not None and kept[1] is not None and kept[1].rank >= entry.rank:
                return False
        for _ in range(_PUT_TRIES):
            headers = {"Nats-Expected-Last-Subject-Sequence": str(expected)}
            headers["Nats-Expected-Stream"] = stream
            try:
                await self.conn.publish(subject, data, headers)
                return True
            except ApiError as exc:
                if exc.err_code != WRONG_LAST_SEQUENCE:
                    raise
            kept = await self._last(stream, subject)
            if kept is None:
                expected = 0
                continue
            if kept[1] is not None and kept[1].rank >= entry.rank:
                return False
            expected = kept[0]
        raise TransportError(f"index entry of {entry.routine_id!r}: too many concurrent writers")

    async def get(self, service: str, routine_id: str) -> RoutineEntry | None:
        kept = await self._last(
            index_stream(service, self.ns), index_subject(service, routine_id, self.ns)
        )
        return None if kept is None else kept[1]

    async def _last(self, stream: str, subject: str) -> tuple[int, RoutineEntry | None] | None:
        """``(sequence, entry)`` of the subject's message, or None if it has none."""
        for _ in range(40):
            try:
                raw = await self.conn.request(f"$JS.API.DIRECT.GET.{stream}.{subject}")
            except NoResponders:
                # no stream yet, or its direct-get responders are starting (just created)
                if await self.provisioner.stream_config(stream) is None:
                    return None
                await asyncio.sleep(0.05)
                continue
            if raw.status == "404":
                return None
            if raw.status:
                raise TransportError(f"reading {subject}: {raw.status} {raw.description}")
            return int(raw.headers.get("Nats-Sequence", "0")), decode_entry(raw.data)
        raise TransportError(f"stream {stream} does not answer direct gets")

    async def pages(self, service: str) -> AsyncIterator[list[RoutineEntry]]:
        """The entries, newest first: windows of stream sequences read from the end, each
        twice as wide as the one before (the first: ``_FIRST`` sequences), so the latest
        routines cost one request and the whole index a few."""
        stream = index_stream(service, self.ns)
        try:
            info = await self.conn.api(f"STREAM.INFO.{stream}")
        except ApiError as exc:
            if exc.err_code == STREAM_NOT_FOUND or exc.code == 404:
                return
            raise
        state = info.get("state") or {}
        first, hi = int(state.get("first_seq", 1) or 1), int(state.get("last_seq", 0) or 0)
        width = _FIRST
        while hi >= first and int(state.get("messages", 0) or 0):
            lo = max(first, hi - width + 1)
            page: list[RoutineEntry] = []
            for _, data in await self._window(stream, lo, hi):
                entry = decode_entry(data)
                if entry is not None:
                    page.append(entry)
            page.reverse()
            yield page
            hi, width = lo - 1, min(width * 2, _BATCH)

    async def _window(self, stream: str, lo: int, hi: int) -> list[tuple[int, bytes]]:
        """``(sequence, payload)`` of the messages whose sequences are in ``[lo, hi]``."""
        found: list[tuple[int, bytes]] = []
        seq: int | None = lo
        while seq is not None and seq <= hi:
            page, seq = await self._page(stream, seq, hi - seq + 1)
            found.extend((s, d) for s, d in page if s <= hi)
            if page and page[-1][0] >= hi:
                break
        return found

    async def _page(
        self, stream: str, seq: int, batch: int
    ) -> tuple[list[tuple[int, bytes]], int | None]:
        """``(sequence, payload)`` of up to ``batch`` messages from ``seq`` on, and where the
        next page starts (None: the end). A callback collects them: the queue and message
        objects of ``Inbox`` would cost more than the entries themselves."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int | None] = loop.create_future()
        found: list[tuple[int, bytes]] = []

        async def on_msg(msg: Any) -> None:
            headers = msg.headers or {}
            if msg.data:
                found.append((int(headers.get("Nats-Sequence", "0") or 0), msg.data))
                return
            status = str(headers.get("Status", ""))
            if done.done():
                return
            if status == "204":
                pending = int(headers.get("Nats-Num-Pending", "0") or 0)
                last = int(headers.get("Nats-Last-Sequence", "0") or 0)
                done.set_result(last + 1 if pending and last else None)
            elif status == "404":
                done.set_result(None)
            else:
                done.set_exception(TransportError(f"reading {stream}: status {status}"))

        nc = self.conn.nc
        inbox = nc.new_inbox()
        with self.conn.mapped(f"read the index {stream}"):
            sub = await nc.subscribe(inbox, cb=on_msg, pending_msgs_limit=batch * 2 + 16)
        try:
            request = json.dumps({"seq": seq, "batch": min(batch, _BATCH)}).encode()
            await nc.publish(f"$JS.API.DIRECT.GET.{stream}", request, reply=inbox)
            try:
                async with asyncio.timeout(self.conn.options.request_timeout * 4):
                    next_seq = await done
            except TimeoutError:
                raise TransportError(f"reading {stream}: timed out") from None
        finally:
            await sub.unsubscribe()
        return found, next_seq

    async def services(self) -> list[str]:
        """Services with an index stream in this namespace, from the streams' metadata."""
        names: set[str] = set()
        offset = 0
        while True:
            answer = await self.conn.api("STREAM.LIST", {"offset": offset})
            streams = answer.get("streams") or []
            for info in streams:
                meta = (info.get("config") or {}).get("metadata") or {}
                if (
                    meta.get("dasync.kind") == "index"
                    and meta.get("dasync.namespace", "") == self.ns
                ):
                    names.add(str(meta.get("dasync.service", "")))
            offset += len(streams)
            if not streams or offset >= int(answer.get("total", 0) or 0):
                break
        return sorted(n for n in names if n)

    async def remove(self, service: str, routine_ids: list[str]) -> None:
        stream = index_stream(service, self.ns)
        for i in range(0, len(routine_ids), 32):
            batch = routine_ids[i : i + 32]
            await asyncio.gather(
                *(
                    self.conn.api(
                        f"STREAM.PURGE.{stream}",
                        {"filter": index_subject(service, routine_id, self.ns)},
                    )
                    for routine_id in batch
                )
            )
