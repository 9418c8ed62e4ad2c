"""The routine index on JetStream: a stream per service, one entry per routine.

``DASYNC_<S>_INDEX`` keeps a routine's entry on ``<root>.<S>.index.<R>.<status>.
<method>``: the status and method are in the subject so that the server filters
a listing by them (``next_by_subj`` of a batched direct get) and the client reads
only the entries it lists. A write is conditional on the last sequence over all of
the routine's subjects (``Nats-Expected-Last-Subject-Sequence-Subject:
<root>.<S>.index.<R>.>``), so concurrent writers of one routine settle by rank and
a late or repeated report never replaces a newer entry; the entry it replaced, on
another status's subject, is then purged (``keep: 1``), and a stale one that a crash
left in between goes with the routine's next write. Listing reads the stream from
its end backwards, in windows that double: the latest routines (what ``dasync ls``
shows by default) cost one request however large the index.

A stream rather than a KV bucket: a bucket is a stream with the same settings
(``KV_<bucket>``, ``max_msgs_per_subject``), but its name would not carry the
namespace and service the way every other dasync stream does, and permissions,
provisioning and ``docs/nats.md`` treat all streams alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from dasync._errors import TransportError
from dasync.transports._contract import RoutineEntry

from . import _naming as naming
from ._connection import STREAM_NOT_FOUND, WRONG_LAST_SEQUENCE, ApiError, Connection, NoResponders

if TYPE_CHECKING:
    from ._provision import Provisioner

_log = logging.getLogger("dasync.nats")

__all__ = [
    "NatsIndex",
    "decode_entry",
    "encode_entry",
    "index_filter",
    "index_root",
    "index_stream",
    "index_subject",
    "index_subjects",
]

_BATCH = 10_000
"""At most this many entries per direct-get request."""
_FIRST = 256
"""Sequences the first window reads: ``dasync ls`` shows the latest 50 by default."""
_PUT_TRIES = 20
_REMEMBERED = 10_000


def index_stream(service: str, namespace: str = "") -> str:
    return naming._stream(namespace, f"{naming.token(service)}_INDEX")


def index_root(service: str, routine_id: str, namespace: str = "") -> str:
    """The subjects of one routine's entries: ``<root>.<S>.index.<R>``, then the status
    and the method (the same routine token as its journal's)."""
    root = f"{naming._root(namespace)}.{naming.token(service)}"
    return f"{root}.index.{naming.token(routine_id, 200)}"


def index_subject(entry: RoutineEntry, namespace: str = "") -> str:
    """Where ``entry`` is kept: its status and method are subject tokens, so that a listing
    filtered by them is filtered by the server (``next_by_subj``)."""
    root = index_root(entry.service, entry.routine_id, namespace)
    return f"{root}.{entry.status}.{naming.token(entry.method or '-')}"


def index_filter(
    service: str, status: str | None = None, method: str | None = None, namespace: str = ""
) -> str:
    """The subjects of the entries in ``status`` running ``method`` (None: any)."""
    root = f"{naming._root(namespace)}.{naming.token(service)}"
    return f"{root}.index.*.{status or '*'}.{naming.token(method) if method else '*'}"


def index_subjects(service: str, namespace: str = "") -> list[str]:
    return [f"{naming._root(namespace)}.{naming.token(service)}.index.>"]


def encode_entry(entry: RoutineEntry) -> bytes:
    return orjson.dumps(entry)  # a dataclass, field by field (as ``asdict`` would, faster)


def decode_entry(data: bytes) -> RoutineEntry | None:
    """The entry in ``data``; ``None`` for anything a worker did not write."""
    try:
        fields: dict[str, Any] = orjson.loads(data)
        return RoutineEntry(**fields)
    except (orjson.JSONDecodeError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class _Kept:
    seq: int
    subject: str
    entry: RoutineEntry | None


class NatsIndex:
    """``RoutineIndex`` over a connection (``NatsStore`` delegates to it)."""

    def __init__(self, conn: Connection, provisioner: Provisioner) -> None:
        self.conn = conn
        self.provisioner = provisioner
        self.ns = conn.options.namespace
        self._written: OrderedDict[str, _Kept] = OrderedDict()
        """What this connection last wrote (or read) per routine: the next write of the
        routine (usually its completion) is conditional on it without reading it first."""
        self._purges: set[asyncio.Task[None]] = set()

    async def put(self, entry: RoutineEntry, *, first: bool = False) -> bool:
        """Publish ``entry`` conditional on the last sequence over all of the routine's
        subjects (``Nats-Expected-Last-Subject-Sequence-Subject``), then purge the entry it
        replaced if that one had another status (a subject of its own)."""
        await self.provisioner.index(entry.service)
        stream = index_stream(entry.service, self.ns)
        subject = index_subject(entry, self.ns)
        mine = index_root(entry.service, entry.routine_id, self.ns) + ".>"
        data = encode_entry(entry)
        # most writes are a routine's first (create-if-absent) or follow one of ours
        kept = self._written.pop(mine, None)
        if kept is None and entry.rank > 2 and not first:
            kept = await self._last(stream, mine)
        for _ in range(_PUT_TRIES):
            if kept is not None and kept.entry is not None and kept.entry.rank >= entry.rank:
                return False
            headers = {
                "Nats-Expected-Last-Subject-Sequence": str(0 if kept is None else kept.seq),
                "Nats-Expected-Last-Subject-Sequence-Subject": mine,
            }
            try:
                ack = await self.conn.publish(subject, data, headers)
            except ApiError as exc:
                if exc.err_code != WRONG_LAST_SEQUENCE:
                    raise
                kept = await self._last(stream, mine)
                continue
            self._remember(mine, _Kept(ack.seq, subject, entry))
            if kept is not None and kept.subject != subject:
                self._purge(stream, mine)
            return True
        raise TransportError(f"index entry of {entry.routine_id!r}: too many concurrent writers")

    def _purge(self, stream: str, mine: str) -> None:
        """Drop the routine's replaced entry (and any a crash left behind), in the background:
        the write that matters is done, and a listing prefers the higher rank meanwhile."""

        async def purge() -> None:
            try:
                await self.conn.api(f"STREAM.PURGE.{stream}", {"filter": mine, "keep": 1})
            except Exception as exc:  # the routine's next write purges again
                _log.warning("could not drop the replaced index entry %s: %r", mine, exc)

        task = asyncio.get_running_loop().create_task(purge())
        self._purges.add(task)
        task.add_done_callback(self._purges.discard)

    async def drain(self) -> None:
        """Wait for the background purges (before the connection closes)."""
        while self._purges:
            await asyncio.gather(*self._purges, return_exceptions=True)

    def _remember(self, mine: str, kept: _Kept) -> None:
        self._written[mine] = kept
        while len(self._written) > _REMEMBERED:
            self._written.popitem(last=False)

    async def get(self, service: str, routine_id: str) -> RoutineEntry | None:
        stream, mine = index_stream(service, self.ns), index_root(service, routine_id, self.ns)
        kept = await self._last(stream, mine + ".>")
        if kept is None:
            return None
        # the next put of this routine (a worker reads before it writes, e.g. a routine it
        # resumes after a restart) is conditional on what was read: no second read
        self._remember(mine + ".>", kept)
        return kept.entry

    async def _last(self, stream: str, subjects: str) -> _Kept | None:
        """The last message on ``subjects`` (a routine's), or None if it has none."""
        request = json.dumps({"last_by_subj": subjects}).encode()
        for _ in range(40):
            try:
                raw = await self.conn.request(f"$JS.API.DIRECT.GET.{stream}", request)
            except NoResponders:
                # no stream yet, or its direct-get responders are starting (just created)
                if await self.provisioner.stream_config(stream) is None:
                    return None
                await asyncio.sleep(0.05)
                continue
            if raw.status == "404":
                return None
            if raw.status:
                raise TransportError(f"reading {subjects}: {raw.status} {raw.description}")
            seq = int(raw.headers.get("Nats-Sequence", "0"))
            return _Kept(seq, raw.headers.get("Nats-Subject", ""), decode_entry(raw.data))
        raise TransportError(f"stream {stream} does not answer direct gets")

    async def pages(
        self,
        service: str,
        status: str | None = None,
        method: str | None = None,
        *,
        newest_first: bool = True,
    ) -> AsyncIterator[list[RoutineEntry]]:
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
        subjects = index_filter(service, status, method, self.ns)
        if not newest_first:  # one pass forwards: the server skips what the filter does not
            seq: int | None = first
            while seq is not None and seq <= hi:
                found, seq = await self._page(stream, subjects, seq, _BATCH)
                yield [e for _, data in found if (e := decode_entry(data)) is not None]
            return
        while hi >= first and int(state.get("messages", 0) or 0):
            lo = max(first, hi - width + 1)
            page: list[RoutineEntry] = []
            for _, data in await self._window(stream, subjects, lo, hi):
                entry = decode_entry(data)
                if entry is not None:
                    page.append(entry)
            page.reverse()
            yield page
            hi, width = lo - 1, min(width * 2, _BATCH)

    async def _window(
        self, stream: str, subjects: str, lo: int, hi: int
    ) -> list[tuple[int, bytes]]:
        """``(sequence, payload)`` of the messages on ``subjects`` with sequences in
        ``[lo, hi]`` (the server skips the others)."""
        found: list[tuple[int, bytes]] = []
        seq: int | None = lo
        while seq is not None and seq <= hi:
            page, seq = await self._page(stream, subjects, seq, hi - seq + 1)
            found.extend((s, d) for s, d in page if s <= hi)
            if page and page[-1][0] >= hi:
                break
        return found

    async def _page(
        self, stream: str, subjects: str, seq: int, batch: int
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
            ask = {"seq": seq, "batch": min(batch, _BATCH), "next_by_subj": subjects}
            request = json.dumps(ask).encode()
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
                        {"filter": index_root(service, routine_id, self.ns) + ".>"},
                    )
                    for routine_id in batch
                )
            )
