"""Exact comparisons: ``canon`` turns a value into nested tuples that keep types, NaN,
the sign of zero and time zones, so ``canon(a) == canon(b)`` means "the same value";
``shape`` does the same for an exception and what it is linked to."""

from __future__ import annotations

import dataclasses
import enum
import math
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pydantic

from dasync._failures import BUILTIN_FIELDS

REMOTE_NOTE = "Remote traceback (from the callee):\n"


def canon(value: Any, depth: int = 0) -> Any:
    assert depth < 60, "value too deep to compare"
    kind = type(value).__qualname__
    if isinstance(value, BaseException):
        return ("exception", shape(value, depth + 1))
    if isinstance(value, float):
        return (kind, "nan" if math.isnan(value) else repr(value))
    if isinstance(value, datetime):
        tz = value.tzinfo
        zone: Any = None
        if isinstance(tz, ZoneInfo):
            zone = ("zone", tz.key)
        elif isinstance(tz, timezone):
            zone = ("offset", tz.utcoffset(None))
        elif tz is not None:
            zone = (type(tz).__qualname__, value.utcoffset())
        # fold only matters where it changes the offset (a repeated wall time)
        fold = (
            value.fold if value.replace(fold=1 - value.fold).utcoffset() != value.utcoffset() else 0
        )
        return (kind, value.replace(tzinfo=None).isoformat(), fold, zone)
    if isinstance(value, Decimal):
        return (kind, str(value))
    if isinstance(value, enum.Enum):
        return (kind, value.name)
    if isinstance(value, list | tuple):
        return (kind, [canon(v, depth + 1) for v in value])
    if isinstance(value, set | frozenset):
        return (kind, sorted((canon(v, depth + 1) for v in value), key=repr))
    if isinstance(value, dict):
        return (kind, [(canon(k, depth + 1), canon(v, depth + 1)) for k, v in value.items()])
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [
            (f.name, canon(getattr(value, f.name), depth + 1)) for f in dataclasses.fields(value)
        ]
        return (kind, fields)
    if isinstance(value, pydantic.BaseModel):
        names = type(value).model_fields
        return (kind, [(n, canon(getattr(value, n), depth + 1)) for n in names])
    return (kind, value)


def builtin_fields(exc: BaseException) -> dict[str, Any]:
    found = {}
    for base, names in BUILTIN_FIELDS.items():
        if isinstance(exc, base):
            for name in names:
                found[name] = getattr(exc, name, None)
    return found


def shape(exc: BaseException | None, depth: int = 0) -> Any:
    """Everything that must survive, comparable, without the note decoding adds."""
    if exc is None:
        return None
    if depth > 8:
        return ("...", type(exc).__qualname__)
    notes = [n for n in getattr(exc, "__notes__", []) if not n.startswith(REMOTE_NOTE)]
    state = {k: v for k, v in vars(exc).items() if k != "__notes__"}
    return (
        type(exc),
        canon(exc.args, depth + 1),
        canon(state, depth + 1),
        canon(builtin_fields(exc), depth + 1),
        notes,
        exc.__suppress_context__,
        shape(exc.__cause__, depth + 1),
        shape(exc.__context__, depth + 1),
        [shape(m, depth + 1) for m in getattr(exc, "exceptions", ())]
        if isinstance(exc, BaseExceptionGroup)
        else None,
    )
