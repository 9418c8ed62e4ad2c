"""The routine index: an observer that keeps one entry per routine as routines commit.

Only a change of status is written: the first step (running), a retry marker
(retrying), the step after one (running again), the completion (completed,
failed, cancelled) and a message set aside (parked, dead-lettered). A routine
that runs and completes costs two writes, or one if its first step completes
it. Each write carries a rank derived from the journal position it reports, and
the store keeps the highest, so a report repeated after a redelivery
(``resent``) or arriving late from a slow worker never moves a routine back.

What a later write needs from the start (method, start time, parent) is
remembered per routine in a bounded cache; on a miss it is read from the
index, and only when the index has nothing either from the journal's first
entry.

**A first step that leaves its routine running is held back** for up to
``hold`` s (``RoutineIndex.index_hold``; 0: never): a routine that completes, or
changes status, within it costs one write instead of two and no purge of the
superseded entry. The start's delivery is acknowledged only once the held entry,
or a later one of the routine, is written, so a crash still leaves nothing
behind: the redelivery finds the step committed and reports it at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._clock import Clock, SystemClock
from .._engine import Complete, StepRecord, decode_step
from .._engine import Start as StartInput
from ..transports import JournalStore, RoutineEntry, RoutineIndex

__all__ = [
    "FINISHED",
    "IndexObserver",
    "RoutineFilter",
    "STATUSES",
    "failure_summary",
    "find_entry",
    "list_entries",
    "parent_of",
    "status_of_completion",
]

STATUSES = ("running", "completed", "failed", "cancelled", "retrying", "parked", "dead-lettered")
FINISHED = frozenset({"completed", "failed", "cancelled"})
"""Statuses whose journal ends with a completion: final, and what retention removes."""

_CANCELLED = ("asyncio.exceptions:CancelledError", "asyncio:CancelledError")
_CACHE = 10_000

_log = logging.getLogger("dasync.index")


def rank_of_step(index: int) -> int:
    """Journal entry ``index`` committed: ranks 2, 4, 6... (the journal's length, doubled)."""
    return (index + 1) * 2


def rank_of_aside(entries: int) -> int:
    """A message set aside while the journal had ``entries``: after the step that made it
    that long (odd ranks), before the next step (a retried letter running)."""
    return entries * 2 + 1


def parent_of(meta: Mapping[str, str]) -> str:
    """``Service/routine_id`` of the routine that called this one, from its start's meta."""
    caller = meta.get("caller", "")
    kind, _, name = caller.partition(":")
    routine = meta.get("reply_routine", "")
    if kind == "service" and routine:
        return f"{name}/{routine}"
    return ""


def failure_summary(payload: bytes, limit: int = 200) -> str:
    """``Type: message`` of a failure payload's root exception, without rebuilding it."""
    try:
        data = json.loads(payload)
        root = data["exceptions"][0] if "exceptions" in data else data
        kind = str(root.get("type", "?")).rpartition(":")[2] or "?"
        message = str(root.get("message", ""))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return "undecodable failure"
    text = f"{kind}: {message}" if message else kind
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failure_type(payload: bytes) -> str:
    try:
        data = json.loads(payload)
        root = data["exceptions"][0] if "exceptions" in data else data
        return str(root.get("type", ""))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ""


def status_of_completion(done: Complete) -> str:
    if done.ok:
        return "completed"
    return "cancelled" if failure_type(done.payload) in _CANCELLED else "failed"


class _Read:
    """``_decide``'s answer when the routine's kept entry must be read first."""


_READ = _Read()


@dataclass(slots=True)
class _Held:
    """A routine's first entry, not written yet: ``written`` resolves once it, or a later
    entry of the routine, is in the index (the start's delivery waits for it)."""

    entry: RoutineEntry
    due: float
    written: asyncio.Future[None]


class IndexObserver:
    """Keeps the store's ``RoutineIndex`` as the worker commits (a ``RoutineObserver``, and
    an ``AlongsideObserver``: its write goes out with the step's messages)."""

    def __init__(
        self,
        store: JournalStore,
        clock: Clock | None = None,
        cache_size: int = _CACHE,
        hold: float | None = None,
    ) -> None:
        if not isinstance(store, RoutineIndex):
            raise TypeError(f"{type(store).__name__} keeps no routine index")
        self.store = store
        self.index: RoutineIndex = store
        self.clock = clock or SystemClock()
        self.hold = float(getattr(store, "index_hold", 0.0) if hold is None else hold)
        """Seconds a first "running" entry may wait for the routine's next status."""
        self.writes = 0
        """Index entries written (for tests and benchmarks)."""
        self._known: OrderedDict[tuple[str, str], RoutineEntry] = OrderedDict()
        self._cache_size = cache_size
        self._held: dict[tuple[str, str], _Held] = {}
        """In the order they fell due (one ``hold`` for all)."""
        self._sweeper: asyncio.Task[None] | None = None

    async def committed(
        self, service: str, routine_id: str, index: int, record: StepRecord, *, resent: bool
    ) -> None:
        entry = await self._entry_for(service, routine_id, index, record)
        if entry is not None:
            await self._put(entry)

    def committed_fresh(
        self, service: str, routine_id: str, index: int, record: StepRecord
    ) -> asyncio.Future[Any] | None:
        """A step committed just now, reported without holding the worker up: the future
        (None: nothing to write) is the write, under way, that the delivery's
        acknowledgement waits for. A first step that leaves its routine running is held
        back (module docstring)."""
        key = (service, routine_id)
        decided = self._decide(service, routine_id, index, record, self._known.get(key))
        loop = asyncio.get_running_loop()
        if isinstance(decided, _Read):  # not cached: read the kept entry first
            report = self.committed(service, routine_id, index, record, resent=False)
            return loop.create_task(report)
        if decided is None:
            return None
        if self.hold > 0 and index == 0 and decided.status == "running":
            held = self._held.get(key)
            if held is None:
                due = loop.time() + self.hold
                held = self._held[key] = _Held(decided, due, loop.create_future())
            self._remember(decided)  # the next steps see it running and write nothing
            if self._sweeper is None or self._sweeper.done():
                self._sweeper = loop.create_task(self._sweep())
            return held.written
        return loop.create_task(self._put(decided))

    def drop(self) -> None:
        """Forget what is held back, as a killed process would (its starts come back)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for held in self._held.values():
            held.written.cancel()
        self._held.clear()

    async def flush(self) -> None:
        """Write every held entry now (the worker is stopping)."""
        held = list(self._held.values())
        self._held.clear()
        if held:
            await asyncio.gather(*(self._write_held(h) for h in held))

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while self._held:
            first = next(iter(self._held.values()))
            wait = first.due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            now = loop.time()
            due = [k for k, h in self._held.items() if h.due <= now]
            batch = [self._held.pop(k) for k in due]
            await asyncio.gather(*(self._write_held(h) for h in batch))

    async def _write_held(self, held: _Held) -> None:
        try:
            await self._put(held.entry, first=True)
        except Exception as exc:  # the start is redelivered and reports its step again
            _log.info("index entry of %s not written: %r", held.entry.routine_id, exc)
            if not held.written.done():
                held.written.set_exception(exc)
            return
        if not held.written.done():
            held.written.set_result(None)

    async def _entry_for(
        self, service: str, routine_id: str, index: int, record: StepRecord
    ) -> RoutineEntry | None:
        """What the index should now say of the routine (None: what it says stands)."""
        known = self._known.get((service, routine_id))
        decided = self._decide(service, routine_id, index, record, known)
        if not isinstance(decided, _Read):
            return decided
        known = await self._previous(service, routine_id)
        decided = self._decide(service, routine_id, index, record, known)
        if not isinstance(decided, _Read):
            return decided
        base = await self._from_journal(service, routine_id)
        return self._status(base, rank_of_step(index), record)

    def _decide(
        self,
        service: str,
        routine_id: str,
        index: int,
        record: StepRecord,
        known: RoutineEntry | None,
    ) -> RoutineEntry | None | _Read:
        """``_entry_for`` from what is at hand: ``_READ`` if the kept entry must be read."""
        rank = rank_of_step(index)
        if index == 0 and isinstance(record.input, StartInput):
            start = record.input
            entry = RoutineEntry(
                service,
                routine_id,
                "running",
                method=start.meta.get("method", ""),
                started=start.at,
                parent=parent_of(start.meta),
                caller=start.meta.get("caller", ""),
                rank=rank,
            )
            return self._status(entry, rank, record)
        if known is None:
            return _READ
        if known.rank >= rank:
            return None  # reported already (a redelivery), or a later step was
        if record.completion is None and record.postponed is None and known.status == "running":
            self._remember(known)
            return None  # no change of status: nothing to write
        return self._status(known, rank, record)

    def _status(self, entry: RoutineEntry, rank: int, record: StepRecord) -> RoutineEntry:
        done = record.completion
        if done is not None:
            at = getattr(record.input, "at", 0.0) or self.clock.now()
            status = status_of_completion(done)
            error = "" if done.ok else failure_summary(done.payload)
            return _with(entry, status, rank, error=error, ended=at, finished=True)
        if record.postponed is not None:
            return _with(entry, "retrying", rank, error=record.postponed.error[:200])
        if entry.status == "running" and entry.rank == rank and not entry.error:
            return entry
        return _with(entry, "running", rank, error="")

    async def set_aside(
        self, service: str, routine_id: str, entries: int, reason: str, *, told: bool
    ) -> None:
        known = await self._previous(service, routine_id)
        if known is not None and known.status in FINISHED:
            return  # a stray message of a finished routine: the routine is not stuck
        entry = known or await self._from_journal(service, routine_id)
        status = "dead-lettered" if told else "parked"
        summary = reason if len(reason) <= 200 else reason[:199] + "…"
        await self._put(_with(entry, status, rank_of_aside(entries), error=summary))

    # --- internals ------------------------------------------------------------------------

    async def _put(self, entry: RoutineEntry, *, first: bool = False) -> None:
        """Write ``entry``; a held first entry of the routine is then superseded (and its
        start may be acknowledged): ``first``, nothing of the routine was written by us."""
        key = (entry.service, entry.routine_id)
        held = self._held.pop(key, None)
        if held is not None and held.entry.rank > entry.rank:
            self._held[key] = held  # (not expected: ranks only grow) leave it be
            held = None
        entry = _replace(entry, updated=self.clock.now())
        try:
            written = await self.index.index_put(entry, first=first or held is not None)
        except BaseException:
            if held is not None and not held.written.done():
                self._held[key] = held  # still to be written, at its time or with the next
            raise
        if written:
            self.writes += 1
            self._remember(entry)
        else:  # a newer entry is kept (another worker's): read it when next needed
            self._known.pop(key, None)
        if held is not None and not held.written.done():
            held.written.set_result(None)

    async def _previous(self, service: str, routine_id: str) -> RoutineEntry | None:
        known = self._known.get((service, routine_id))
        if known is None:
            known = await self.index.index_get(service, routine_id)
        return known

    async def _from_journal(self, service: str, routine_id: str) -> RoutineEntry:
        """An entry for a routine the index does not know (started before it was kept)."""
        entries = await self.store.load(service, routine_id)
        start = decode_step(entries[0]).input if entries else None
        if isinstance(start, StartInput):
            return RoutineEntry(
                service,
                routine_id,
                "running",
                method=start.meta.get("method", ""),
                started=start.at,
                parent=parent_of(start.meta),
                caller=start.meta.get("caller", ""),
            )
        return RoutineEntry(service, routine_id, "running")

    def _remember(self, entry: RoutineEntry) -> None:
        key = (entry.service, entry.routine_id)
        self._known[key] = entry
        self._known.move_to_end(key)
        while len(self._known) > self._cache_size:
            self._known.popitem(last=False)


def _with(entry: RoutineEntry, status: str, rank: int, **changes: object) -> RoutineEntry:
    return _replace(entry, status=status, rank=rank, **changes)


_ENTRY_FIELDS = tuple(f.name for f in dataclasses.fields(RoutineEntry))


def _replace(entry: RoutineEntry, **changes: object) -> RoutineEntry:
    """``dataclasses.replace`` without its per-call introspection (two per commit)."""
    values = [changes.pop(name) if name in changes else getattr(entry, name)
              for name in _ENTRY_FIELDS]  # fmt: skip
    if changes:
        raise TypeError(f"RoutineEntry has no fields {sorted(changes)}")
    return RoutineEntry(*values)  # type: ignore[arg-type]


# --- reading the index --------------------------------------------------------------------


@dataclass(frozen=True)
class RoutineFilter:
    """What ``dasync ls`` / ``Client.list_routines`` select; ``None`` matches anything."""

    method: str | None = None
    status: str | None = None
    parent: str | None = None
    """``Service/routine_id`` of the calling routine."""
    older_than: float | None = None
    """Started at least this many seconds ago."""
    newer_than: float | None = None
    """Started at most this many seconds ago."""

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}: one of {', '.join(STATUSES)}")

    def matches(self, entry: RoutineEntry, now: float) -> bool:
        age = now - entry.started
        return (
            (self.method is None or entry.method == self.method)
            and (self.status is None or entry.status == self.status)
            and (self.parent is None or entry.parent == self.parent)
            and (self.older_than is None or age >= self.older_than)
            and (self.newer_than is None or age <= self.newer_than)
        )


async def list_entries(
    index: RoutineIndex,
    services: list[str] | None,
    selected: RoutineFilter,
    limit: int | None,
    now: float,
) -> list[RoutineEntry]:
    """The entries matching ``selected`` of ``services`` (all with an index: None), the
    latest started first; reading stops at ``limit`` matches a service, newest written
    first, so the common listing does not read a large index whole."""
    found: list[RoutineEntry] = []
    for service in services if services is not None else await index.index_services():
        mine: dict[str, RoutineEntry] = {}
        pages = index.index_pages(
            service, status=selected.status, method=selected.method, newest_first=bool(limit)
        )
        async for page in pages:
            for entry in page:
                known = mine.get(entry.routine_id)  # a stale entry a crash left: the newer
                if selected.matches(entry, now) and (known is None or known.rank < entry.rank):
                    mine[entry.routine_id] = entry
            if limit is not None and len(mine) >= limit:
                break
        found.extend(mine.values())
    found.sort(key=lambda e: (e.started, e.routine_id), reverse=True)
    return found if limit is None else found[:limit]


async def find_entry(
    index: RoutineIndex, ref: str, service: str | None = None
) -> RoutineEntry | None:
    """The routine ``ref`` names: ``routine_id`` of ``service``, else ``SERVICE/ID``, else a
    routine id looked up in every indexed service. ``LookupError`` if it is ambiguous."""
    if service is not None:
        return await index.index_get(service, ref)
    services = await index.index_services()
    head, _, rest = ref.partition("/")
    if rest and head in services:
        found = await index.index_get(head, rest)
        if found is not None:
            return found
    matches = [e for s in services if (e := await index.index_get(s, ref)) is not None]
    if len(matches) > 1:
        names = ", ".join(f"{e.service}/{e.routine_id}" for e in matches)
        raise LookupError(f"{ref!r} names a routine of several services: {names}; say which")
    return matches[0] if matches else None
