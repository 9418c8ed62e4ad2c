"""The chaos suite in its short configuration (CI): 300 orders across Orders, Payments and
Inventory (two worker processes each) — calls, a gather, a saga with compensation, an event
with two subscribers — while 3 workers are killed with ``kill -9`` (one per service), the
nats-server is stopped and started once, and 5 % of the messages are published twice (2 % of
deliveries handed to the worker twice). ``_chaos.py`` describes every invariant checked; the
long configuration is run by hand (``python -m tests.chaos.run --long``, docs/reliability.md).

The run happens once per module; the tests below check different invariants of it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from ._chaos import ChaosConfig, Report, run_chaos
from .run import SHORT


@pytest.fixture(scope="module")
def report() -> Iterator[Report]:
    began = time.monotonic()
    result = run_chaos(ChaosConfig(**SHORT))
    print(f"\n{result.summary()}\n{result.details()}")
    result.wall = time.monotonic() - began  # type: ignore[attr-defined]
    yield result


def test_every_routine_finishes_right_and_every_effect_happens_once(report: Report) -> None:
    assert report.problems(allow_duplicate_executions=True) == []
    # the chaos happened, in the middle of the work
    assert len(report.kills) == 3 and len(report.outages) == 1
    assert report.by_kill > 0  # executions were cut short by the kills, and ran again
    assert report.duplicates["copy"] > 0 and report.duplicates["twice"] > 0
    assert len(report.results) == 300 and report.lost == 0
    assert report.duplicated_effects == 0
    assert report.wall < 90  # type: ignore[attr-defined]


def test_a_duplicate_delivery_never_runs_code_twice(report: Report) -> None:
    assert report.by_duplicate == 0, report.problems()
