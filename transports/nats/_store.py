"""``JournalStore`` on JetStream: a journal stream per service, one subject per routine.

Entry ``i`` of a routine is the ``i``-th message on its subject and carries
``Dasync-Index: i``. Appending entry ``n`` publishes with
``Nats-Expected-Last-Subject-Sequence`` = stream sequence of entry ``n-1``
(0 for the first entry), so the server enforces the count-based optimistic
concurrency of the ``JournalStore`` protocol: a concurrent writer makes the
publish fail with "wrong last sequence", which becomes ``JournalConflict``.
The (count, last sequence) pair of recently used routines is cached; on a
miss one direct get of the subject's last message recovers it. ``load`` is a
batched direct get (one round trip per 1,000 entries).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import TypeVar

from dasync._errors import JournalConflict, TransportError, TransportRefused
from dasync.transports._contract import PurgeReport, RoutineEntry

from . import _naming as naming
from ._connection import WRONG_LAST_SEQUENCE, ApiError, Connection, NoResponders, RawMsg
from ._index import NatsIndex
from ._provision import Provisioner
from ._retention import purge_finished, stored_at

__all__ = ["NatsStore"]

INDEX = "Dasync-Index"
ENTRIES = "Dasync-Entries"
"""On a failure note: how many entries the routine's journal had when it was written."""
_PAGE = 1000
_DIRECT_RETRIES = 40
T = TypeVar("T")


class _NoAnswer(Exception):
    """No responder for a direct get."""


