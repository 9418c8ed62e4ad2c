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
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

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


class IndexObserver:
    """Keeps the store's ``RoutineIndex`` as the worker commits (a ``RoutineObserver``)."""

    def __init__(
        self, store: JournalStore, clock: Clock | None = None, cache_size: int = _CACHE
    ) -> None:
        if not isinstance(store, RoutineIndex):
            raise TypeError(f"{type(store).__name__} keeps no routine index")
        self.store = store
        self.index: RoutineIndex = store
        self.clock = clock or SystemClock()
        self.writes = 0
        """Index entries written (for tests and benchmarks)."""
        self._known: OrderedDict[tuple[str, str], RoutineEntry] = OrderedDict()
        self._cache_size = cache_size

    async def committed(
        self, service: str, routine_id: str, index: int, record: StepRecord, *, resent: bool
    ) -> None:
        rank = rank_of_step(index)
        done = record.completion
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
        else:
            known = await self._previous(service, routine_id)
            if known is not None and known.rank >= rank:
                return  # reported already (a redelivery), or a later step was
            if done is None and record.postponed is None:
                if known is not None and known.status == "running":
                    self._remember(known)
                    return  # no change of status: nothing to write
            entry = known or await self._from_journal(service, routine_id)
        at = getattr(record.input, "at", 0.0) or self.clock.now()
        if done is not None:
            status = status_of_completion(done)
            error = "" if done.ok else failure_summary(done.payload)
            entry = _with(entry, status, rank, error=error, ended=at, finished=True)
        elif record.postponed is not None:
            entry = _with(entry, "retrying", rank, error=record.postponed.error[:200])
        else:
            entry = _with(entry, "running", rank, error="")
        await self._put(entry)

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

    async def _put(self, entry: RoutineEntry) -> None:
        entry = _replace(entry, updated=self.clock.now())
        if await self.index.index_put(entry):
            self.writes += 1
            self._remember(entry)
        else:  # a newer entry is kept (another worker's): read it when next needed
            self._known.pop((entry.service, entry.routine_id), None)

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
