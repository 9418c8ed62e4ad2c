"""``Prefer`` (RFC 7240): how long a POST waits for its routine, and what was honoured.

Only ``wait`` and ``respond-async`` mean something here; other preferences, and
a ``wait`` whose value is not a number of seconds, are ignored as the RFC asks
(a preference is a hint, never a reason to fail). The first occurrence of a
preference counts. ``respond-async`` alone answers ``202`` at once; with
``wait=N`` it is the RFC's "asynchronously if it takes longer than N".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..codegen import _http as http

__all__ = ["Wait", "decide"]

_NUMBER = re.compile(r"[0-9]{1,12}(\.[0-9]{1,6})?")


@dataclass(frozen=True)
class Wait:
    """What a POST does: wait ``seconds`` for the result; the ``Preference-Applied`` values
    to send on a ``200`` and on a ``202``."""

    seconds: float
    applied: tuple[str, ...] = ()
    applied_async: tuple[str, ...] = ()


def _preferences(values: Iterable[str]) -> dict[str, str]:
    """``{name: value}`` of every ``Prefer`` header (lower-cased names; first one wins)."""
    found: dict[str, str] = {}
    for header in values:
        for item in header.split(","):
            name, _, value = item.split(";", 1)[0].partition("=")
            name = name.strip().lower()
            if name and name not in found:
                found[name] = value.strip().strip('"')
    return found


def decide(values: Iterable[str]) -> Wait:
    """The wait the ``Prefer`` headers ``values`` ask for, within the table's bounds."""
    prefs = _preferences(values)
    respond_async = "respond-async" in prefs
    text = prefs.get("wait", "")
    if _NUMBER.fullmatch(text):
        seconds = min(float(text), http.MAX_WAIT)
        applied = (f"wait={seconds:g}",)
        return Wait(seconds, applied, applied + (("respond-async",) if respond_async else ()))
    if respond_async:
        return Wait(0.0, (), ("respond-async",))
    return Wait(http.DEFAULT_WAIT)
