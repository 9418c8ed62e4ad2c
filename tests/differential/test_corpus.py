"""Hand-written differential corpus: one small program per class of behaviour.

Each test runs its scenario under plain asyncio (the oracle), then under dasync
live, with forced replay and with a crash after each journal commit in turn
(memory transport), and live and forced on a real nats-server (``backend``
fixture, ``[nats]`` ids). A failure names the mode, the expected (plain
asyncio) and observed outcome, effects and order. Many of these fail against
the engine of today: that is their purpose; they are neither skipped nor
marked xfail.

Durations are in nominal seconds scaled by ``unit()`` (1 on memory and in the
oracle, ``NATS_UNIT`` real seconds on NATS), and races are at least 2x apart.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import json
import random
import time
import uuid
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import pytest

import dasync

from ._effects import Effects
from ._fourway import check, run_dasync_modes, run_nats, settle_garbage, unit
from ._scenario import Control, Entry, Scenario
from ._shape import shape

pytestmark = pytest.mark.differential

FOREVER = 100.0
"""A leaf that is meant to be cancelled sleeps this long (1 s on NATS, where its durable
timer still runs out after the cancel); every race is decided by 50."""


# --- the leaf service every scenario uses ----------------------------------------------------


class Declined(Exception):
    """Attributes set in ``__init__``; ``args`` holds only the message."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"declined {code}")
        self.code = code
        self.reason = reason


BIG = 2**70 + 1
PARIS_NOON = datetime(2026, 7, 1, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))
ERROR_KINDS = ["attrs", "cause", "notes", "group", "unicode", "oserror"]


class Ledger(Protocol):
    async def value(self, key: str, delay: float, v: int) -> int: ...
    async def hold(self, key: str, delay: float, returns: int | None) -> int: ...
    async def fail(self, key: str, delay: float) -> int: ...
    async def note(self, key: str) -> int: ...
    async def echo(self, text: str) -> str: ...
    async def big(self) -> int: ...
    async def inf(self) -> float: ...
    async def nan(self) -> float: ...
    async def raw(self) -> bytes: ...
    async def zoned(self) -> datetime: ...
    async def raise_kind(self, kind: str) -> int: ...


class LedgerImpl(Ledger):
    def __init__(self, log: Effects) -> None:
        self.log = log

    async def value(self, key: str, delay: float, v: int) -> int:
        self.log.record(f"{key}:start")
        await asyncio.sleep(delay * unit())
        self.log.record(f"{key}:done")
        return v

    async def hold(self, key: str, delay: float, returns: int | None) -> int:
        """Sleeps; when cancelled, cleans up with durable calls, then re-raises or returns."""
        self.log.record(f"{key}:start")
        try:
            await asyncio.sleep(delay * unit())
        except asyncio.CancelledError:
            await self.note(f"{key}:cleanup")
            if returns is not None:
                return returns
            raise
        finally:
            await self.note(f"{key}:finally")
        self.log.record(f"{key}:done")
        return 0

    async def fail(self, key: str, delay: float) -> int:
        self.log.record(f"{key}:start")
        await asyncio.sleep(delay * unit())
        self.log.record(f"{key}:fail")
        raise Declined(len(key), key)

    async def note(self, key: str) -> int:
        self.log.record(key)
        return 0

    async def echo(self, text: str) -> str:
        self.log.record("echo")
        return text

    async def big(self) -> int:
        return BIG

    async def inf(self) -> float:
        return float("inf")

    async def nan(self) -> float:
        return float("nan")

    async def raw(self) -> bytes:
        return b"\x00\xff\xfe"

    async def zoned(self) -> datetime:
        return PARIS_NOON

    async def raise_kind(self, kind: str) -> int:
        if kind == "attrs":
            raise Declined(7, "card expired")
        if kind == "cause":
            raise Declined(8, "no funds") from KeyError("balance")
        if kind == "notes":
            exc = Declined(9, "later")
            exc.add_note("retry after 3 s")
            raise exc
        if kind == "group":
            raise ExceptionGroup("several", [ValueError("a"), Declined(10, "b")])
        if kind == "unicode":
            b"ok \xff\xfe".decode("utf-8")
        if kind == "oserror":
            raise OSError(errno.ENOENT, "No such file or directory", "orders.csv")
        return 0


