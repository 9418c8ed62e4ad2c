"""A hand-written scenario, run every way and compared with plain asyncio.

On memory: live, forced replay, and a crash after each journal commit in turn
(``crash@1`` ... ``crash@n``, n the live run's commits). On NATS (a real
nats-server, real timers): live, forced replay, and live on two workers (each with its
own lane: a routine starts on either, its replies and timers must find it), with
``use_schedules=False``:
server-side schedules fire in 250 ms batches in stream order (docs/nats.md,
"Precision"), which would decide races between different routines' timers 100 ms
apart by arrival order; the nak-until-due fallback fires each a few ms late.

Every mode's outcome is compared with the plain-asyncio oracle (results, effect
multiset, and the ``order`` pairs the scenario names); the test fails with one
report per way of disagreeing (crash points that disagree in the same kinds of
way are listed together, the first one shown).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Iterable
from typing import Any

import pytest

from ._compare import differences, order_violations, report
from ._dasync import observed, result_of, run_dasync, start_entry
from ._effects import Effects
from ._plain import run_plain_nested
from ._scenario import Outcome, Scenario

__all__ = ["NATS_UNIT", "UNIT", "check", "run_dasync_modes", "run_nats", "settle_garbage", "unit"]

NATS_UNIT = 0.01
"""Real seconds per nominal second on NATS, where timers are real: 100 -> 1 s."""

NATS_WAIT = 5.0
"""Real seconds a NATS run may take; a scenario's own timers take well under 1 s there."""

UNIT = [1.0]
"""Seconds per nominal second for corpus services (``unit()``); 1 but on NATS."""


def unit() -> float:
    return UNIT[0]


def settle_garbage() -> None:
    """Finalize dead tasks now, before pytest formats a failure.

    A task that died with an exception nobody retrieved logs it when collected, and
    formatting that traceback calls ``ast.parse``; if the collection happens while
    pytest itself is inside ``ast.parse`` (it parses sources to print a failure),
    CPython 3.11 reports "SystemError: AST constructor recursion depth mismatch" and
    pytest aborts the whole session (INTERNALERROR).
    """
    gc.collect()


async def run_dasync_modes(scenario: Scenario, crash: bool = True) -> list[Outcome]:
    """live, forced, and crash@k for every commit k of the live run."""
    live = await run_dasync(scenario)
    outcomes = [live, await run_dasync(scenario, force_replay=True)]
    if crash and scenario.crash:
        for k in range(1, live.commits + 1):
            outcomes.append(await run_dasync(scenario, crash_after=k))
    return outcomes


async def run_nats(
    scenario: Scenario, backend: Any, *, force_replay: bool = False, workers: int = 1
) -> Outcome:
    """One run on the ``backend`` fixture's NATS namespace (live, or forced replay); with
    ``workers=2``, two runtimes host every service, each with its own worker lane, so that
    routines start on either and their replies and timers must find them there."""
    effects = Effects(durable=True)
    container = {"log": effects, **scenario.container}
    mode = "nats-forced" if force_replay else "nats-live"
    if workers > 1:
        mode = f"nats-{workers}workers"
    notes: list[str] = []
    UNIT[0] = NATS_UNIT
    outcomes: list[Outcome] = []
    try:
        with observed(notes):
            await _run_nats(
                scenario, backend, container, mode, force_replay, notes, outcomes, workers
            )
    except Exception as exc:  # the runtime refusing to close cleanly, once the outcome is in
        if not outcomes:
            raise
        outcomes[0].errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        UNIT[0] = 1.0
    return outcomes[0]


