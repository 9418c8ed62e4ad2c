"""The exceptions generated programs raise, locally or in a leaf service.

A mix of what real code raises: a custom class whose attributes are set in
``__init__``, a subclass of it (caught by the base class), one whose
constructor takes other arguments than it stores in ``args`` (so rebuilding it
from ``args`` alone changes it), builtins, ``TimeoutError`` (which
``wait_for``/``timeout`` raise too) and an ``ExceptionGroup``.
"""

from __future__ import annotations

import asyncio

__all__ = ["CATCHABLE", "ERROR_KINDS", "AppError", "OddInit", "SubAppError", "make_error"]


class AppError(Exception):
    """A business error with attributes, as a saga would raise."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


class SubAppError(AppError):
    """Caught by ``except AppError``."""


class OddInit(Exception):
    """``args`` is the message, not the constructor's argument."""

    def __init__(self, value: int) -> None:
        super().__init__(f"odd {value}")
        self.value = value


ERROR_KINDS = ("app", "sub", "odd", "value", "key", "runtime", "timeout", "group")


def make_error(kind: str, value: int) -> Exception:
    if kind == "app":
        return AppError(value, f"app {value}")
    if kind == "sub":
        return SubAppError(value, f"sub {value}")
    if kind == "odd":
        return OddInit(value)
    if kind == "value":
        return ValueError(f"bad {value}", value)
    if kind == "key":
        return KeyError(f"k{value}")
    if kind == "runtime":
        return RuntimeError(f"runtime {value}")
    if kind == "timeout":
        return TimeoutError(f"slow {value}")
    if kind == "group":
        return ExceptionGroup(f"group {value}", [AppError(value, "in group"), ValueError(value)])
    raise ValueError(f"unknown error kind {kind!r}")


CATCHABLE: dict[str, type[BaseException]] = {
    "AppError": AppError,
    "ValueError": ValueError,
    "LookupError": LookupError,
    "Exception": Exception,
    "TimeoutError": TimeoutError,
    "CancelledError": asyncio.CancelledError,
    "ExceptionGroup": ExceptionGroup,
}
"""What ``except`` clauses of generated programs name; ``*X`` means ``except* X``."""