# --- the routines under test ----------------------------------------------------------------

SOURCES = {
    "random.random()": lambda: repr(random.random()),
    "time.time()": lambda: repr(time.time()),
    "uuid.uuid4()": lambda: str(uuid.uuid4()),
}
"""Values plain code computes differently on every run; inside a routine, replay must see
the first run's value (the engine makes these deterministic)."""
UNRECORDABLE = {"datetime.now()": lambda: datetime.now().isoformat()}
"""C code that reads the system clock directly: documented as not deterministic; replay must
diverge loudly, naming the line (tests below)."""

REQUEST_ID: contextvars.ContextVar[str] = dasync.propagate(
    contextvars.ContextVar("request_id", default="unset")
)
"""Declared: it travels with durable calls (an undeclared variable would not)."""
_BACKGROUND: set[asyncio.Task[Any]] = set()


class Scenarios(Protocol):
    async def as_completed_tagged(self) -> list[list[int]]: ...
    async def group_fails(self) -> list[Any]: ...
    async def first_completed(self) -> list[list[int]]: ...
    async def nondeterministic(self, source: str) -> bool: ...
    async def big_values(self) -> list[int]: ...
    async def add_one(self, x: int) -> int: ...
    async def cancel_direct(self) -> str: ...
    async def cancel_wait_for(self) -> str: ...
    async def cancel_task_group(self) -> str: ...
    async def cancel_timeout(self) -> str: ...
    async def cancel_returns_value(self) -> list[int]: ...
    async def sub_returns_on_cancel(self) -> int: ...
    async def leaves_a_task(self) -> str: ...
    async def abandons_generator(self) -> list[int]: ...
    async def threads(self) -> list[int]: ...
    async def catch_all(self) -> list[Any]: ...
    async def propagate(self, kind: str) -> int: ...
    async def float_inf(self) -> float: ...
    async def float_nan(self) -> float: ...
    async def raw_bytes(self) -> bytes: ...
    async def zoned_datetime(self) -> datetime: ...
    async def huge_int(self) -> int: ...
    async def same_float(self, v: float) -> float: ...
    async def with_context(self) -> list[str]: ...
    async def read_context(self) -> str: ...
    async def forgets(self) -> str: ...
    async def stubborn(self) -> str: ...


