"""Replay you can trust: divergence is loud and parks, identity never collides, mistakes fail.

Each test pins one rule of docs/guide.md ("What dasync records, and what differs from
plain asyncio"); they run on memory and NATS, cached and forced replay.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import random
import time
import uuid
from typing import Any, Protocol

import pytest

import dasync
from dasync._engine import MAX_CALL_DEPTH
from dasync._engine._ids import MAX_ID_LENGTH

from ._helpers import steps, wait_until

# --- divergence in any position parks the routine; others are unaffected ------------------

MODE = {"v": "v1"}
TICKS: list[str] = []


class Leaf(Protocol):
    async def a(self) -> int: ...
    async def b(self) -> int: ...
    async def echo(self, tag: str) -> str: ...


class LeafImpl(Leaf):
    async def a(self) -> int:
        return 1

    async def b(self) -> int:
        return 2

    async def echo(self, tag: str) -> str:
        return f"{tag}:{dasync.call_id()}"


class Gate(Protocol):
    async def wait(self) -> int: ...


class GateImpl(Gate):
    async def wait(self) -> int:
        return 40


class Shifty(Protocol):
    async def run(self) -> int: ...


class ShiftyImpl(Shifty):
    """v1: a, a, then waits on Gate. Each v2 differs at another position of the journal."""

    def __init__(self, leaf: Leaf, gate: Gate) -> None:
        self.leaf, self.gate = leaf, gate

    async def run(self) -> int:
        v = MODE["v"]
        total = await (self.leaf.b() if v == "first" else self.leaf.a())
        if v == "completion":
            return total  # the journal has a second call here: replay completes instead
        total += await (self.leaf.b() if v == "middle" else self.leaf.a())
        return total + await self.gate.wait()


class Ticker(Protocol):
    async def tick(self, n: int) -> int: ...


class TickerImpl(Ticker):
    async def tick(self, n: int) -> int:
        for i in range(n):
            await asyncio.sleep(1.0)
            TICKS.append(f"tick {i}")
        return n


@pytest.mark.parametrize("position", ["first", "middle", "completion"])
async def test_a_divergence_in_any_position_parks_the_routine(make_runtime, position):
    MODE["v"] = "v1"
    TICKS.clear()
    rid = f"shifty-{position}"
    async with make_runtime([LeafImpl, ShiftyImpl], force_replay=False) as rt:
        await rt.transport.declare("Gate")  # deployed, nobody serves it yet
        await rt.client.start(Shifty.run, routine_id=rid)

        async def waiting() -> bool:
            return len(await steps(rt, "Shifty", rid)) == 3

        await wait_until(waiting)
        before = await steps(rt, "Shifty", rid)
    MODE["v"] = position  # a deploy that changes the routine's past
    try:
        async with make_runtime(
            [LeafImpl, ShiftyImpl, GateImpl, TickerImpl], on_divergence="park"
        ) as rt:
            ticker = await rt.client.start(Ticker.tick, 3)  # another routine, timers running
            letters = await _dead_letters(rt, "Shifty", 1)
            [reason] = [r for _, r in letters]
            assert reason.startswith("parked: non-determinism") and rid in reason
            assert await ticker.result(timeout=20) == 3  # unaffected, its clock kept moving
            assert sorted(set(TICKS)) == ["tick 0", "tick 1", "tick 2"]
            assert len(await steps(rt, "Shifty", rid)) == len(before)  # nothing committed
            assert any(rid in d for d in rt.worker.stats.diverged)
    finally:
        MODE["v"] = "v1"


async def _dead_letters(rt: dasync.Runtime, queue: str, count: int) -> list[tuple[Any, str]]:
    from ._helpers import dead_letters

    found: list[tuple[Any, str]] = []

    async def enough() -> bool:
        nonlocal found
        found = await dead_letters(rt, queue)
        return len(found) >= count

    await wait_until(enough, within=20)
    return found


# --- plain Python's clocks and generators are deterministic inside routines ---------------


class Dice(Protocol):
    async def roll(self) -> list[float]: ...
    async def secret(self) -> str: ...
    async def in_thread(self) -> list[float]: ...


DICE_SLEEP = {"s": 5.0}
"""The durable sleep of ``roll``: the test scales it to the transport (real on NATS)."""


class DiceImpl(Dice):
    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def roll(self) -> list[float]:
        first = random.random()
        if first < 2:  # a branch on plain random: replays must take it too
            await self.leaf.a()
        second, when, u1, u4 = random.randint(0, 10**6), time.time(), uuid.uuid1(), uuid.uuid4()
        await asyncio.sleep(DICE_SLEEP["s"])
        return [first, float(second), when, float(u1.int % 997), float(u4.int % 991), time.time()]

    async def secret(self) -> str:
        return os.urandom(4).hex()

    async def in_thread(self) -> list[float]:
        # a thread is not part of the routine: it sees the real clock
        real = await asyncio.to_thread(time.time)
        return [real, time.time()]


async def test_random_time_and_uuid_are_the_same_on_every_replay(make_runtime, timing):
    DICE_SLEEP["s"] = timing.scale(100)
    async with make_runtime([LeafImpl, DiceImpl]) as rt:
        one = await rt.client.proxy(Dice).roll()
        two = await rt.client.proxy(Dice).roll()
        assert rt.worker.stats.diverged == []
    assert one != two  # each routine has its own generator
    assert one[5] >= one[2] + timing.scale(100) - 1e-6  # time moves with the step's input


async def test_urandom_in_a_routine_is_refused_with_what_to_use(make_runtime):
    async with make_runtime([LeafImpl, DiceImpl]) as rt:
        with pytest.raises(dasync.UnsafeInRoutine, match="random.randbytes"):
            await rt.client.proxy(Dice).secret()


async def test_threads_run_on_the_host_and_see_the_real_clock(make_runtime):
    async with make_runtime([LeafImpl, DiceImpl]) as rt:
        real, routine = await rt.client.proxy(Dice).in_thread()
    assert abs(real - time.time()) < 60


# --- identity: unique across services, bounded, depth-limited -----------------------------


class Left(Protocol):
    async def go(self) -> str: ...


class Right(Protocol):
    async def go(self) -> str: ...


class LeftImpl(Left):
    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def go(self) -> str:
        return await self.leaf.echo("left")


class RightImpl(Right):
    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def go(self) -> str:
        return await self.leaf.echo("right")


async def test_two_services_with_one_business_key_never_share_a_callee(make_runtime):
    async with make_runtime([LeafImpl, LeftImpl, RightImpl]) as rt:
        left = await rt.client.start(Left.go, routine_id="order-9")
        right = await rt.client.start(Right.go, routine_id="order-9")
        a, b = await left.result(timeout=20), await right.result(timeout=20)
    assert a == "left:order-9/Left.go.1" and b == "right:order-9/Right.go.1"


async def test_a_client_cannot_pick_a_derived_id(make_runtime):
    async with make_runtime([LeafImpl, LeftImpl]) as rt:
        with pytest.raises(ValueError, match="reserved"):
            await rt.client.start(Left.go, routine_id="order-9/Left.go.1")


class Deep(Protocol):
    async def down(self, n: int) -> int: ...


class DeepImpl(Deep):
    async def down(self, n: int) -> int:
        if len(dasync.call_id()) > MAX_ID_LENGTH:
            raise AssertionError(f"unbounded id: {dasync.call_id()}")
        return await self.down(n + 1)  # runaway recursion through self


@pytest.mark.slow
async def test_runaway_recursion_ends_with_a_clear_error(make_runtime, transport):
    if transport == "nats":
        pytest.skip("200 levels of routines take a while on a real server; memory pins the rule")
    async with make_runtime([DeepImpl]) as rt:
        with pytest.raises(dasync.CallDepthExceeded, match=f"{MAX_CALL_DEPTH} durable calls"):
            await rt.client.proxy(Deep).down(0)


# --- context, unawaited calls, cancels, client.start of a base method ----------------------

TENANT: contextvars.ContextVar[str] = dasync.propagate(contextvars.ContextVar("test_tenant"))


class Ctx(Protocol):
    async def outer(self) -> list[str]: ...
    async def inner(self) -> str: ...
    async def forgetful(self) -> str: ...


class CtxImpl(Ctx):
    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def outer(self) -> list[str]:
        TENANT.set("acme")
        got = await self.inner()
        return [got, TENANT.get()]

    async def inner(self) -> str:
        seen = TENANT.get("none")
        TENANT.set("changed-by-inner")  # does not flow back to the caller
        return seen

    async def forgetful(self) -> str:
        self.leaf.a()  # never awaited
        return "returned"


async def test_declared_context_variables_travel_with_durable_calls(make_runtime):
    async with make_runtime([LeafImpl, CtxImpl]) as rt:
        assert await rt.client.proxy(Ctx).outer() == ["acme", "acme"]


async def test_a_call_never_awaited_fails_the_routine_naming_the_line(make_runtime):
    async with make_runtime([LeafImpl, CtxImpl]) as rt:
        with pytest.raises(dasync.NotAwaited, match=r"Leaf\.a\(\) called at .*test_replay_safety"):
            await rt.client.proxy(Ctx).forgetful()


STUBBORN: list[str] = []


class Patient(Protocol):
    async def hold(self) -> str: ...


class PatientImpl(Patient):
    async def hold(self) -> str:
        try:
            await asyncio.Event().wait()  # nothing sets it: only a cancel ends the wait
        except asyncio.CancelledError:
            STUBBORN.append("first cancel caught")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            STUBBORN.append("second cancel")
            raise
        return "never"


async def test_a_routine_can_be_cancelled_again_after_catching_a_cancel(make_runtime):
    STUBBORN.clear()
    async with make_runtime([PatientImpl]) as rt:
        handle = await rt.client.start(Patient.hold, routine_id="patient")

        async def started() -> bool:
            return len(await steps(rt, "Patient", "patient")) >= 1

        await wait_until(started)
        await handle.cancel()

        async def caught() -> bool:
            return len(await steps(rt, "Patient", "patient")) == 2

        await wait_until(caught)
        await handle.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handle.result(timeout=20)
    assert STUBBORN[-1] == "second cancel" and "first cancel caught" in STUBBORN


@dasync.service
class Pricing:
    async def price(self) -> str:
        return f"priced by {type(self).__name__}"


@dasync.service
class SpecialPricing(Pricing):
    """Another service reusing Pricing's code: ``price`` is the same function object."""

    async def discount(self) -> int:
        return 10


