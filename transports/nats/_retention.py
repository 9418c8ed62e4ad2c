"""Journal retention on JetStream: remove the journals of routines that finished long ago.

A journal stream holds its messages in the order they were written, so every
journal with an entry older than the cut-off has one among the stream's first
messages: the pass reads the stream from its first sequence (batched direct
gets) until it meets a message newer than the cut-off. For each subject it
meets, the subject's last message says whether the routine finished and when;
a finished one older than the cut-off is purged (``STREAM.PURGE`` with a
subject filter), with its failure note, its start claim and (first: a kept start would
refuse a new start of the same routine id) its start in the starts stream. A running
routine's early entries are read again by each pass: that is the price of not keeping an
index. A second, shorter walk over the starts stream removes old starts that never got a
journal (set aside as poison) once its consumer has settled them.

JetStream's own ``max_age`` cannot do this: it would also drop the first
entries of routines that are still running.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dasync._errors import TransportError
from dasync.transports._contract import PurgeReport

from . import _naming as naming
from ._connection import ApiError, Connection, NoResponders, RawMsg

__all__ = ["purge_finished", "stored_at"]

_BATCH = 256
_PARALLEL = 32
"""Subjects judged (and purged) at once: each is a round trip or two, and a first pass
over a large backlog would otherwise take a millisecond or more per routine."""


@dataclass
class _Pass:
    conn: Connection
    stream: str
    starts: str
    """The service's starts stream (``naming.starts_stream``)."""
    cutoff: float
    finished: Callable[[bytes], bool]
    dry_run: bool
    seen: set[str] = field(default_factory=set)
    purged: int = 0
    running: int = 0
    recent: int = 0

    def report(self) -> PurgeReport:
        return PurgeReport(self.purged, self.running, self.recent)


async def purge_finished(
    conn: Connection,
    service: str,
    older_than: float,
    finished: Callable[[bytes], bool],
    *,
    dry_run: bool = False,
) -> PurgeReport:
    """One retention pass over the journals of ``service`` (see the module's docstring)."""
    ns = conn.options.namespace
    stream = naming.journal_stream(service, ns)
    state = await _stream_state(conn, stream)
    if state is None:
        return PurgeReport()
    starts = naming.starts_stream(service, ns)
    work = _Pass(conn, stream, starts, time.time() - older_than, finished, dry_run)
    await _walk_journals(work, state)
    await _walk_starts(work)
    return work.report()


async def _walk_journals(work: _Pass, state: dict[str, Any]) -> None:
    conn, stream = work.conn, work.stream
    seq = int(state.get("first_seq", 1) or 1)
    last = int(state.get("last_seq", 0) or 0)
    while seq <= last:
        page = await _page(conn, stream, seq)
        if not page:
            break
        old = [raw for raw in page if stored_at(raw) < work.cutoff]
        subjects = dict.fromkeys(raw.headers.get("Nats-Subject", raw.subject) for raw in old)
        for i in range(0, len(subjects), _PARALLEL):
            batch = list(subjects)[i : i + _PARALLEL]
            await asyncio.gather(*(_judge(work, subject) for subject in batch))
        if len(old) < len(page):
            break  # a message newer than the cut-off: everything after it is newer still
        seq = int(page[-1].headers.get("Nats-Sequence", str(last))) + 1


async def _walk_starts(work: _Pass) -> None:
    """Purge the old starts whose routine has no journal (it never committed a step: set
    aside, or its first step's worker died before) and that its workers settled (at or
    below the consumer's acknowledgement floor): they would refuse a new start forever."""
    conn = work.conn
    state = await _stream_state(conn, work.starts)
    if state is None:
        return  # a deployment of an older release: no starts stream
    try:
        info = await conn.api(f"CONSUMER.INFO.{work.starts}.{naming.WORK_CONSUMER}")
    except ApiError as exc:
        if exc.code == 404:
            return  # no worker consumes it yet: nothing was settled
        raise
    settled = int(((info.get("ack_floor") or {}).get("stream_seq")) or 0)
    seq = int(state.get("first_seq", 1) or 1)
    while seq <= settled:
        page = [raw for raw in await _page(conn, work.starts, seq) if _seq(raw) <= settled]
        old = [raw for raw in page if stored_at(raw) < work.cutoff]
        for i in range(0, len(old), _PARALLEL):
            await asyncio.gather(*(_judge_start(work, raw) for raw in old[i : i + _PARALLEL]))
        if not page or len(old) < len(page):
            break
        seq = _seq(page[-1]) + 1