class ScenariosImpl(Scenarios):
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    # 1. results paired with the wrong calls under set iteration order

    async def as_completed_tagged(self) -> list[list[int]]:
        """Each coroutine returns its own index with the value its call got."""

        async def tagged(i: int, delay: float) -> list[int]:
            return [i, await self.ledger.value(f"ac{i}", delay, 100 + i)]

        delays = [40.0, 10.0, 30.0, 20.0, 50.0]
        out = []
        for f in asyncio.as_completed([tagged(i, d) for i, d in enumerate(delays)]):
            out.append(await f)
        return out

    async def group_fails(self) -> list[Any]:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.ledger.hold("tg-a", FOREVER, None))
                tg.create_task(self.ledger.fail("tg-b", 10.0))
                tg.create_task(self.ledger.hold("tg-c", FOREVER, None))
        except* Declined as eg:
            caught = shape(eg)
        await self.ledger.note("tg-after")
        return caught

    async def first_completed(self) -> list[list[int]]:
        delays = [30.0, 10.0, 20.0, 40.0]
        tasks = [
            asyncio.create_task(self.ledger.value(f"fc{i}", d, i)) for i, d in enumerate(delays)
        ]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.sleep(5.0 * unit())  # one more step: replays go past the cancels
        return [
            sorted(tasks.index(t) for t in done),
            sorted(tasks.index(t) for t in pending),
            [t.result() for t in done],
        ]

    # 2. non-determinism

    async def nondeterministic(self, source: str) -> bool:
        """Computes a value, journals it (a call), then compares it after the next step."""
        value = {**SOURCES, **UNRECORDABLE}[source]()
        echoed = await self.ledger.echo(value)  # the call and its reply are journaled
        await asyncio.sleep(10.0 * unit())  # a second step: replays run the line above again
        return echoed == value

    # 3. journal values

    async def big_values(self) -> list[int]:
        a = await self.ledger.big()
        await asyncio.sleep(1.0 * unit())
        return [a, await self.add_one(a)]

    async def add_one(self, x: int) -> int:
        return x + 1

    # 4. cancellation

    async def cancel_direct(self) -> str:
        task = asyncio.create_task(self.ledger.hold("cd", FOREVER, None))
        await asyncio.sleep(10.0 * unit())
        task.cancel()
        try:
            await task
            result = "finished"
        except asyncio.CancelledError:
            result = "cancelled"
        await self.ledger.note("cd-after")
        return result

    async def cancel_wait_for(self) -> str:
        try:
            await asyncio.wait_for(self.ledger.hold("cw", FOREVER, None), 10.0 * unit())
            result = "finished"
        except TimeoutError:
            result = "timed out"
        await self.ledger.note("cw-after")
        return result

    async def cancel_task_group(self) -> str:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.ledger.hold("ct", FOREVER, None))
                tg.create_task(self.ledger.fail("ct-fail", 10.0))
            result = "finished"
        except* Declined:
            result = "failed"
        await self.ledger.note("ct-after")
        return result

    async def cancel_timeout(self) -> str:
        try:
            async with asyncio.timeout(10.0 * unit()):
                await self.ledger.hold("cto", FOREVER, None)
            result = "finished"
        except TimeoutError:
            result = "timed out"
        await self.ledger.note("cto-after")
        return result

    async def cancel_returns_value(self) -> list[int]:
        """The callee catches CancelledError and returns: the caller gets the value."""
        by_wait_for = await asyncio.wait_for(self.ledger.hold("cr1", FOREVER, 7), 10.0 * unit())
        task = asyncio.create_task(self.ledger.hold("cr2", FOREVER, 8))
        await asyncio.sleep(10.0 * unit())
        task.cancel()
        by_task = await task
        by_sub = await asyncio.wait_for(self.sub_returns_on_cancel(), 10.0 * unit())
        return [by_wait_for, by_task, by_sub]

    async def sub_returns_on_cancel(self) -> int:
        try:
            await asyncio.sleep(FOREVER * unit())
        except asyncio.CancelledError:
            await self.ledger.note("cr3:cleanup")
            return 9
        return 0

    # 5. tasks still pending when the routine returns

    async def leaves_a_task(self) -> str:
        task = asyncio.create_task(self._background())
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)
        await self.ledger.value("bg-main", 10.0, 1)
        return "returned"

    async def _background(self) -> None:
        try:
            await self.ledger.hold("bg", FOREVER, None)
        finally:
            await self.ledger.note("bg-finally")

    # 6. async generator abandoned after break

    async def _numbers(self) -> Any:
        try:
            for i in range(5):
                yield await self.ledger.value(f"gen{i}", 10.0, i)
        finally:
            await self.ledger.note("gen-finally")

    async def abandons_generator(self) -> list[int]:
        out = []
        async for v in self._numbers():
            out.append(v)
            if len(out) == 2:
                break
        out.append(await self.ledger.value("gen-after", 20.0, 9))
        return out

    # 7. threads

    async def threads(self) -> list[int]:
        a = await asyncio.to_thread(pow, 2, 10)
        b = await asyncio.get_running_loop().run_in_executor(None, sum, [1, 2, 3])
        c = await self.ledger.value("thr", 10.0, a + b)
        await asyncio.sleep(5.0 * unit())
        d = await asyncio.to_thread(len, "after a timer")
        return [a, b, c, d]

    # 8. exception shapes

    async def catch_all(self) -> list[Any]:
        shapes = []
        for kind in ERROR_KINDS:
            try:
                await self.ledger.raise_kind(kind)
            except Exception as exc:
                shapes.append(shape(exc))
        return shapes

    async def propagate(self, kind: str) -> int:
        return await self.ledger.raise_kind(kind)

    # 9. types

    async def float_inf(self) -> float:
        return await self.same_float(await self.ledger.inf())  # leaf -> routine -> sub -> client

    async def float_nan(self) -> float:
        return await self.same_float(await self.ledger.nan())

    async def same_float(self, v: float) -> float:
        return v

    async def raw_bytes(self) -> bytes:
        v = await self.ledger.raw()
        await asyncio.sleep(1.0 * unit())
        return v

    async def zoned_datetime(self) -> datetime:
        v = await self.ledger.zoned()
        await asyncio.sleep(1.0 * unit())
        return v

    async def huge_int(self) -> int:
        v = await self.ledger.big()
        await asyncio.sleep(1.0 * unit())
        return v

    # 10. context variables (plain-asyncio semantics; see the test)

    async def with_context(self) -> list[str]:
        REQUEST_ID.set("req-42")
        direct = await self.read_context()
        in_task = await asyncio.create_task(self.read_context())
        return [direct, in_task]

    async def read_context(self) -> str:
        await asyncio.sleep(1.0 * unit())
        return REQUEST_ID.get()

    # 11. a durable call never awaited

    async def forgets(self) -> str:
        self.ledger.note("forgotten")  # type: ignore[unused-coroutine]
        await asyncio.sleep(1.0 * unit())
        return "returned"

    # 13. cancelled twice

    async def stubborn(self) -> str:
        try:
            await self.ledger.hold("st1", FOREVER, None)
        except asyncio.CancelledError:
            await self.ledger.note("st-first-cancel")
            try:
                await self.ledger.hold("st2", FOREVER, None)
            except asyncio.CancelledError:
                await self.ledger.note("st-second-cancel")
                raise
        return "not cancelled"


