"""``asyncio.sleep`` of days on NATS: the timer is a schedule on the work stream that no
limit drops, that survives worker and server restarts, and that fires the routine once
even when it is sent again after the dedupe window.

Each test runs its own nats-server (file storage in ``tmp_path``, 127.0.0.1). What cannot
be waited for in a test, a schedule firing days later, rests on what these check: the
schedule is an ordinary stored message on a stream without age, count or size limits
(``test_a_sleep_of_days_is_a_schedule_that_survives_restarts``), and a schedule due soon
fires after the same restarts. docs/nats.md ("Timers") has the reasoning.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

import nats
import nats.js.api
import pytest

import dasync
from dasync.testing._nats_server import NatsServer
from dasync.transports import Message, Origin
from dasync.transports.nats import NatsOptions, connect_nats

pytestmark = pytest.mark.timeout(60)

DAYS = 86_400.0
SERVICE = "Napper"
WORK = f"DASYNC_{SERVICE}_WORK"
SCHEDULES = f"dasync.{SERVICE}.schedule.*"
OWN_LANE = f"dasync.{SERVICE}.in.work"


class Napper(Protocol):
    async def nap(self, seconds: float) -> str: ...
    async def two_naps(self, first: float) -> int: ...


class NapperService(Napper):
    woke: ClassVar[list[str]] = []
    """Routines whose code after their first sleep ran, once per execution."""

    async def nap(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "woke"

    async def two_naps(self, first: float) -> int:
        await asyncio.sleep(first)
        NapperService.woke.append(dasync.call_id())
        await asyncio.sleep(3 * DAYS)
        return len(NapperService.woke)


@pytest.fixture
def server(tmp_path: Path) -> Any:
    with NatsServer(store_dir=tmp_path / "nats") as s:
        yield s


@pytest.fixture
async def js(server: NatsServer) -> AsyncIterator[nats.js.JetStreamContext]:
    """A plain nats-py JetStream context, to look at the streams as an operator would."""
    nc = await nats.connect(server.url, reconnect_time_wait=0.1, max_reconnect_attempts=-1)
    yield nc.jetstream()
    await nc.close()


async def runtime(server: NatsServer, **options: Any) -> dasync.Runtime:
    options = {"ack_wait": 2.0, "reconnect_wait": 0.1, "close_timeout": 1.0, **options}
    transport, store = await connect_nats(NatsOptions(servers=(server.url,), **options))
    rt = dasync.Runtime([NapperService], transport=transport, store=store)
    await rt.start()
    return rt


async def until(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.02)


async def schedules(js: nats.js.JetStreamContext) -> dict[str, int]:
    """Pending timers: messages on the work stream's schedule subjects, by subject."""
    info = await js.stream_info(WORK, subjects_filter=SCHEDULES)
    return dict(info.state.subjects or {})


async def schedule_of(js: nats.js.JetStreamContext, routine_id: str) -> tuple[str, Any]:
    """(subject, stored message) of the pending timer of ``routine_id``."""
    for subject in await schedules(js):
        raw = await js.get_last_msg(WORK, subject)
        if (raw.headers or {}).get("Dasync-Msg-Id", "").startswith(f"timer:{routine_id}:"):
            return subject, raw
    raise AssertionError(f"no pending timer of {routine_id}")


async def journal(rt: dasync.Runtime, routine_id: str) -> list[bytes]:
    return await rt.store.load(SERVICE, routine_id)


