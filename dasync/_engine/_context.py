"""Context variables that travel with durable calls: a declared set, as OpenTelemetry's.

Under plain asyncio an awaited coroutine shares its caller's context. A durable
call may run in another process, so only variables declared with
``dasync.propagate(var)`` travel: their values (JSON) are captured when the
call is issued, journaled with it, and set in the callee's context before its
code runs. Changes the callee makes do not flow back to the caller.
"""

from __future__ import annotations

import contextvars
from typing import Any, TypeVar

import orjson

__all__ = ["capture", "propagate", "propagated", "restore"]

T = TypeVar("T")

_MISSING = object()
_VARS: dict[str, contextvars.ContextVar[Any]] = {}


def propagate(var: contextvars.ContextVar[T]) -> contextvars.ContextVar[T]:
    """Declare that ``var`` travels with durable calls (its value must be JSON-encodable).

    Names identify variables across processes, so each declared name must be unique.
    Returns ``var``, so it can wrap the definition.
    """
    if not isinstance(var, contextvars.ContextVar):
        raise TypeError(f"dasync.propagate() takes a contextvars.ContextVar, not {var!r}")
    known = _VARS.get(var.name)
    if known is not None and known is not var:
        raise ValueError(
            f"another context variable named {var.name!r} is already propagated; "
            f"names identify them across processes, so they must be unique"
        )
    _VARS[var.name] = var
    return var


def propagated() -> tuple[str, ...]:
    """Names of the declared variables."""
    return tuple(_VARS)


def capture() -> bytes:
    """The declared variables set in the current context, as a JSON object (or empty)."""
    if not _VARS:
        return b""
    values = {}
    for name, var in _VARS.items():
        value = var.get(_MISSING)
        if value is not _MISSING:
            values[name] = value
    if not values:
        return b""
    try:
        return orjson.dumps(values, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise TypeError(
            f"a propagated context variable does not hold a JSON value ({exc}); "
            f"propagated variables: {', '.join(sorted(values))}"
        ) from None


def restore(blob: bytes) -> None:
    """Set, in the current context, the declared variables a caller propagated."""
    try:
        values = orjson.loads(blob)
    except orjson.JSONDecodeError:
        return
    if not isinstance(values, dict):
        return
    for name, value in values.items():
        var = _VARS.get(name)
        if var is not None:
            var.set(value)
