"""The index observer's rules, fed the reports a worker makes (memory store): a write per
change of status only, repeated or late reports never move a routine back, and what a
routine's later entries need from its start survives a cold cache."""

from __future__ import annotations

import asyncio

from dasync._engine import Complete, FireTimer, Postpone, Resolve, Start, StartTimer, StepRecord
from dasync._failures import encode_failure
from dasync._runtime._index import IndexObserver, failure_summary
from dasync.transports import MemoryBroker, MemoryStore

START = StepRecord(
    Start(b'{"n":1}', 10.0, {"method": "run", "caller": "service:Shop", "reply_routine": "o1"}),
    (StartTimer(1, 11.0),),
)
FIRED = StepRecord(FireTimer(1, 11.0), (StartTimer(2, 12.0),))
MARKER = StepRecord(FireTimer(2, 12.0), (Postpone(1, 13.0, "ValueError: flaky"),))
RETRIED = StepRecord(FireTimer(2, 13.0), (StartTimer(3, 14.0),))
DONE = StepRecord(FireTimer(3, 14.0), (Complete(4, True, b"2"),))


async def test_statuses_follow_the_journal_and_never_move_back() -> None:
    store = MemoryStore(MemoryBroker())
    index = IndexObserver(store)

    async def status() -> str:
        entry = await store.index_get("Leaf", "r1")
        assert entry is not None
        return entry.status

    await index.committed("Leaf", "r1", 0, START, resent=False)
    await index.committed("Leaf", "r1", 1, FIRED, resent=False)  # still running: no write
    assert (await status(), index.writes) == ("running", 1)
    await index.committed("Leaf", "r1", 2, MARKER, resent=False)
    await index.committed("Leaf", "r1", 0, START, resent=True)  # a redelivery's report
    assert await status() == "retrying"
    entry = await store.index_get("Leaf", "r1")
    assert entry is not None and entry.error == "ValueError: flaky"
    await index.committed("Leaf", "r1", 3, RETRIED, resent=False)
    assert await status() == "running"
    await index.committed("Leaf", "r1", 4, DONE, resent=False)
    await index.committed("Leaf", "r1", 2, MARKER, resent=True)
    await index.set_aside("Leaf", "r1", 5, "a stray message", told=True)
    entry = await store.index_get("Leaf", "r1")
    assert entry is not None and entry.status == "completed" and index.writes == 4
    assert (entry.method, entry.started, entry.ended, entry.parent) == (
        "run",
        10.0,
        14.0,
        "Shop/o1",
    )


async def test_a_cold_cache_reads_the_index_then_the_journal() -> None:
    store = MemoryStore(MemoryBroker())
    await IndexObserver(store).committed("Leaf", "r1", 0, START, resent=False)
    failed = StepRecord(FireTimer(1, 11.0), (Complete(2, False, encode_failure(KeyError("k"))),))
    await IndexObserver(store).committed("Leaf", "r1", 1, failed, resent=False)  # a new worker
    entry = await store.index_get("Leaf", "r1")
    assert entry is not None and (entry.status, entry.method) == ("failed", "run")
    assert entry.error == "KeyError: 'k'" == failure_summary(encode_failure(KeyError("k")))

    # a routine started before its service kept an index: the journal's start fills it in
    from dasync._engine import encode_step

    await store.append("Leaf", "old", encode_step(START), 0)
    await IndexObserver(store).set_aside("Leaf", "old", 1, "NonDeterminismError: ...", told=False)
    entry = await store.index_get("Leaf", "old")
    assert entry is not None and (entry.status, entry.method) == ("parked", "run")
    resolved = StepRecord(Resolve(1, True, b"1", 12.0), (Complete(2, True, b"1"),))
    await IndexObserver(store).committed("Leaf", "old", 1, resolved, resent=False)
    entry = await store.index_get("Leaf", "old")
    assert entry is not None and entry.status == "completed", "a retried letter ran"


async def test_a_held_first_entry_is_superseded_or_written_when_due() -> None:
    """``committed_fresh`` with a hold: a routine that completes within it costs one write,
    its held future resolving with it; one that keeps running is written when due; what
    a fresh report returns is what the worker's acknowledgement waits for."""
    store = MemoryStore(MemoryBroker())
    assert IndexObserver(store).hold == 0.0, "the memory store writes at once"
    index = IndexObserver(store, hold=0.2)

    held = index.committed_fresh("Leaf", "quick", 0, START)
    assert held is not None and not held.done() and await store.index_get("Leaf", "quick") is None
    assert index.committed_fresh("Leaf", "quick", 1, FIRED) is None, "no change: nothing to do"
    done = index.committed_fresh("Leaf", "quick", 2, DONE)
    assert done is not None
    await done
    assert held.done() and held.exception() is None, "superseded by the completion"
    entry = await store.index_get("Leaf", "quick")
    assert entry is not None and entry.status == "completed" and index.writes == 1

    slow = index.committed_fresh("Leaf", "slow", 0, START)
    assert slow is not None
    await asyncio.wait_for(slow, 2.0)  # written when the hold is over
    entry = await store.index_get("Leaf", "slow")
    assert entry is not None and entry.status == "running" and index.writes == 2

    pending = index.committed_fresh("Leaf", "stopping", 0, START)
    assert pending is not None and not pending.done()
    await index.flush()  # a stopping worker writes what it holds
    assert pending.done() and (await store.index_get("Leaf", "stopping")) is not None