async def _run_nats(
    scenario: Scenario,
    backend: Any,
    container: dict[str, Any],
    mode: str,
    force_replay: bool,
    notes: list[str],
    out: list[Outcome],
    workers: int = 1,
) -> None:
    from ..semantics._helpers import settled

    effects: Effects = container["log"]
    async with contextlib.AsyncExitStack() as stack:
        runtimes = [
            await stack.enter_async_context(
                backend.runtime(
                    scenario.services,
                    container=container,
                    force_replay=force_replay,
                    nats={"use_schedules": False},  # timers a few ms late, not 250 ms batches
                )
            )
            for _ in range(workers)
        ]
        rt = runtimes[0]
        handles = [await start_entry(rt.client, e, f"-{mode}") for e in scenario.entries]
        tasks = [asyncio.create_task(result_of(h)) for h in handles]
        driver = None
        if scenario.driver is not None:
            driver = asyncio.create_task(scenario.driver(_NatsControl(effects, handles)))
        done, _ = await asyncio.wait(tasks, timeout=NATS_WAIT)
        if len(done) == len(tasks):
            for each in runtimes:
                await settled(each, within=NATS_WAIT)
        if driver is not None and not driver.done():
            driver.cancel()
        results: list[Any] = []
        for task in tasks:
            if not task.done():
                task.cancel()
                results.append(["incomplete", f"no result within {NATS_WAIT:.0f} s"])
            else:
                results.append(task.result())
        for each in runtimes:
            stats = each.worker.stats
            notes += [f"rejected: {r}" for r in stats.rejected]
            notes += [f"failed with no caller: {f}" for f in stats.failed]
        out.append(
            Outcome(
                mode,
                results,
                list(effects.labels),
                0,
                strays=list(effects.strays),
                diagnostics=notes,
            )
        )


class _NatsControl:
    def __init__(self, effects: Effects, handles: list[Any]) -> None:
        self.effects = effects
        self._handles = handles

    async def until(self, label: str) -> None:
        await self.effects.when(label)

    async def cancel(self, entry: int) -> None:
        await self._handles[entry].cancel()


def _grouped_reports(
    plain: Outcome, outcomes: list[Outcome], order: list[tuple[str, str]], name: str
) -> list[str]:
    reports: list[str] = []
    crashes: dict[tuple[str, ...], list[tuple[Outcome, list[str]]]] = {}
    for outcome in outcomes:
        problems = differences(plain, outcome, None, order)
        if not problems:
            continue
        if outcome.mode.startswith("crash@"):
            kinds = tuple(sorted({p.split(":")[0].split(" (")[0] for p in problems}))
            crashes.setdefault(kinds, []).append((outcome, problems))
        else:
            reports.append(report(plain, outcome, problems, f"scenario {name}"))
    for group in crashes.values():
        first, problems = group[0]
        ks = ",".join(o.mode.removeprefix("crash@") for o, _ in group)
        reports.append(
            report(plain, first, problems, f"scenario {name}")
            + f"\n  (crash points disagreeing the same way: {ks}; the first is shown)"
        )
    return reports


STALE_ELSEWHERE = {"first_completed"}
"""Scenarios whose two-worker run may record effects plain asyncio does not: a caller
cancels a callee that another worker holds. The cancel arrives on the callee's shared
queue (the caller does not know the callee's worker), so another worker may commit it
while the holder's timer fires on its own lane; the holder's copy, not knowing of the
cancel, runs the code after the sleep before its step is refused at the journal. Results
and journals are right; an effect outside a call may happen (docs/guide.md, "Several
workers"). The difference is pinned here, exactly: nothing else may differ."""


def _two_worker_reports(
    plain: Outcome, outcome: Outcome, order: list[tuple[str, str]], name: str
) -> list[str]:
    problems = differences(plain, outcome, None, order)
    if name in STALE_ELSEWHERE and all(p.startswith("effects extra") for p in problems):
        return []
    return [report(plain, outcome, problems, f"scenario {name}")] if problems else []


async def check(
    scenario: Scenario,
    backend: Any = None,
    *,
    order: Iterable[tuple[str, str]] = (),
    crash: bool = True,
) -> None:
    """Plain asyncio, then dasync every way; fails listing each disagreement."""
    order = list(order)
    started = time.monotonic()
    plain = run_plain_nested(scenario)
    bad = order_violations(plain.effects, None, order)
    assert not bad, f"scenario {scenario.name}: plain asyncio itself breaks {bad}: {plain.effects}"
    if backend is None or backend.transport == "memory":
        outcomes = await run_dasync_modes(scenario, crash)
    else:
        outcomes = [
            await run_nats(scenario, backend),
            await run_nats(scenario, backend, force_replay=True),
        ]
    reports = _grouped_reports(plain, outcomes, order, scenario.name)
    if backend is not None and backend.transport != "memory":
        two = await run_nats(scenario, backend, workers=2)
        outcomes.append(two)
        reports += _two_worker_reports(plain, two, order, scenario.name)
    took = time.monotonic() - started
    settle_garbage()
    if reports:
        pytest.fail(
            f"{len(reports)} way(s) of disagreeing with plain asyncio ({len(outcomes)} runs, "
            f"{took:.1f}s):\n\n" + "\n\n".join(reports),
            pytrace=False,
        )
