"""Generated programs by the thousand: run them all, group the disagreements, shrink one each.

Hypothesis draws the programs (derandomized in CI, or from a printed seed) and
the crash points; every program runs every way. A disagreement does not stop
the run: programs that disagree the same way (same mode families, same kinds
of problem) form a group, and the smallest program of each group is then
minimized (``_minimize``) and reported. So one CI run lists every way dasync
currently disagrees with asyncio, not just the first one met.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from ._check import Verdict, evaluate, family
from ._compare import HarnessError
from ._minimize import minimize
from ._program import Op, render, walk
from ._strategies import Program, programs

__all__ = ["Survey", "crash_points_of", "problem_kind", "run_survey", "still_fails"]

CI_EXAMPLES = int(os.environ.get("DASYNC_DIFF_EXAMPLES", "1000"))
"""Programs per CI run; DASYNC_DIFF_EXAMPLES overrides (20000 for a long run)."""
CRASHES = int(os.environ.get("DASYNC_DIFF_CRASHES", "1"))
"""Crash points tried per program, drawn by hypothesis among the live run's commits."""
BUDGET = float(os.environ.get("DASYNC_DIFF_BUDGET", str(max(300, CI_EXAMPLES * 0.3))))
"""Real seconds one survey may take: an engine that hangs on every program (each run gives
up after ``_dasync.REAL_TIMEOUT``) must not hold CI for hours. Programs past it are
counted as skipped, and a survey that skipped any fails."""


def problem_kind(problem: str) -> str:
    if problem.startswith("entry"):
        return "result"
    if problem.startswith("effects missing"):
        return "missing effects"
    if problem.startswith("effects extra"):
        return "extra effects"
    if problem.startswith("order"):
        return "order"
    if problem.startswith("effects outside"):
        return "effects outside routines"
    if problem.startswith("dasync raised"):
        return "runtime error"
    return "detail"


def signature(verdict: Verdict) -> tuple[str, ...]:
    return tuple(
        sorted(
            {
                f"{family(o.mode)}:{problem_kind(p)}"
                for o, ps in verdict.failures
                for p in ps
                if problem_kind(p) != "detail"
            }
        )
    )


def crash_points_of(verdict: Verdict) -> Callable[[int], list[int]]:
    """The crash points ``verdict`` failed at, clamped to another program's commits."""
    points = {int(o.mode.split("@")[1]) for o, _ in verdict.failures if o.mode.startswith("crash")}
    return lambda n: sorted({min(k, max(1, n)) for k in points})


def still_fails(verdict: Verdict, attempts: int = 2) -> Callable[[Op], bool]:
    """Does a candidate fail like ``verdict`` (same mode family, a kind of problem in common)?
    Tried ``attempts`` times: replay bugs that hang on set iteration order come and go."""
    families = {family(o.mode) for o, _ in verdict.failures}
    kinds = {problem_kind(p) for _, ps in verdict.failures for p in ps} - {"detail"}

    def once(op: Op) -> bool:
        try:
            v = evaluate(op, crash_points_of(verdict), live=True, forced="forced" in families)
        except HarnessError:
            return False
        return any(
            family(o.mode) in families and kinds & {problem_kind(p) for p in ps}
            for o, ps in v.failures
        )

    return lambda op: any(once(op) for _ in range(attempts))


@dataclass
class Survey:
    examples: int = 0
    failed: int = 0
    groups: dict[tuple[str, ...], list[Verdict]] = field(default_factory=dict)
    harness: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: int = 0

    def add(self, verdict: Verdict) -> None:
        self.failed += 1
        group = self.groups.setdefault(signature(verdict), [])
        group.append(verdict)
        group.sort(key=lambda v: sum(1 for _ in walk(v.program)))
        del group[3:]

    def report(self, minimize_budget: float) -> str:
        """One minimized report per group, within ``minimize_budget`` seconds in all."""
        lines = [
            f"{self.failed} of {self.examples} generated programs disagreed with plain asyncio "
            f"({len(self.groups)} groups, {self.seconds:.0f}s):"
        ]
        if self.skipped:
            lines.append(f"{self.skipped} programs not run: the time budget ran out")
        for text in self.harness[:3]:
            lines.append("HARNESS ERROR (the harness, not dasync, failed on a program):\n" + text)
        per_group = minimize_budget / max(1, len(self.groups))
        for key, verdicts in sorted(self.groups.items(), key=lambda kv: -len(kv[1])):
            smallest = verdicts[0]
            small = minimize(smallest.program, still_fails(smallest), per_group)
            again = evaluate(small, crash_points_of(smallest))
            shown = again if again.failures else smallest
            lines.append("=" * 100)
            lines.append(f"GROUP {' '.join(key)}")
            if not again.failures:
                lines.append("(the minimized program passed when re-run: shown as generated)")
            lines.append("\n\n".join(shown.reports()))
        return "\n".join(lines)


def run_survey(
    examples: int,
    *,
    random_seed: int | None = None,
    crashes: int = CRASHES,
    max_nodes: int = 14,
    progress: Callable[[Survey], None] | None = None,
    budget: float = BUDGET,
) -> Survey:
    """Evaluate ``examples`` generated programs (derandomized unless a seed is given)."""
    survey = Survey()
    started = time.monotonic()

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=random_seed is None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(program=programs(max_nodes=max_nodes), data=st.data())
    def one(program: Program, data: Any) -> None:
        survey.examples += 1
        if time.monotonic() - started > budget:
            survey.skipped += 1
            return

        def points(commits: int) -> list[int]:
            return [
                data.draw(st.integers(1, max(1, commits)), label="crash after commit")
                for _ in range(crashes)
            ]

        try:
            verdict = evaluate(program.op, points)
        except HarnessError as exc:
            survey.harness.append(str(exc))
            return
        except Exception as exc:  # the harness itself failed: report it with the program
            survey.harness.append(f"{type(exc).__name__}: {exc}\n{render(program.op)}")
            return
        if verdict.failures:
            survey.add(verdict)
        if progress is not None:
            progress(survey)

    if random_seed is not None:
        one = seed(random_seed)(one)
    one()
    survey.seconds = time.monotonic() - started
    return survey