def at_of(schedule: str) -> float:
    """Epoch seconds of a ``Nats-Schedule: @at 2026-01-01T00:00:00.000000Z`` value."""
    assert schedule.startswith("@at "), schedule
    return datetime.strptime(schedule[4:], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def resent(raw: Any, msg_id: str | None = None) -> Message:
    """The timer message a worker would send again, rebuilt from its stored schedule (as
    ``_resend`` rebuilds it from the journal): same id unless ``msg_id`` says otherwise."""
    h = dict(raw.headers or {})
    headers = {k: v for k, v in h.items() if k.startswith("dasync-")}
    due = float(h["Dasync-Deliver-At"])
    return Message(msg_id or h["Dasync-Msg-Id"], headers, raw.data or b"", due)


async def test_a_sleep_of_days_is_a_schedule_that_survives_restarts(server, js):
    rt = await runtime(server)
    try:
        await rt.client.start(Napper.nap, 3 * DAYS, routine_id="days")
        soon = time.time() + 3.0
        await rt.client.start(Napper.nap, 3.0, routine_id="soon")
        await until(lambda: _count(js, 2))

        # the schedule: a stored message, due in three days, on the service's own lane
        subject, raw = await schedule_of(js, "days")
        h = raw.headers
        assert abs(at_of(h["Nats-Schedule"]) - (time.time() + 3 * DAYS)) < 60
        assert h["Nats-Schedule-Target"] == OWN_LANE
        assert not {"Nats-TTL", "Nats-Schedule-TTL"} & set(h)  # nothing expires it
        # ... on a stream that drops nothing by age, count or size, and whose dedupe window
        # (2 min) is far shorter than the sleep: the window plays no part in keeping it
        config = (await js.stream_info(WORK)).config
        assert config.allow_msg_schedules is True
        assert config.retention == nats.js.api.RetentionPolicy.WORK_QUEUE
        assert not config.max_age
        assert config.max_msgs in (None, -1) and config.max_bytes in (None, -1)
        assert config.max_msgs_per_subject in (None, -1, 0)
        assert config.duplicate_window == 120.0
        # ... that no consumer takes before it fires (the workers read the lanes only)
        consumer = await js.consumer_info(WORK, "workers")
        assert consumer.config.filter_subject == f"dasync.{SERVICE}.in.>"

        # every worker killed, a new one started: the schedule is the server's, untouched
        rt.kill()
        rt = await runtime(server)
        assert (await js.get_last_msg(WORK, subject)).seq == raw.seq
        # the server restarted: the schedule is still stored, as it was
        await asyncio.to_thread(server.restart)
        await until(lambda: _count(js, 1, at_least=True), within=15)
        again = await js.get_last_msg(WORK, subject)
        assert (again.seq, again.headers, again.data) == (raw.seq, raw.headers, raw.data)
        assert (await js.stream_info(WORK)).config.allow_msg_schedules is True

        # the timer due soon, scheduled before both restarts, fires once, not early
        handle = rt.client.handle(Napper.nap, "soon")
        assert await handle.result(timeout=15) == "woke"
        assert time.time() >= soon
        assert len(await journal(rt, "soon")) == 2  # its start and its one wake-up
        assert len(await journal(rt, "days")) == 1  # still asleep
        assert list(await schedules(js)) == [subject]
    finally:
        await rt.close()


async def test_a_timer_sent_again_after_the_dedupe_window_fires_the_routine_once(server, js):
    NapperService.woke.clear()
    # a dedupe window of 1 s: the first sleep (1.5 s) outlasts it, as a day outlasts 2 min
    rt = await runtime(server, duplicate_window=1.0)
    try:
        await rt.client.start(Napper.two_naps, 1.5, routine_id="twice")
        await until(lambda: _count(js, 1))
        _, first = await schedule_of(js, "twice")
        published = time.monotonic()
        await until(lambda: _entries(rt, "twice", 2))  # woke, now asleep for days
        assert NapperService.woke == ["twice"]
        long_subject, long_timer = await schedule_of(js, "twice")
        long_published = time.monotonic()  # at the latest
        assert long_published - published > 1.0  # the window is over for the first timer

        async def settled(after: int) -> bool:
            info = await js.consumer_info(WORK, "workers")
            return (
                info.delivered.stream_seq >= after
                and not info.num_pending
                and not info.num_ack_pending
            )

        me = Origin.service(SERVICE)
        # 1. the fired timer, sent again with its own id after the window: the server takes
        #    it (no dedupe any more) and delivers it; the journal's input key timer:1 absorbs
        #    it: nothing runs, nothing is committed
        before = (await js.stream_info(WORK)).state.last_seq
        await rt.transport.send(SERVICE, resent(first), me)
        last = (await js.stream_info(WORK)).state.last_seq
        assert last > before  # stored: not taken for a duplicate
        await until(lambda: settled(last))
        # 2. the days-long timer, sent again after the window: one schedule per subject, so
        #    it replaces the pending one instead of adding a second firing
        await until(_past(long_published + 1.1))
        await rt.transport.send(SERVICE, resent(long_timer), me)
        assert await schedules(js) == {long_subject: 1}
        assert (await js.get_last_msg(WORK, long_subject)).seq > long_timer.seq  # replaced
        # 3. a worker that has not the routine in its cache (killed, a new one) gets the
        #    first timer once more (a distinct message id: as if re-sent later still)
        rt.kill()
        rt = await runtime(server, duplicate_window=1.0)
        await rt.transport.send(SERVICE, resent(first, "timer:twice:again"), me)
        last = (await js.stream_info(WORK)).state.last_seq
        await until(lambda: settled(last))

        assert NapperService.woke == ["twice"]  # the code after the first sleep ran once
        assert len(await journal(rt, "twice")) == 2  # start, first wake-up: nothing more
        assert await rt.transport.dead_letters(SERVICE) == []
        assert await schedules(js) == {long_subject: 1}  # the long sleep goes on
        entry = await rt.client.find_routine("twice", SERVICE)
        assert entry.status == "running"
    finally:
        await rt.close()


def _past(moment: float) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return time.monotonic() > moment

    return check


async def _count(js: nats.js.JetStreamContext, n: int, *, at_least: bool = False) -> bool:
    try:
        found = sum((await schedules(js)).values())
    except Exception:  # the stream does not exist yet, or the server is restarting
        return False
    return found >= n if at_least else found == n


async def _entries(rt: dasync.Runtime, routine_id: str, n: int) -> bool:
    return len(await journal(rt, routine_id)) >= n