SERVICES: list[type] = [LedgerImpl, ScenariosImpl]


def scenario(method: str, *args: Any, **kwargs: Any) -> Scenario:
    return Scenario(method, SERVICES, [Entry(Scenarios, method, args, f"c-{method}")], **kwargs)


# --- 1. results paired with the wrong calls under set iteration order -----------------------


async def test_as_completed_pairs_each_result_with_its_call(backend):
    await check(scenario("as_completed_tagged"), backend)


async def test_task_group_failure_cancels_the_others(backend):
    await check(
        scenario("group_fails"),
        backend,
        order=[(f"tg-{x}:{y}", "tg-after") for x in "ac" for y in ("cleanup", "finally")],
    )


async def test_wait_first_completed_then_cancel_pending(backend):
    await check(scenario("first_completed"), backend)


# --- 2. non-determinism ---------------------------------------------------------------------


async def test_random_time_uuid_are_stable_across_replay(backend):
    """random.random(), time.time() and uuid.uuid4() inside a routine (one entry each): the
    value computed before a step must be the one replay computes again -- the journaled call
    has it as its argument."""
    entries = [
        Entry(Scenarios, "nondeterministic", (name,), f"c-nondet-{i}")
        for i, name in enumerate(SOURCES)
    ]
    await check(Scenario("non-determinism", SERVICES, entries), backend)


async def test_datetime_now_is_not_recordable_and_replay_says_so(backend):
    """Documented difference: datetime.now() cannot be intercepted (C code reads the system
    clock). Replay must not go quietly another way: the first replay fails the caller with a
    NonDeterminismError naming the differing argument and the user's line."""
    async with backend.runtime(SERVICES, container={"log": Effects(durable=True)},
                               force_replay=True) as rt:  # fmt: skip
        with pytest.raises(dasync.NonDeterminismError) as info:
            await rt.client.proxy(Scenarios).nondeterministic("datetime.now()")
    err = info.value
    assert err.differs == "args" and "Ledger.echo" in err.actual
    assert "test_corpus.py" in err.where and "in nondeterministic" in err.where


