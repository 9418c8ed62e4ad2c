"""Generated programs: each runs under plain asyncio, dasync live, forced replay and with a
crash at a hypothesis-chosen commit, and must agree with plain asyncio.

Programs are derandomized, so a run reproduces. A failure lists every group of
disagreements with a minimized program. Environment: ``DASYNC_DIFF_EXAMPLES``
(programs, default 1000, split over the two tests), ``DASYNC_DIFF_CRASHES`` (crash
points per program, default 1), ``DASYNC_DIFF_MINIMIZE`` (seconds of shrinking per
test), ``DASYNC_DIFF_BUDGET`` (seconds a test may run). The long run by hand:
``python -m tests.differential.run --examples 20000`` (random seed, printed).
"""

from __future__ import annotations

import os

import pytest

from ._fourway import settle_garbage
from ._property import CI_EXAMPLES, run_survey

pytestmark = [pytest.mark.differential, pytest.mark.timeout(max(600, CI_EXAMPLES // 5))]

MINIMIZE = float(os.environ.get("DASYNC_DIFF_MINIMIZE", "15"))
"""Seconds spent shrinking the failing programs of one test, all groups together."""


def _check(examples: int, max_nodes: int) -> None:
    survey = run_survey(examples, max_nodes=max_nodes)
    failed = survey.groups or survey.harness or survey.skipped
    text = survey.report(MINIMIZE) if failed else ""
    settle_garbage()
    assert survey.examples >= examples, f"only {survey.examples} of {examples} programs ran"
    if text:
        pytest.fail(text, pytrace=False)


def test_small_programs() -> None:
    """Up to 6 nodes: the first place a bug shows, and the easiest program to read."""
    _check(CI_EXAMPLES * 2 // 5, max_nodes=6)


def test_larger_programs() -> None:
    """Up to 16 nodes, nested up to 4 deep."""
    _check(CI_EXAMPLES - CI_EXAMPLES * 2 // 5, max_nodes=16)
