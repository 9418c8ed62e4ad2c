"""Run one generated program every way and list how dasync disagreed with asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ._compare import HarnessError, differences, order_violations, report
from ._dasync import run_dasync
from ._order import happens_before
from ._plain import run_plain
from ._program import Op, dump, render
from ._scenario import Entry, Outcome, Scenario
from ._services import SERVICES, Node
from ._ties import valid

__all__ = ["Verdict", "evaluate", "family", "scenario_for"]

CrashPoints = Callable[[int], Sequence[int]]
"""Given the number of commits of the live run, which commits to crash after."""


def scenario_for(op: Op) -> Scenario:
    return Scenario("generated", SERVICES, [Entry(Node, "run", (dump(op), 0.0), "diff")])


def family(mode: str) -> str:
    """``live``, ``forced`` or ``crash`` (the crash point does not matter for grouping)."""
    return "crash" if mode.startswith("crash") else mode


@dataclass
class Verdict:
    program: Op
    plain: Outcome
    outcomes: list[Outcome]
    failures: list[tuple[Outcome, list[str]]] = field(default_factory=list)

    def reports(self) -> list[str]:
        text = render(self.program)
        return [report(self.plain, o, problems, text) for o, problems in self.failures]


def evaluate(
    op: Op,
    crash_points: CrashPoints = lambda n: (),
    *,
    live: bool = True,
    forced: bool = True,
) -> Verdict:
    """The program under plain asyncio, then dasync live, forced replay and crashed."""
    if not valid(op):
        raise HarnessError(f"program with a scheduling-dependent race:\n{render(op)}")
    scenario = scenario_for(op)
    plain = run_plain(scenario)
    before = happens_before(op)
    broken = order_violations(plain.effects, before)
    if broken:
        raise HarnessError(
            f"plain asyncio broke orderings the harness assumed: {broken}\n"
            f"effects: {plain.effects}\nprogram:\n{render(op)}"
        )

    async def modes() -> list[Outcome]:
        first = await run_dasync(scenario)
        out = [first] if live else []
        if forced:
            out.append(await run_dasync(scenario, force_replay=True))
        for k in crash_points(first.commits):
            out.append(await run_dasync(scenario, crash_after=k))
        return out

    outcomes = asyncio.run(modes())
    verdict = Verdict(op, plain, outcomes)
    for outcome in outcomes:
        problems = differences(plain, outcome, before)
        if problems:
            verdict.failures.append((outcome, problems))
    return verdict