# --- 3. journal values ----------------------------------------------------------------------


async def test_int_above_2_64_through_journal(backend):
    await check(scenario("big_values"), backend)


# --- 4. cancellation ------------------------------------------------------------------------


def _after(key: str) -> list[tuple[str, str]]:
    return [(f"{key}:cleanup", f"{key}-after"), (f"{key}:finally", f"{key}-after")]


async def test_cancel_task_awaiting_a_call_waits_for_callee_cleanup(backend):
    await check(scenario("cancel_direct"), backend, order=_after("cd"))


async def test_wait_for_expiry_waits_for_callee_cleanup(backend):
    await check(scenario("cancel_wait_for"), backend, order=_after("cw"))


async def test_task_group_cancel_waits_for_callee_cleanup(backend):
    await check(scenario("cancel_task_group"), backend, order=_after("ct"))


async def test_timeout_waits_for_callee_cleanup(backend):
    await check(scenario("cancel_timeout"), backend, order=_after("cto"))


async def test_callee_that_catches_cancel_and_returns_gives_its_value(backend):
    await check(scenario("cancel_returns_value"), backend)


# --- 5. pending tasks at return -------------------------------------------------------------


async def test_tasks_pending_at_return_are_cancelled_and_their_finally_runs(backend):
    await check(scenario("leaves_a_task"), backend, order=[("bg:cleanup", "bg-finally")])


# --- 6. async generator abandoned -----------------------------------------------------------


async def test_abandoned_async_generator_runs_its_finally(backend):
    await check(scenario("abandons_generator"), backend)


# --- 7. threads -----------------------------------------------------------------------------


async def test_to_thread_and_run_in_executor(backend):
    await check(scenario("threads"), backend)


# --- 8. exception shapes --------------------------------------------------------------------


async def test_exceptions_keep_their_shape(backend):
    entries = [Entry(Scenarios, "catch_all", (), "c-catch-all")] + [
        Entry(Scenarios, "propagate", (kind,), f"c-propagate-{kind}") for kind in ERROR_KINDS
    ]
    await check(Scenario("exception shapes", SERVICES, entries), backend)


# --- 9. types -------------------------------------------------------------------------------


async def test_inf_nan_bytes_zoned_datetime_big_int(backend):
    """Each value from a leaf, through the routine (and a sub-routine for floats), to the
    client: ``inf``, ``nan``, non-UTF-8 ``bytes``, a ``ZoneInfo`` datetime, ``2**70 + 1``."""
    methods = ["float_inf", "float_nan", "raw_bytes", "zoned_datetime", "huge_int"]
    entries = [Entry(Scenarios, m, (), f"c-{m}") for m in methods]
    await check(Scenario("types", SERVICES, entries), backend)


# --- 10. context variables ------------------------------------------------------------------


async def test_context_variable_seen_by_sub_routine(backend):
    """PLAIN-ASYNCIO SEMANTICS, TO BE ADAPTED: a context variable set in a routine is seen by
    the sub-routine it calls through ``self`` and by a task it creates, as a direct await and
    ``create_task`` see it. The engine will propagate only DECLARED context variables: once
    that API exists, declare ``REQUEST_ID`` here (and expect "unset" for an undeclared one)."""
    await check(scenario("with_context"), backend)


# --- 11. a durable call never awaited -------------------------------------------------------


