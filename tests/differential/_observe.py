"""Collecting what a run says on the side: logged errors, warnings, unraisable exceptions.

They explain a disagreement (a NonDeterminismError logged by a worker, a coroutine
never awaited, a task exception never retrieved) but are no outcome of their own,
and pytest must not turn them into errors of an unrelated test.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["observed"]


class _Collector(logging.Handler):
    def __init__(self, notes: list[str]) -> None:
        super().__init__(logging.WARNING)
        self._notes = notes

    def emit(self, record: logging.LogRecord) -> None:
        self._notes.append(f"log {record.name}: {record.getMessage()[:500]}")


@contextmanager
def observed(notes: list[str]) -> Iterator[None]:
    """Collect dasync's logged warnings and errors, Python warnings (a coroutine never
    awaited...) and unraisable exceptions into ``notes``: they explain a disagreement, and
    are no outcome of their own."""
    handler = _Collector(notes)
    loggers = [logging.getLogger("dasync"), logging.getLogger("asyncio")]
    propagate = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False  # in the report's diagnostics, not pages of captured log
    old_hook = sys.unraisablehook

    def hook(u: Any) -> None:
        notes.append(f"unraisable {type(u.exc_value).__name__}: {u.exc_value} ({u.err_msg})")

    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        sys.unraisablehook = old_hook
        for logger, was in zip(loggers, propagate, strict=True):
            logger.removeHandler(handler)
            logger.propagate = was
    for w in caught:
        notes.append(f"warning {w.category.__name__}: {w.message}")
