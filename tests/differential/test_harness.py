"""The harness's own parts, checked on known cases: a wrong oracle would hide bugs."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings

from ._check import evaluate, scenario_for
from ._dasync import run_dasync
from ._minimize import minimize
from ._order import happens_before
from ._plain import run_plain
from ._program import (
    Call,
    Const,
    Gather,
    Raise,
    Seq,
    Sleep,
    TaskGroup,
    Timeout,
    Try,
    Wait,
    WaitFor,
    walk,
)
from ._shape import show_result
from ._strategies import Program, programs
from ._ties import valid
from ._vloop import run_virtual

pytestmark = pytest.mark.differential

PROGRAM = Seq(
    1,
    (
        Call(2, 4.0, "ok", 7),
        Try(3, WaitFor(4, Call(5, 64.0, "hold:return", 3), 16.0), "Exception", None, None),
        Gather(6, (Call(7, 2.0, "ok", 1), Call(8, 1.0, "fail:app", 2)), True),
        Wait(9, (Call(10, 8.0, "ok", 1), Call(11, 32.0, "hold:raise", 2)), "FIRST_COMPLETED", None),
        Call(12, 128.0, "ok", 5),
    ),
)


def test_virtual_loop_orders_timers_and_runs_threads_instantly() -> None:
    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        out: list[object] = []

        async def after(delay: float, tag: str) -> None:
            await asyncio.sleep(delay)
            out.append(tag)

        await asyncio.gather(after(300, "c"), after(100, "a"), after(200, "b"))
        out.append(await asyncio.to_thread(pow, 2, 10))
        out.append(loop.time() - start)
        return out

    assert run_virtual(main) == ["a", "b", "c", 1024, 300.0]


def test_plain_oracle_of_a_known_program() -> None:
    outcome = run_plain(scenario_for(PROGRAM))
    error = "['tests.differential._exceptions.AppError', [2, 'app 2'], \"(2, 'app 2')\", "
    error += "[['code', 2], ['detail', 'app 2']], [], None]"
    # wait_for returns what the cancelled callee returned (-3, Python 3.11); wait() reports
    # branch 0 done with 1 and branch 1 pending
    expected = f"returned [7, -3, [1, ['raised', {error}]], [[0, 1], ['pending', [1]]], 5]"
    assert show_result(outcome.results[0]) == expected
    assert outcome.effects.index("n5:cancel") < outcome.effects.index("n7:start")
    assert outcome.effects.index("n12:start") < outcome.effects.index("n11:cancel")


def test_happens_before_follows_sequences_and_joins_only() -> None:
    before = happens_before(PROGRAM)
    assert before("n2:done", "n5:start")
    assert before("n5:cancel", "n7:start")  # wait_for waits for the cancelled callee
    assert before("n8:fail", "n10:start")  # gather(return_exceptions=True) joins
    assert not before("n7:done", "n8:fail")  # concurrent branches
    assert not before("n11:cancel", "n12:start")  # wait() does not await what it cancels
    # a waited-for branch may start after wait() returned (its call still in flight)
    assert not before("n10:start", "n12:done")
    assert before("n2:start", "n2:done") and before("n2:done", "n12:start")


def test_tie_rules() -> None:
    assert not valid(TaskGroup(1, (Raise(2, "app", 1), Const(3, 1))))
    assert valid(TaskGroup(1, (Raise(2, "app", 1), Seq(3, (Sleep(4, 2.0), Const(5, 1))))))
    two_converters = TaskGroup(1, (Call(2, 4.0, "hold:return", 1), Call(3, 8.0, "hold:return", 2)))
    assert not valid(two_converters)
    # found by the long run: cancelled by a timeout, this gather raised the first branch's
    # AppError in plain asyncio (its cleanup finished in the same loop iteration) and the
    # second branch's CancelledError in dasync (the cleanup was a round trip)
    converter = Try(
        4, Call(5, 4.0, "fail:app", 6), "ExceptionGroup", None, Call(6, 131072.0, "hold:return", 7)
    )
    raced = Timeout(1, Gather(3, (converter, Call(12, 16384.0, "ok", 1)), False), 1024.0)
    assert not valid(raced)
    assert valid(Timeout(1, Gather(3, (converter,), False), 1024.0))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(max_nodes=16))
def test_generated_programs_are_tie_free_with_distinct_durations(program: Program) -> None:
    assert valid(program.op)
    ids = [op.id for op in walk(program.op)]
    assert len(ids) == len(set(ids))
    durations = [
        getattr(op, name)
        for op in walk(program.op)
        for name in ("delay", "timeout")
        if getattr(op, name, None) is not None
    ]
    assert len(durations) == len(set(durations))


def test_crash_mode_kills_and_recovers() -> None:
    scenario = scenario_for(PROGRAM)
    live = asyncio.run(run_dasync(scenario))
    assert live.commits > 5
    crashed = asyncio.run(run_dasync(scenario, crash_after=3))
    assert "killed right after commit 3" in crashed.diagnostics
    assert crashed.results[0][0] in ("ok", "raised")  # the new runtime finished the routine


def test_agreement_on_a_sequential_program() -> None:
    """The same program must agree in every mode on any engine that keeps its promises."""
    program = Seq(1, (Call(2, 4.0, "ok", 7), Call(3, 2.0, "ok", 1)))
    verdict = evaluate(program, lambda n: list(range(1, n + 1)))
    assert not verdict.failures, "\n".join(verdict.reports())


def test_minimize_keeps_what_fails() -> None:
    def fails(op: object) -> bool:
        return any(isinstance(x, Call) and x.mode == "hold:raise" for x in walk(op))  # type: ignore[arg-type]

    small = minimize(PROGRAM, fails, budget=5.0)
    assert fails(small)
    assert sum(1 for _ in walk(small)) <= 2
