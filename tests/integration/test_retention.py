"""Journal retention on both transports: the workers' own passes remove the journals of
routines that finished longer ago than the retention, and keep every running routine's,
however old; ``dasync purge`` does the same on demand."""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import dasync
from dasync.cli import main as cli_main
from dasync.transports.nats import connect_nats

from ..conftest import Backend, delete_namespace, nats_options

RETENTION = 1.0
FINISHED = 6


class Quick(Protocol):
    async def run(self, n: int) -> int: ...


class Later(Protocol):
    async def ready(self) -> str: ...


class Waiting(Protocol):
    async def run(self) -> str: ...


class QuickImpl(Quick):
    async def run(self, n: int) -> int:
        return n * 2


class LaterImpl(Later):
    async def ready(self) -> str:
        return "ready"


class WaitingImpl(Waiting):
    def __init__(self, later: Later) -> None:
        self.later = later

    async def run(self) -> str:
        # waits in Later's queue until a Later worker starts: running all along
        return await self.later.ready()


WAIT = 20.0


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not await condition():
        assert loop.time() < deadline, f"not within {WAIT} s: {what}"
        await asyncio.sleep(0.05)


async def test_finished_journals_go_after_the_retention_running_ones_stay(
    backend: Backend,
) -> None:
    async with backend.runtime([QuickImpl, WaitingImpl], retention=RETENTION) as rt:
        waiting = await rt.client.start(Waiting.run, routine_id="waiting")
        for n in range(FINISHED):
            assert await rt.client.proxy(Quick).run(n) == n * 2
        quick = await rt.client.start(Quick.run, 99, routine_id="kept-result")
        assert await quick.result(timeout=20) == 198
        assert len(await rt.store.load("Waiting", "waiting")) == 1

        if backend.transport == "memory":
            backend.broker.clock.advance(RETENTION * 2)  # virtual: the journals are old now
        sweeper = rt.sweeper
        assert sweeper is not None

        async def purged_all() -> bool:
            return sweeper.purged >= FINISHED + 1

        await _until(purged_all, "a pass removes the finished routines' journals")
        assert await rt.store.load("Quick", "kept-result") == []
        assert len(await rt.store.load("Waiting", "waiting")) == 1, "a running routine is kept"
        assert sweeper.purged == FINISHED + 1

        # the running routine still finishes, and a removed id may start again
        async with backend.runtime([LaterImpl], retention=None):
            assert await waiting.result(timeout=20) == "ready"
        again = await rt.client.start(Quick.run, 5, routine_id="kept-result")
        assert await again.result(timeout=20) == 10


async def test_dasync_purge_removes_old_journals_on_demand(nats_session_server: Any) -> None:
    url = nats_session_server.url
    namespace = f"t{uuid.uuid4().hex[:12]}"
    transport, store = await connect_nats(nats_options(url, namespace))
    args = ["purge", "Quick", "--nats", url, "--nats-namespace", namespace, "--older-than", "0.2"]
    try:
        async with dasync.Runtime(
            [QuickImpl], transport=transport, store=store, retention=None
        ) as rt:
            for n in range(3):
                assert await rt.client.proxy(Quick).run(n) == n * 2

            async def aged() -> bool:  # all three finished over 0.2 s ago
                code, text = await asyncio.to_thread(_cli, *args, "--dry-run")
                assert code == 0, text
                return "Quick: would remove 3 finished routines" in text

            await _until(aged, "the routines are older than --older-than")
            assert len(await _ids(rt)) == 3, "a dry run removes nothing"
            code, text = await asyncio.to_thread(_cli, *args)
            assert (code, text.strip()) == (
                0,
                "Quick: removed 3 finished routines; kept 0 running and 0 finished recently",
            )
            assert await _ids(rt) == set()
            code, text = await asyncio.to_thread(_cli, *args)
            assert "Quick: removed 0 finished routines" in text, text
    finally:
        await delete_namespace(url, namespace)


async def _ids(rt: dasync.Runtime) -> set[str]:
    """The routines of Quick that have a journal (read from the stream's subjects)."""
    conn = rt.store.conn  # type: ignore[attr-defined]
    stream = f"DASYNC-{conn.options.namespace}_Quick_JOURNAL"
    info = await conn.api(f"STREAM.INFO.{stream}", {"subjects_filter": ">"})
    names = {s.rsplit(".", 1)[1] for s in (info.get("state", {}).get("subjects") or {})}
    return {n for n in names if not n.startswith("_")}  # not failure notes or start claims


def _cli(*argv: str) -> tuple[int, str]:
    """Run the ``dasync`` command in this process; (exit status, its stdout and stderr)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = cli_main(list(argv))
    return code, buffer.getvalue()