async def test_client_start_of_a_base_method_starts_the_base_service(make_runtime):
    dasync.spec_of(SpecialPricing)  # built after Pricing's: must not capture Pricing.price
    async with make_runtime([Pricing]) as rt:  # only the base is deployed
        handle = await rt.client.start(Pricing.price)
        assert handle.service == "Pricing"
        assert await handle.result(timeout=20) == "priced by Pricing"
        assert await rt.client.proxy(Pricing).price() == "priced by Pricing"


# --- a routine that calls sys.exit() fails; the worker keeps serving ------------------------


class Quitter(Protocol):
    async def quit(self, code: int) -> str: ...
    async def ask(self) -> str: ...


class QuitterImpl(Quitter):
    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def quit(self, code: int) -> str:
        raise SystemExit(code)

    async def ask(self) -> str:
        try:
            return await self.quit(7)
        except SystemExit:  # never raised in a caller on a callee's behalf
            return "caught SystemExit"
        except dasync.RemoteError as exc:
            return f"remote {exc.type_name}"


async def test_sys_exit_in_a_routine_is_its_failure_not_the_workers(make_runtime):
    async with make_runtime([LeafImpl, QuitterImpl]) as rt:
        with pytest.raises(dasync.RemoteError, match="SystemExit"):
            await rt.client.proxy(Quitter).quit(7)
        assert await rt.client.proxy(Quitter).ask() == "remote builtins.SystemExit"
        assert await rt.client.proxy(Leaf).a() == 1  # still serving


