"""Retry policies: transient exceptions retried with backoff, others not; attempts bounded."""

from __future__ import annotations

import asyncio
from typing import Protocol

import pytest

import dasync
from dasync._retry import RetryPolicy
from dasync.testing import VirtualClock

ATTEMPTS: dict[str, list[float]] = {}
"""Per test key: the (virtual) times at which the flaky method ran."""


class RateLimited(Exception):
    pass


class Flaky(Protocol):
    async def charge(self, key: str, fail_times: int) -> str: ...
    async def strict(self, key: str) -> str: ...
    async def declared(self, key: str, fail_times: int) -> str: ...


class Flaky2(Protocol):
    @dasync.retry(attempts=4, backoff=0.1, on=TimeoutError)
    async def declared(self, key: str, fail_times: int) -> str: ...


class FlakyImpl(Flaky):
    @dasync.retry(
        attempts=4,
        backoff=0.2,  # short: on NATS the backoffs are real seconds
        multiplier=3.0,
        max_delay=1.0,
        jitter=0.0,
        on=(TimeoutError, RateLimited),
    )
    async def charge(self, key: str, fail_times: int) -> str:
        runs = ATTEMPTS.setdefault(key, [])
        runs.append(dasync.now().timestamp())
        if len(runs) <= fail_times:
            raise RateLimited(f"try again ({len(runs)})")
        return f"charged after {len(runs)}"

    async def strict(self, key: str) -> str:
        ATTEMPTS.setdefault(key, []).append(0.0)
        raise RateLimited("not marked transient here")

    async def declared(self, key: str, fail_times: int) -> str:
        return "unused"


class Flaky2Impl(Flaky2):
    async def declared(self, key: str, fail_times: int) -> str:
        runs = ATTEMPTS.setdefault(key, [])
        runs.append(0.0)
        if len(runs) <= fail_times:
            raise TimeoutError("slow backend")
        return "ok"


@dasync.service
class Caller:
    def __init__(self, flaky: Flaky) -> None:
        self.flaky = flaky

    async def call(self, key: str, fail_times: int) -> str:
        try:
            return await self.flaky.charge(key, fail_times)
        except RateLimited as exc:
            return f"gave up: {exc}"


async def test_transient_error_is_retried_then_succeeds(make_runtime):
    ATTEMPTS.clear()
    async with make_runtime([FlakyImpl, Caller]) as rt:
        assert await rt.client.proxy(Caller).call("t1", 2) == "charged after 3"
        assert rt.worker.stats.retries == 2
    assert len(ATTEMPTS["t1"]) == 3


async def test_exhausted_attempts_raise_the_last_error_at_the_caller(make_runtime):
    ATTEMPTS.clear()
    async with make_runtime([FlakyImpl, Caller]) as rt:
        assert await rt.client.proxy(Caller).call("t2", 99) == "gave up: try again (4)"
    assert len(ATTEMPTS["t2"]) == 4


async def test_non_transient_error_is_not_retried(make_runtime):
    ATTEMPTS.clear()
    async with make_runtime([FlakyImpl, Caller]) as rt:
        with pytest.raises(RateLimited):
            await rt.client.proxy(Flaky).strict("t3")
        assert rt.worker.stats.retries == 0
    assert len(ATTEMPTS["t3"]) == 1


async def test_policy_declared_on_the_contract(make_runtime):
    ATTEMPTS.clear()
    async with make_runtime([Flaky2Impl]) as rt:
        assert await rt.client.proxy(Flaky2).declared("t4", 3) == "ok"
        with pytest.raises(TimeoutError):
            await rt.client.proxy(Flaky2).declared("t5", 10)
    assert len(ATTEMPTS["t4"]) == 4
    assert len(ATTEMPTS["t5"]) == 4


async def test_backoff_follows_the_policy_on_a_virtual_clock():
    ATTEMPTS.clear()
    clock = VirtualClock()
    broker = dasync.transports.MemoryBroker(clock)
    clock.is_busy = broker.busy
    async with dasync.testing.runtime([FlakyImpl, Caller], broker=broker) as rt:
        assert await rt.client.proxy(Caller).call("t6", 3) == "charged after 4"
    runs = ATTEMPTS["t6"]
    gaps = [b - a for a, b in zip(runs, runs[1:], strict=False)]
    # backoff 0.2 s, multiplier 3, capped at 1 s, no jitter: 0.2, 0.6, 1.0
    assert gaps == pytest.approx([0.2, 0.6, 1.0], abs=0.01)


def test_delay_is_capped_and_jittered_within_bounds():
    policy = RetryPolicy(attempts=10, backoff=1.0, max_delay=8.0, multiplier=2.0, jitter=0.25)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        low, high = policy.delay(attempt, lambda: 0.0), policy.delay(attempt, lambda: 1.0)
        assert low == pytest.approx(base * 0.75)
        assert high == pytest.approx(min(8.0, base * 1.25))


def test_bad_policies_are_refused():
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    with pytest.raises(TypeError):
        dasync.retry(on=("TimeoutError",))  # type: ignore[arg-type]


class Slow(Protocol):
    async def pay(self, key: str) -> str: ...


class SlowImpl(Slow):
    @dasync.retry(attempts=3, backoff=600.0, jitter=0.0, on=RateLimited)
    async def pay(self, key: str) -> str:
        ATTEMPTS.setdefault(key, []).append(dasync.now().timestamp())
        raise RateLimited("busy")


class Fails(Protocol):
    async def pay(self, key: str) -> str: ...


class FailsImpl(Fails):
    @dasync.retry(attempts=3, backoff=0.05, jitter=0.0, on=RateLimited)
    async def pay(self, key: str) -> str:
        ATTEMPTS.setdefault(key, []).append(dasync.now().timestamp())
        raise RateLimited("busy")


async def test_attempts_are_failures_kept_in_the_journal(make_runtime):
    """Each failed attempt is a retry marker in the journal: attempts count failures of the
    step (not deliveries), and survive any worker restart."""
    from dasync._engine import Postpone

    from ..semantics._helpers import steps

    ATTEMPTS.clear()
    async with make_runtime([FailsImpl]) as rt:
        handle = await rt.client.start(Fails.pay, "k1", routine_id="pay-k1")
        with pytest.raises(RateLimited):
            await handle.result(timeout=60)
        journal = await steps(rt, "Fails", "pay-k1")
    assert len(ATTEMPTS["k1"]) == 3
    markers = [s.commands[0] for s in journal if s.postponed is not None]
    assert [m.attempt for m in markers if isinstance(m, Postpone)] == [1, 2]
    assert journal[-1].completion is not None and not journal[-1].completion.ok


async def test_a_cancel_during_a_retry_backoff_cancels_the_pending_attempt(backend, transport):
    from dasync.testing import runtime

    from ..semantics._helpers import steps, wait_until

    ATTEMPTS.clear()
    # real time on memory too: a virtual clock would fire the 600 s backoff at once
    make = runtime([SlowImpl], virtual_time=False) if transport == "memory" else None
    async with make or backend.runtime([SlowImpl]) as rt:
        handle = await rt.client.start(Slow.pay, "k2", routine_id="pay-k2")

        async def waiting() -> bool:  # the first attempt failed; the retry is 600 s away
            journal = await steps(rt, "Slow", "pay-k2")
            return len(journal) == 1 and journal[0].postponed is not None

        await wait_until(waiting)
        await handle.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handle.result(timeout=30)
        journal = await steps(rt, "Slow", "pay-k2")
    assert len(ATTEMPTS["k2"]) == 1  # the retry never ran: the caller had given up
    assert type(journal[-1].input).__name__ == "Cancel"
