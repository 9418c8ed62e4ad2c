"""NatsStore: count-based optimistic concurrency on a subject per routine."""

from __future__ import annotations

import asyncio

import pytest

import dasync
from dasync.transports.nats import naming
from dasync.transports.nats._store import _PAGE


async def test_append_then_load_in_order(connect, service):
    _, store = await connect()
    for i in range(5):
        await store.append(service, "r1", f"e{i}".encode(), expected=i)
    assert await store.load(service, "r1") == [f"e{i}".encode() for i in range(5)]


async def test_load_of_unknown_routine_or_service_is_empty(connect, service):
    _, store = await connect()
    assert await store.load(service, "nothing-here") == []
    await store.append(service, "r1", b"x", expected=0)
    assert await store.load(service, "nothing-here") == []


async def test_routines_and_services_are_separate(connect, service):
    _, store = await connect()
    await store.append(service, "a", b"a0", 0)
    await store.append(service, "b", b"b0", 0)
    await store.append(service + "x", "a", b"other", 0)
    assert await store.load(service, "a") == [b"a0"]
    assert await store.load(service, "b") == [b"b0"]
    assert await store.load(service + "x", "a") == [b"other"]


async def test_wrong_expected_count_conflicts(connect, service):
    _, store = await connect()
    await store.append(service, "r", b"0", 0)
    await store.append(service, "r", b"1", 1)
    for expected in (0, 1, 3):
        with pytest.raises(dasync.JournalConflict):
            await store.append(service, "r", b"bad", expected)
    await store.append(service, "r", b"2", 2)
    assert await store.load(service, "r") == [b"0", b"1", b"2"]


async def test_a_routine_is_created_exactly_once(connect, service):
    stores = [(await connect())[1] for _ in range(4)]
    results = await asyncio.gather(
        *(s.append(service, "once", f"start{i}".encode(), 0) for i, s in enumerate(stores)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, dasync.JournalConflict) for r in results if r is not None)
    assert len(await stores[0].load(service, "once")) == 1


async def test_racing_writers_commit_one_entry_per_index(connect, service):
    (_, a), (_, b) = await connect(), await connect()
    await a.append(service, "race", b"start", 0)
    await b.load(service, "race")  # both know the journal now
    outcomes = await asyncio.gather(
        a.append(service, "race", b"from-a", 1),
        b.append(service, "race", b"from-b", 1),
        return_exceptions=True,
    )
    assert sum(o is None for o in outcomes) == 1
    journal = await a.load(service, "race")
    assert len(journal) == 2 and journal[1] in (b"from-a", b"from-b")


async def test_a_stale_writer_learns_the_new_count(connect, service):
    (_, a), (_, b) = await connect(), await connect()
    await a.append(service, "r", b"0", 0)
    await b.append(service, "r", b"1", 1)  # b never saw entry 0: reads the tip
    with pytest.raises(dasync.JournalConflict):
        await a.append(service, "r", b"1bis", 1)  # a's cache is stale: the server refuses
    await a.append(service, "r", b"2", 2)
    assert await b.load(service, "r") == [b"0", b"1", b"2"]


async def test_store_without_cache_still_works(connect, service):
    _, store = await connect(journal_cache=1)
    for i in range(3):
        await store.append(service, "x", b"x", i)
        await store.append(service, "y", b"y", i)
    assert len(await store.load(service, "x")) == 3


async def test_odd_routine_ids_get_their_own_subject(connect, service):
    _, store = await connect()
    ids = ["order 42", "a.b.c", "ünïcode", "x" * 300, "a" * 32 + "-1-2-3"]
    for rid in ids:
        await store.append(service, rid, rid.encode(), 0)
    for rid in ids:
        assert await store.load(service, rid) == [rid.encode()]
    assert len({naming.journal_subject(service, rid) for rid in ids}) == len(ids)


async def test_a_thousand_entry_journal_loads_fast(connect, service):
    _, store = await connect()
    entry = b"x" * 120
    for i in range(1000):
        await store.append(service, "long", entry + str(i).encode(), i)
    _, fresh = await connect()  # no cache
    stats = fresh.conn.nc.stats
    before = stats["out_msgs"]
    journal = await fresh.load(service, "long")
    requests = stats["out_msgs"] - before
    assert len(journal) == 1000
    assert journal[999] == entry + b"999"
    # fast by construction (a speed test would be a benchmark): the tip, then batched
    # pages of _PAGE entries, never a request per entry
    assert requests <= 1 + -(-1000 // _PAGE) + 1, requests


async def test_journals_larger_than_one_page_load_completely(connect, service):
    _, store = await connect()
    for i in range(2500):
        await store.append(service, "big", str(i).encode(), i)
    journal = await store.load(service, "big")
    assert [int(e) for e in journal] == list(range(2500))


async def test_closed_store_refuses(connect, service):
    _, store = await connect()
    await store.close()
    with pytest.raises(dasync.TransportError):
        await store.load(service, "r")
