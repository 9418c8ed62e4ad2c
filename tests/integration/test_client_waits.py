"""How a client waits for a result: from its inbox, reading the journal only where the
reply may not come there (issue 14: no polling while the inbox works).

The journal reads counted are the client's own (its store wrapped); the services run
in the same runtime and read through the same store object unwrapped.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from ..conftest import Backend

POLL = 0.05
"""The client's poll interval here: its first journal read would come after 4 of these."""


class Later(Protocol):
    async def ready(self, n: int) -> int: ...


class Caller(Protocol):
    async def run(self, n: int) -> int: ...


class LaterImpl(Later):
    async def ready(self, n: int) -> int:
        return n + 1


class CallerImpl(Caller):
    def __init__(self, later: Later) -> None:
        self.later = later

    async def run(self, n: int) -> int:
        # waits in Later's queue until a Later worker starts: as long as the test likes
        return await self.later.ready(n)


class CountingStore:
    """The client's store, counting the journals it loads."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.loads = 0

    async def load(self, service: str, routine_id: str) -> list[bytes]:
        self.loads += 1
        result: list[bytes] = await self._store.load(service, routine_id)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _counting(client: Any) -> CountingStore:
    counting = CountingStore(client._store)
    client._store = counting
    client._poll = POLL
    return counting


async def test_a_quick_result_reads_no_journal(backend: Backend) -> None:
    async with backend.runtime([LaterImpl, CallerImpl]) as rt:
        counting = _counting(rt.client)
        for n in range(20):
            assert await rt.client.proxy(Caller).run(n) == n + 1
        assert counting.loads == 0


async def test_a_long_wait_on_our_own_routine_reads_the_journal_once(backend: Backend) -> None:
    async with backend.runtime([CallerImpl]) as rt:
        counting = _counting(rt.client)
        handle = await rt.client.start(Caller.run, 1, routine_id="long-1")
        waiting = asyncio.ensure_future(handle.result(timeout=30))
        await asyncio.sleep(POLL * 30)  # 1.5 s: the old client read the journal 5 times
        assert counting.loads == 1, "one read to see that the routine is ours"
        async with backend.runtime([LaterImpl]):
            assert await waiting == 2
        assert counting.loads == 1


class _Broken:
    """The client's subscription, reporting that it lost its place once."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.breaks = 0

    async def stop(self) -> None:
        await self.inner.stop()


async def test_a_break_in_the_inbox_makes_the_client_read_the_journal(
    backend: Backend,
) -> None:
    async with backend.runtime([CallerImpl]) as rt:
        counting = _counting(rt.client)
        rt.client._subscription = broken = _Broken(rt.client._subscription)
        handle = await rt.client.start(Caller.run, 1, routine_id="break-1")
        waiting = asyncio.ensure_future(handle.result(timeout=30))
        await asyncio.sleep(POLL * 8)
        assert counting.loads == 1  # the one to see whose it is
        broken.breaks += 1  # reconnected, or its consumer re-created: replies may be lost
        for _ in range(100):
            if counting.loads == 2:
                break
            await asyncio.sleep(POLL / 2)
        assert counting.loads == 2
        async with backend.runtime([LaterImpl]):
            assert await waiting == 2
        rt.client._subscription = broken.inner


async def test_a_routine_another_client_started_first_is_followed_in_its_journal(
    backend: Backend,
) -> None:
    async with backend.runtime([CallerImpl]) as first, backend.runtime([]) as second:
        _counting(first.client)
        counting = _counting(second.client)
        mine = await first.client.start(Caller.run, 5, routine_id="shared-1")
        theirs = await second.client.start(Caller.run, 5, routine_id="shared-1")
        waiting = asyncio.ensure_future(theirs.result(timeout=30))
        await asyncio.sleep(POLL * 8)
        async with backend.runtime([LaterImpl]):
            assert await mine.result(timeout=30) == 6
            # the reply went to the first client's inbox: the second reads the journal
            assert await waiting == 6
        assert counting.loads >= 2
