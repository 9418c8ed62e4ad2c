"""Changing the code of routines in flight: ``dasync.patched`` and ``deprecate_patch``.

A routine that was suspended under the old code replays its journal under the new
one; if the new code issues other commands at a committed step, replay diverges
and the routine is parked. ``if dasync.patched("change-id"): new() else: old()``
lets both run: new routines (and old ones past the point, live) take the new
path and journal a marker; a replay takes it only where the journal has that
marker, so steps the old code committed replay as they ran. Once no routine
started before the change is left (``dasync ls --status running``), replace the
``if`` by ``dasync.deprecate_patch("change-id")`` and the new path: it reads old
markers back but writes none; later, remove it too.
"""

from __future__ import annotations

from ._engine import current_instance

__all__ = ["deprecate_patch", "patched"]

_MAX = 100


def _check(change: str) -> None:
    if not change or len(change) > _MAX or not change.isprintable():
        raise ValueError(f"a change id is 1 to {_MAX} printable characters, not {change!r}")


def patched(change: str) -> bool:
    """True where this routine runs the code after ``change`` (always, outside a routine)."""
    _check(change)
    inst = current_instance()
    return True if inst is None else inst.patched(change)


def deprecate_patch(change: str) -> None:
    """``change`` is the only path now: replays of journals with its marker still match."""
    _check(change)
    inst = current_instance()
    if inst is not None:
        inst.patched(change, record=False)
