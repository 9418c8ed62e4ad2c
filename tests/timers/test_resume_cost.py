"""What waking a routine costs a worker that has never seen it (every worker was restarted
during the sleep): the index entry it updates is read once, not twice.

``benchmarks/timers.py`` wakes 10,000 routines on new workers: each wake-up after the
restart reads the journal and the routine's index entry, then writes both. The observer
reads the entry to know its status and rank; the write that follows is conditional on
the sequence that read found (no second read of the same entry).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dasync._engine import Complete, FireTimer, Start, StartTimer, StepRecord
from dasync._runtime._index import IndexObserver
from dasync.testing._nats_server import NatsServer
from dasync.transports.nats import NatsOptions, connect_nats
from dasync.transports.nats._index import NatsIndex

pytestmark = pytest.mark.timeout(30)

START = StepRecord(Start(b"{}", 10.0, {"method": "nap"}), (StartTimer(1, 11.0),))
WOKE = StepRecord(FireTimer(1, 11.0), (Complete(2, True, b'"woke"'),))


async def test_a_new_worker_reads_the_index_entry_of_a_routine_it_wakes_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    last = NatsIndex._last

    async def counted(self: NatsIndex, stream: str, subjects: str) -> Any:
        reads.append(subjects)
        return await last(self, stream, subjects)

    monkeypatch.setattr(NatsIndex, "_last", counted)
    with NatsServer(store_dir=tmp_path / "nats") as server:
        opened: list[Any] = []
        try:
            for _ in range(2):
                opened.append(await connect_nats(NatsOptions(servers=(server.url,))))
            before, after = (
                store for _, store in opened
            )  # the worker that started it, the one that wakes it
            await IndexObserver(before).committed("Napper", "r1", 0, START, resent=False)
            assert reads == []  # a routine's first entry is written without a read
            await IndexObserver(after).committed("Napper", "r1", 1, WOKE, resent=False)
            assert len(reads) == 1, reads
            entry = await after.index_get("Napper", "r1")
            assert entry is not None and entry.status == "completed"
            # a read that went stale is still safe: the write is conditional on it, refused,
            # the entry read again, and the newer one kept
            opened.append(await connect_nats(NatsOptions(servers=(server.url,))))
            stale = opened[-1][1]
            await IndexObserver(before).committed("Napper", "r2", 0, START, resent=False)
            running = await stale.index_get("Napper", "r2")
            assert running is not None and running.status == "running"
            await IndexObserver(after).committed("Napper", "r2", 1, WOKE, resent=False)
            reads.clear()
            late = replace(running, status="failed", rank=4, error="a stale report")
            assert await stale.index_put(late) is False
            assert len(reads) == 1
            final = await after.index_get("Napper", "r2")
            assert final is not None and (final.status, final.error) == ("completed", "")
        finally:
            for transport, store in opened:
                await transport.close()
                await store.close()