async def _judge_start(work: _Pass, raw: RawMsg) -> None:
    subject = raw.headers.get("Nats-Subject", raw.subject)
    parts = subject.split(".")
    if len(parts) != 5:
        return
    journal = f"{parts[0]}.{parts[1]}.journal.{parts[4]}"
    if await _last(work.conn, work.stream, journal) is None and not work.dry_run:
        await _purge_start(work, subject)


def _seq(raw: RawMsg) -> int:
    return int(raw.headers.get("Nats-Sequence", "0") or 0)


async def _judge(work: _Pass, subject: str) -> None:
    """Decide once per subject met: purge a finished old journal, keep anything else."""
    journal = naming.journal_of_note(subject) or subject
    if journal in work.seen:
        return  # judged already (also while a batch judges a journal and its note at once)
    work.seen.add(journal)
    tip = await _last(work.conn, work.stream, journal)
    if tip is None:
        # a note of a routine whose start was set aside before it had a journal, or the
        # claim of a first step that never committed (its worker died): old ones go
        for orphan in (naming.note_of(journal), naming.claim_of(journal)):
            left = await _last(work.conn, work.stream, orphan)
            if left is not None and stored_at(left) < work.cutoff:
                await _purge(work, orphan)
                if orphan == naming.note_of(journal):
                    work.purged += 1
        return
    if not work.finished(tip.data):
        work.running += 1
    elif stored_at(tip) >= work.cutoff:
        work.recent += 1
    else:
        if not work.dry_run:  # first: a kept start without its journal refuses a new one
            await _purge_start(work, naming.start_of_journal(journal))
        await _purge(work, journal)
        await _purge(work, naming.claim_of(journal))
        if await _last(work.conn, work.stream, naming.note_of(journal)) is not None:
            await _purge(work, naming.note_of(journal))  # rare: a read costs less than a purge
        work.purged += 1


async def _purge_start(work: _Pass, subject: str) -> None:
    try:
        await work.conn.api(f"STREAM.PURGE.{work.starts}", {"filter": subject})
    except ApiError as exc:
        if exc.code != 404:  # (a deployment of an older release has no starts stream)
            raise


async def _purge(work: _Pass, subject: str) -> None:
    if not work.dry_run:
        await work.conn.api(f"STREAM.PURGE.{work.stream}", {"filter": subject})


async def _stream_state(conn: Connection, stream: str) -> dict[str, Any] | None:
    try:
        info = await conn.api(f"STREAM.INFO.{stream}")
    except ApiError as exc:
        if exc.code == 404:
            return None  # no routine of this service ever ran
        raise
    state = info.get("state")
    return state if isinstance(state, dict) else {}


async def _page(conn: Connection, stream: str, seq: int) -> list[RawMsg]:
    """Up to ``_BATCH`` messages of the stream from sequence ``seq`` on."""
    request = json.dumps({"seq": seq, "batch": _BATCH}).encode()
    inbox = await conn.subscribe()
    try:
        await conn.send(f"$JS.API.DIRECT.GET.{stream}", request, reply=inbox.subject)
        found: list[RawMsg] = []
        while True:
            item = await inbox.get(conn.options.request_timeout)
            if not isinstance(item, RawMsg):
                raise TransportError(f"reading {stream} for retention: timed out or disconnected")
            if not item.status:
                found.append(item)
            elif item.status in ("204", "404"):  # end of the batch, or nothing from seq on
                return found
            else:
                raise TransportError(f"reading {stream}: {item.status} {item.description}")
    finally:
        await inbox.close()


async def _last(conn: Connection, stream: str, subject: str) -> RawMsg | None:
    try:
        raw = await conn.request(f"$JS.API.DIRECT.GET.{stream}.{subject}")
    except NoResponders:
        raise TransportError(f"stream {stream} does not answer direct gets") from None
    if raw.status == "404":
        return None
    if raw.status:
        raise TransportError(f"reading the end of {subject}: {raw.status} {raw.description}")
    return raw


def stored_at(raw: RawMsg) -> float:
    """When the server stored a message (``Nats-Time-Stamp``, RFC 3339 with nanoseconds)."""
    stamp = raw.headers.get("Nats-Time-Stamp", "")
    if not stamp:
        raise TransportError(f"message on {raw.subject} has no Nats-Time-Stamp")
    head, dot, frac = stamp.rstrip("Z").partition(".")
    text = f"{head}.{(frac + '000000')[:6]}" if dot else head
    return datetime.fromisoformat(text + "+00:00").timestamp()
