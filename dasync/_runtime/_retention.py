"""Journal retention: the journals of routines that finished long ago are removed.

A finished routine's journal is what makes a repeated start of its id harmless and
what ``handle.result()`` reads, so it is kept for a retention window (default 7
days, longer than any caller should take to retry a start or read a result) and
then removed by a periodic pass of each worker (``Retention`` store capability).
Running routines are never touched, however old.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable

from .._engine import decode_step
from ..transports import JournalStore, PurgeReport, Retention

__all__ = ["DEFAULT_RETENTION", "Sweeper", "is_finished", "purge"]

_log = logging.getLogger("dasync.retention")

DEFAULT_RETENTION = 7 * 24 * 3600.0
"""Seconds a finished routine's journal is kept: a week covers a weekend's outage of a
caller that retries its starts, and reading a result days later."""

MAX_INTERVAL = 3600.0
MIN_INTERVAL = 0.5


def is_finished(entry: bytes) -> bool:
    """True if a journal's last entry completes its routine; anything unreadable is kept."""
    try:
        return decode_step(entry).completion is not None
    except Exception:
        return False


async def purge(
    store: JournalStore, service: str, older_than: float, *, dry_run: bool = False
) -> PurgeReport:
    """One retention pass for ``service``: ``LookupError`` if the store keeps journals for ever."""
    if not isinstance(store, Retention):
        raise LookupError(f"the journal store {type(store).__name__} cannot remove journals")
    return await store.purge_finished(service, older_than, is_finished, dry_run=dry_run)


def sweep_interval(retention: float) -> float:
    """How often a worker runs a pass: a tenth of the retention, within half a second and
    an hour, so that a journal outlives its retention by a tenth at most."""
    return min(MAX_INTERVAL, max(MIN_INTERVAL, retention / 10))


class Sweeper:
    """Runs a retention pass for each hosted service now and then (from a random offset,
    so that workers started together do not all read the journals at once)."""

    def __init__(self, store: JournalStore, services: Iterable[str], retention: float) -> None:
        if retention <= 0:
            raise ValueError(f"retention must be positive seconds, not {retention!r}")
        self.store = store
        self.services = sorted(services)
        self.retention = retention
        self.passes = 0
        self.purged = 0
        self._task: asyncio.Task[None] | None = None
        self._random = random.Random()

    def start(self) -> None:
        if self._task is None and isinstance(self.store, Retention) and self.services:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def kill(self) -> None:
        """Stop at once, as a killed process would."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        interval = sweep_interval(self.retention)
        await asyncio.sleep(self._random.uniform(0, interval))
        while True:
            for service in self.services:
                await self.sweep(service)
            self.passes += 1
            await asyncio.sleep(self._random.uniform(0.8, 1.2) * interval)

    async def sweep(self, service: str) -> None:
        try:
            report = await purge(self.store, service, self.retention)
        except Exception as exc:  # the next pass tries again; nothing was half removed
            _log.warning("retention pass over %s's journals failed: %r", service, exc)
            return
        self.purged += report.purged
        if report.purged:
            _log.info(
                "%s: removed the journals of %d routines finished over %.0f s ago",
                service, report.purged, self.retention,
            )  # fmt: skip