# --- an async generator abandoned after break is closed on the routine's loop --------------

CLOSED: list[str] = []


class Streams(Protocol):
    async def first_two(self) -> list[int]: ...


class StreamsImpl(Streams):
    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def first_two(self) -> list[int]:
        async def numbers():  # type: ignore[no-untyped-def]
            try:
                for _ in range(10):
                    yield await self.leaf.a()
            finally:
                CLOSED.append(await self.leaf.echo("closed"))  # a durable call in finally

        out = []
        async for n in numbers():
            out.append(n)
            if len(out) == 2:
                break
        await asyncio.sleep(1)
        return out


async def test_an_abandoned_async_generator_runs_its_durable_finally(make_runtime):
    CLOSED.clear()
    async with make_runtime([LeafImpl, StreamsImpl]) as rt:
        handle = await rt.client.start(Streams.first_two, routine_id="streams")
        assert await handle.result(timeout=20) == [1, 1]
        calls = [c for s in await steps(rt, "Streams", "streams") for c in s.commands]
    assert set(CLOSED) == {"closed:streams/Streams.first_two.4"}  # after the sleep: as asyncio
    kinds = [type(c).__name__ for c in calls]
    assert kinds == ["Call", "Call", "StartTimer", "Call", "Complete"]


# --- dasync.testing: a divergence some caller swallowed still fails the test ---------------


class Swallow(Protocol):
    async def run(self) -> str: ...
    async def fickle(self) -> int: ...


FICKLE = {"runs": 0}


class SwallowImpl(Swallow):
    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def run(self) -> str:
        try:
            await self.fickle()
        except Exception:  # hides the NonDeterminismError from the test's own assertions
            return "swallowed"
        return "fine"

    async def fickle(self) -> int:
        FICKLE["runs"] += 1
        first = await (self.leaf.a() if FICKLE["runs"] == 1 else self.leaf.b())
        return first + await self.leaf.a()


async def test_the_test_runtime_raises_at_exit_for_a_swallowed_divergence():
    from dasync.testing import NonDeterminismFound, runtime

    FICKLE["runs"] = 0
    with pytest.raises(NonDeterminismFound, match="fickle|Swallow"):
        async with runtime([LeafImpl, SwallowImpl], force_replay=True) as rt:
            assert await rt.client.proxy(Swallow).run() == "swallowed"