class NatsStore:
    """Append-only journals with optimistic concurrency, one subject per routine."""

    def __init__(self, conn: Connection, provisioner: Provisioner | None = None) -> None:
        self.conn = conn.retain()
        self.provisioner = provisioner or Provisioner(conn)
        self._ns = conn.options.namespace
        self._tips: OrderedDict[tuple[str, str], tuple[int, int]] = OrderedDict()
        self._secrets: dict[str, bytes] = {}
        self._closed = False
        self._index = NatsIndex(self.conn, self.provisioner)

    # --- reading --------------------------------------------------------------------------

    async def load(self, service: str, routine_id: str) -> list[bytes]:
        self._check_open()
        stream = naming.journal_stream(service, self._ns)
        subject = naming.journal_subject(service, routine_id, self._ns)
        # one cheap request first: most loads are of routines that do not exist yet (a new
        # call checked for duplicates) or have one entry; only longer journals are paged
        tip = await self._last(service, routine_id)
        if tip is None:
            return []
        if _index(tip) == 0:
            self._remember(service, routine_id, 1, int(tip.headers.get("Nats-Sequence", "0")))
            return [tip.data]
        entries: list[bytes] = []
        start, last_seq = 1, 0
        while True:
            answer = await self._direct(service, partial(self._page, stream, subject, start))
            if answer is None:
                return []  # no journal stream: no routine of this service ever ran
            page, pending = answer
            for raw in page:
                index = _index(raw)
                if index != len(entries):
                    raise TransportError(
                        f"journal of {routine_id!r} ({subject}) is corrupt: entry {len(entries)} "
                        f"has {INDEX} {index}"
                    )
                entries.append(raw.data)
                last_seq = int(raw.headers.get("Nats-Sequence", "0"))
            if not page or pending == 0:
                break
            start = last_seq + 1
        if entries:
            self._remember(service, routine_id, len(entries), last_seq)
        return entries

    async def _page(self, stream: str, subject: str, start: int) -> tuple[list[RawMsg], int]:
        """Up to ``_PAGE`` entries from sequence ``start`` on, and how many remain after them."""
        request = json.dumps({"seq": start, "next_by_subj": subject, "batch": _PAGE}).encode()
        inbox = await self.conn.subscribe()
        try:
            await self.conn.send(f"$JS.API.DIRECT.GET.{stream}", request, reply=inbox.subject)
            found: list[RawMsg] = []
            while True:
                item = await inbox.get(self.conn.options.request_timeout)
                if item is None:
                    raise TransportError(f"reading {subject}: timed out")
                if not isinstance(item, RawMsg):
                    raise TransportError(f"reading {subject}: connection lost")
                status = item.status
                if not status:
                    found.append(item)
                elif status == "204":  # end of batch
                    return found, int(item.headers.get("Nats-Num-Pending", "0") or 0)
                elif status == "404":
                    return found, 0
                elif status == "503":
                    raise _NoAnswer
                else:
                    raise TransportError(f"reading {subject}: {status} {item.description}")
        finally:
            await inbox.close()

    async def _tip(self, service: str, routine_id: str) -> tuple[int, int]:
        """(entries, stream sequence of the last one) of a routine's journal."""
        raw = await self._last(service, routine_id)
        if raw is None:
            return 0, 0
        return _index(raw) + 1, int(raw.headers.get("Nats-Sequence", "0"))

    async def _last(self, service: str, routine_id: str) -> RawMsg | None:
        """The last entry of a routine's journal (one request), or None if it has none."""
        return await self._last_on(service, naming.journal_subject(service, routine_id, self._ns))

    async def _last_on(self, service: str, subject: str) -> RawMsg | None:
        """The last message on ``subject`` of the journal stream, or None if it has none."""
        stream = naming.journal_stream(service, self._ns)

        async def last() -> RawMsg:
            try:
                return await self.conn.request(f"$JS.API.DIRECT.GET.{stream}.{subject}")
            except NoResponders:
                raise _NoAnswer from None

        raw = await self._direct(service, last)
        if raw is None or raw.status == "404":
            return None
        if raw.status:
            raise TransportError(f"reading the end of {subject}: {raw.status} {raw.description}")
        return raw

    async def _direct(self, service: str, read: Callable[[], Awaitable[T]]) -> T | None:
        """Run a direct get; ``None`` if the journal stream does not exist.

        Nobody answers a direct get when the stream does not exist, and also for
        a moment after another process created it (its responders start a little
        later), or if direct get is off (an older stream): retry briefly then.
        """
        stream = naming.journal_stream(service, self._ns)
        for _ in range(_DIRECT_RETRIES):
            try:
                return await read()
            except _NoAnswer:
                config = await self.provisioner.stream_config(stream)
                if config is None:
                    return None
                if not config.get("allow_direct"):
                    self.provisioner.forget_journal(service)
                    await self.provisioner.journal(service)  # turns direct get on
                await asyncio.sleep(0.05)
        raise TransportError(f"stream {stream} does not answer direct gets")

    # --- writing --------------------------------------------------------------------------

    async def claim(self, service: str, routine_id: str, owner: str) -> bool:
        """Lease the first step of a routine to ``owner`` for ``ack_wait`` seconds.

        True if the lease is ``owner``'s (new, taken over from a holder that let it lapse,
        or already held: then renewed); False while another worker holds it.
        """
        return await self.claim_start(service, routine_id, owner) != "busy"

    async def claim_start(self, service: str, routine_id: str, owner: str) -> str:
        """``StartClaims``: ``new`` if this is the first claim ever of the routine (so it has
        no journal: the claim sits next to it and goes with it), ``held`` if ``owner``
        holds the lease now (renewed, or taken over from a holder that let it lapse; the
        journal may exist), ``busy`` while another worker holds it.

        The claim is one message on ``naming.claim_subject`` in the journal stream, written
        with an expected last sequence: create-if-absent, then compare-and-swap.
        """
        self._check_open()
        await self.provisioner.journal(service)
        stream = naming.journal_stream(service, self._ns)
        subject = naming.claim_subject(service, routine_id, self._ns)
        headers = {"Nats-Expected-Last-Subject-Sequence": "0", "Nats-Expected-Stream": stream}
        try:
            await self.conn.publish(subject, owner.encode(), headers)
            return "new"
        except ApiError as exc:
            if exc.err_code != WRONG_LAST_SEQUENCE:
                raise
        holder = await self._last_on(service, subject)
        if holder is None:
            return "busy"  # purged in between (a retention pass): the next delivery decides
        lapsed = self.conn.lease_lapsed(stored_at(holder))
        if holder.data != owner.encode() and not lapsed:
            return "busy"
        # ours (a redelivery to the same worker) or lapsed: renew or take it over, unless it
        # changed hands in between
        renew = dict(headers)
        renew["Nats-Expected-Last-Subject-Sequence"] = holder.headers.get("Nats-Sequence", "0")
        try:
            await self.conn.publish(subject, owner.encode(), renew)
        except ApiError as exc:
            if exc.err_code != WRONG_LAST_SEQUENCE:
                raise
            return "busy"
        return "held"

    # --- a service's private state ---------------------------------------------------------

    async def secret(self, service: str) -> bytes:
        """The key of ``service``'s message ids: the first worker's random bytes, kept."""
        known = self._secrets.get(service)
        if known is not None:
            return known
        self._check_open()
        await self.provisioner.state(service)
        subject = naming.state_subject(service, "secret", self._ns)
        for _ in range(3):
            fresh = secrets.token_bytes(32)
            seq, _ = await self._state_put(service, subject, fresh, expected=0)
            if seq:
                self._secrets[service] = fresh
                return fresh
            current = await self._state_get(service, subject)
            if current is not None:
                self._secrets[service] = current[1]
                return current[1]
        raise TransportError(f"cannot read or create the key of service {service}")

    async def record_crash(self, service: str, key: str) -> int:
        """Count one more unfinished run of ``key`` (a conditional write: workers may race)."""
        self._check_open()
        await self.provisioner.state(service)
        subject = naming.state_subject(service, f"crash:{key}", self._ns)
        while True:
            current = await self._state_get(service, subject)
            seq, count = (current[0], int(current[1] or b"0")) if current else (0, 0)
            written, _ = await self._state_put(service, subject, str(count + 1).encode(), seq)
            if written:
                return count

    async def forget_crash(self, service: str, key: str) -> None:
        self._check_open()
        await self.provisioner.state(service)
        await self.conn.publish(
            naming.state_subject(service, f"crash:{key}", self._ns),
            b"0",
            {"Nats-Expected-Stream": naming.state_stream(service, self._ns)},
        )

    async def _state_get(self, service: str, subject: str) -> tuple[int, bytes] | None:
        stream = naming.state_stream(service, self._ns)
        raw = await self.conn.request(f"$JS.API.DIRECT.GET.{stream}.{subject}")
        if raw.status == "404":
            return None
        if raw.status:
            raise TransportError(f"reading {subject}: status {raw.status}")
        return int(raw.headers.get("Nats-Sequence", "0")), raw.data

    async def _state_put(
        self, service: str, subject: str, data: bytes, expected: int
    ) -> tuple[int, bytes]:
        """``(sequence, data)`` if written after the subject's message ``expected``, else 0."""
        headers = {
            "Nats-Expected-Last-Subject-Sequence": str(expected),
            "Nats-Expected-Stream": naming.state_stream(service, self._ns),
        }
        try:
            ack = await self.conn.publish(subject, data, headers)
        except ApiError as exc:
            if exc.err_code != WRONG_LAST_SEQUENCE:
                raise
            return 0, b""
        return ack.seq, data

    async def append(self, service: str, routine_id: str, entry: bytes, expected: int) -> None:
        self._check_open()
        key = (service, routine_id)
        await self.provisioner.journal(service)
        if expected == 0:
            last_seq = 0
        else:
            count, last_seq = self._tips.get(key, (-1, 0))
            if count > expected:
                raise JournalConflict(
                    f"journal of {routine_id!r} has {count} entries or more, expected {expected}"
                )
            if count != expected:
                count, last_seq = await self._tip(service, routine_id)
                if count != expected:
                    self._forget(key)
                    raise JournalConflict(
                        f"journal of {routine_id!r} has {count} entries, expected {expected}"
                    )
        headers = {
            "Nats-Expected-Last-Subject-Sequence": str(last_seq),
            "Nats-Expected-Stream": naming.journal_stream(service, self._ns),
            INDEX: str(expected),
        }
        subject = naming.journal_subject(service, routine_id, self._ns)
        try:
            ack = await self.conn.publish(subject, entry, headers)
        except ApiError as exc:
            self._forget(key)
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise JournalConflict(
                    f"journal of {routine_id!r} changed: another worker appended entry {expected}"
                ) from None
            raise
        except BaseException:
            self._forget(key)  # the append may or may not have happened
            raise
        self._remember(service, routine_id, expected + 1, ack.seq)

    # --- failure notes and retention ----------------------------------------------------

    async def note_failure(self, service: str, routine_id: str, entries: int, note: bytes) -> None:
        self._check_open()
        await self.provisioner.journal(service)
        await self.conn.publish(
            naming.failure_note_subject(service, routine_id, self._ns),
            note,
            {
                "Nats-Expected-Stream": naming.journal_stream(service, self._ns),
                ENTRIES: str(entries),
            },
        )

    async def noted_failure(self, service: str, routine_id: str) -> tuple[int, bytes] | None:
        self._check_open()
        raw = await self._last_on(
            service, naming.failure_note_subject(service, routine_id, self._ns)
        )
        if raw is None:
            return None
        try:
            return int(raw.headers[ENTRIES]), raw.data
        except (KeyError, ValueError):
            return None  # not written by a worker: ignore it

    async def forget_failure(self, service: str, routine_id: str) -> None:
        self._check_open()
        stream = naming.journal_stream(service, self._ns)
        subject = naming.failure_note_subject(service, routine_id, self._ns)
        try:
            await self.conn.api(f"STREAM.PURGE.{stream}", {"filter": subject})
        except ApiError as exc:
            if exc.code != 404:  # no journal stream: nothing to forget
                raise

    async def purge_finished(
        self,
        service: str,
        older_than: float,
        finished: Callable[[bytes], bool],
        *,
        dry_run: bool = False,
    ) -> PurgeReport:
        self._check_open()
        report = await purge_finished(self.conn, service, older_than, finished, dry_run=dry_run)
        if report.purged and not dry_run:
            for key in [k for k in self._tips if k[0] == service]:
                self._forget(key)  # a purged journal may be started again from empty
            await self._purge_index(service, older_than)
        return report

    async def _purge_index(self, service: str, older_than: float) -> None:
        """Drop the index entries of routines whose journals the pass removed: finished
        before the cut-off, and no journal left (a start repeated since keeps its entry)."""
        cutoff = time.time() - older_than
        old = [
            e.routine_id
            for status in ("completed", "failed", "cancelled")  # finished ones only
            async for page in self._index.pages(service, status, newest_first=False)
            for e in page
            if (e.ended or e.updated) < cutoff
        ]
        gone = [r for r in old if await self._last(service, r) is None]
        await self._index.remove(service, gone)

    # --- the routine index (``_index.py``) ------------------------------------------------

    @property
    def index_hold(self) -> float:
        return self.conn.options.index_hold

    async def index_put(self, entry: RoutineEntry, *, first: bool = False) -> bool:
        self._check_open()
        return await self._index.put(entry, first=first)

    async def index_get(self, service: str, routine_id: str) -> RoutineEntry | None:
        self._check_open()
        return await self._index.get(service, routine_id)

    def index_pages(
        self,
        service: str,
        *,
        status: str | None = None,
        method: str | None = None,
        newest_first: bool = True,
    ) -> AsyncIterator[list[RoutineEntry]]:
        self._check_open()
        return self._index.pages(service, status, method, newest_first=newest_first)

    async def index_services(self) -> list[str]:
        self._check_open()
        return await self._index.services()

    async def index_remove(self, service: str, routine_ids: list[str]) -> None:
        self._check_open()
        await self._index.remove(service, routine_ids)

    # --- cache ----------------------------------------------------------------------------

    def _remember(self, service: str, routine_id: str, count: int, seq: int) -> None:
        key = (service, routine_id)
        known = self._tips.get(key)
        if known is not None and known[0] > count:
            return  # a load raced with a newer append of ours
        self._tips[key] = (count, seq)
        self._tips.move_to_end(key)
        while len(self._tips) > max(1, self.conn.options.journal_cache):
            self._tips.popitem(last=False)

    def _forget(self, key: tuple[str, str]) -> None:
        self._tips.pop(key, None)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._index.drain()
            await self.conn.release()

    def _check_open(self) -> None:
        if self._closed or self.conn.closed:
            raise TransportRefused("the NATS journal store is closed")


def _index(raw: RawMsg) -> int:
    try:
        return int(raw.headers[INDEX])
    except (KeyError, ValueError):
        raise TransportError(
            f"message {raw.headers.get('Nats-Sequence', '?')} on {raw.subject} is not a dasync "
            f"journal entry (no {INDEX} header)"
        ) from None
