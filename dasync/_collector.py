"""The garbage collector's first threshold for a process that hosts workers.

CPython collects its youngest generation after 700 more container objects were
allocated than freed. A worker holds the objects of every delivery in flight (a
few hundred each: the message, its routine, futures, frames), so with 64 in flight
that count crosses 700 every few deliveries; each collection scans what is in
flight and promotes it, and the older generations are then scanned again. None of
it finds garbage: dasync frees what it drops by reference counting
(``tests/engine/test_no_cycles.py``). Measured in ``benchmarks/workflows.py --mode
procs`` (W1): 4-5% of a worker's CPU in collections and 7-11% less CPU per routine
with the threshold at 7,000, with no change in memory that the RSS benchmark sees.

``dasync run`` sets it (``--gc-threshold``); an application that hosts a
``Runtime`` in its own process may call ``tune_collector()`` itself.
"""

from __future__ import annotations

import gc

__all__ = ["WORKER_GC_THRESHOLD", "tune_collector"]

WORKER_GC_THRESHOLD = 7_000
"""Allocations (net of frees) between two collections of the youngest generation."""


def tune_collector(threshold: int = WORKER_GC_THRESHOLD) -> tuple[int, int, int]:
    """Raise the collector's first threshold to ``threshold`` (never lower it, and leave
    the older generations' as they are); the thresholds before. ``0`` changes nothing."""
    before: tuple[int, int, int] = gc.get_threshold()
    if threshold < 0:
        raise ValueError(f"a collector threshold is a count of allocations, not {threshold}")
    first, second, third = before
    if threshold and first < threshold:
        gc.set_threshold(threshold, second, third)
    return before