async def test_durable_call_never_awaited_is_an_error(backend):
    """No oracle: asyncio only warns ("coroutine ... was never awaited"). dasync must fail the
    routine with an error that names the call, in every mode, rather than drop it silently."""
    sc = scenario("forgets")
    if backend.transport == "memory":
        outcomes = await run_dasync_modes(sc)
    else:
        outcomes = [await run_nats(sc, backend), await run_nats(sc, backend, force_replay=True)]
    settle_garbage()
    wrong = []
    for o in outcomes:
        kind, body = o.results[0]
        if kind != "raised" or "Ledger.note" not in json.dumps(body):
            wrong.append(f"{o.mode}: {kind} {body!r}; effects {o.effects}; {o.diagnostics[:3]}")
    if wrong:
        pytest.fail(
            "a routine that never awaits `self.ledger.note('forgotten')` must fail naming "
            "Ledger.note; instead:\n" + "\n".join(wrong),
            pytrace=False,
        )


# --- 12. the same business key as routine id ------------------------------------------------


class Mailer(Protocol):
    async def send(self, who: str, order: str) -> str: ...


class MailerImpl(Mailer):
    def __init__(self, log: Effects) -> None:
        self.log = log

    async def send(self, who: str, order: str) -> str:
        self.log.record(f"mail:{who}:{order}")
        return f"mailed {who} {order}"


class Orders(Protocol):
    async def place(self, order: str) -> str: ...


class OrdersImpl(Orders):
    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer

    async def place(self, order: str) -> str:
        return await self.mailer.send("orders", order)


class Invoices(Protocol):
    async def bill(self, order: str) -> str: ...


class InvoicesImpl(Invoices):
    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer

    async def bill(self, order: str) -> str:
        return await self.mailer.send("invoices", order)


async def test_two_services_same_routine_id_calling_a_third(backend):
    entries = [Entry(Orders, "place", ("o-1",), "o-1"), Entry(Invoices, "bill", ("o-1",), "o-1")]
    await check(Scenario("same key", [MailerImpl, OrdersImpl, InvoicesImpl], entries), backend)


# --- 13. cancelled twice --------------------------------------------------------------------


async def _cancel_twice(ctl: Control) -> None:
    await ctl.until("st1:start")
    await ctl.cancel(0)
    await ctl.until("st2:start")
    await ctl.cancel(0)


async def test_routine_cancelled_twice(backend):
    await check(
        scenario("stubborn", driver=_cancel_twice),
        backend,
        order=[("st1:cleanup", "st-first-cancel"), ("st2:cleanup", "st-second-cancel")],
    )


# --- 14. client.start(Base.method) with a service subclassing another -----------------------


@dasync.service
class Greeter:
    greeting = "hello"

    async def greet(self, name: str) -> str:
        await asyncio.sleep(1.0 * unit())
        return f"{self.greeting} {name} from {type(self).__name__}"


@dasync.service
class LoudGreeter(Greeter):
    greeting = "HELLO"


async def test_start_base_method_with_subclassed_service(backend):
    """``client.start(Greeter.greet)`` with a subclass of ``Greeter`` hosted too runs on
    ``Greeter``. ``LoudGreeter.greet is Greeter.greet`` (one function object), so the guide
    (Calling from outside) makes ``client.start(X.inherited)`` start it on the service of
    the class that defines it, and ``client.proxy(LoudGreeter).greet(...)`` the way to the
    subclass: that is what the second entry uses (the owner's decision; the plain-asyncio
    reading of ``client.start(LoudGreeter.greet)`` would be LoudGreeter)."""
    entries = [
        Entry(Greeter, "greet", ("ann",), "greet-ann"),
        Entry(LoudGreeter, "greet", ("bob",), "greet-bob", via="proxy"),
    ]
    await check(Scenario("subclassed service", [Greeter, LoudGreeter], entries), backend)


class Pricing(Protocol):
    async def price(self, item: str) -> int: ...


class BasePricing(Pricing):
    rate = 1

    async def price(self, item: str) -> int:
        return len(item) * self.rate


class DoublePricing(BasePricing):
    rate = 2


async def test_start_contract_method_hosted_by_a_subclass(backend):
    entries = [Entry(Pricing, "price", ("book",), "price-book")]
    await check(Scenario("subclassed implementation", [DoublePricing], entries), backend)
