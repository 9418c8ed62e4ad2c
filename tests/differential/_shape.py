"""Comparable forms of results and exceptions: what "the same outcome" means.

``shape(exc)`` is what asyncio code can observe of an exception and what we
require dasync to keep when it carries one across a durable call: its class,
``args``, ``str()``, public attributes (including the standard ones of
``OSError``, ``UnicodeError`` and exception groups), notes and explicit cause
(``raise ... from``). Not compared: tracebacks and the implicit ``__context__``
(diagnostic chains, not values a program branches on), and the one note dasync
adds to a rebuilt exception, "Remote traceback (from the callee): ..." (a
diagnostic, like the traceback it carries).

``canon(value)`` makes results comparable across the JSON boundary without
hiding differences: it keeps type names, so ``1`` vs ``1.0`` vs ``True``,
``list`` vs ``tuple`` and naive vs zoned datetimes stay different, and uses
``repr`` for floats so ``nan`` equals ``nan``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from typing import Any

__all__ = [
    "REMOTE_NOTE",
    "canon",
    "shape",
    "short",
    "show",
    "show_result",
    "show_shape",
    "type_name",
]

REMOTE_NOTE = "Remote traceback (from the callee):"

IGNORED: set[str] = set()
"""Parts of exceptions ``shape`` leaves out ("cause", "notes"); empty except for a survey
run by hand that looks past a known bug (``run.py --ignore cause``)."""

_STANDARD_ATTRS = (
    "errno",
    "strerror",
    "filename",
    "filename2",
    "encoding",
    "object",
    "start",
    "end",
    "reason",
    "message",
    "name",
    "path",
)


def type_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _value(v: Any) -> Any:
    if isinstance(v, BaseException):
        return shape(v)
    if isinstance(v, str | int) and not isinstance(v, bool):
        return v
    return repr(v)


def shape(exc: BaseException) -> list[Any]:
    """``[type, args, str, attributes, notes, cause]`` of an exception, JSON-encodable."""
    if isinstance(exc, BaseExceptionGroup):
        args: list[Any] = [exc.message, [shape(e) for e in exc.exceptions]]
    else:
        args = [_value(a) for a in exc.args]
    attrs: dict[str, Any] = {}
    for key in _STANDARD_ATTRS:
        if key in {"message"} and isinstance(exc, BaseExceptionGroup):
            continue
        if hasattr(type(exc), key) or key in getattr(exc, "__dict__", {}):
            v = getattr(exc, key, None)
            if v is not None:  # OSError's errno & co. are None unless given
                attrs[key] = _value(v)
    for key, v in sorted(getattr(exc, "__dict__", {}).items()):
        if not key.startswith("_"):
            attrs[key] = _value(v)
    notes = [n for n in getattr(exc, "__notes__", ()) if not str(n).startswith(REMOTE_NOTE)]
    cause = shape(exc.__cause__) if exc.__cause__ is not None else None
    if "notes" in IGNORED:
        notes = []
    if "cause" in IGNORED:
        cause = None
    text = "" if isinstance(exc, asyncio.CancelledError) else str(exc)
    return [
        type_name(type(exc)),
        args,
        text,
        [[k, v] for k, v in sorted(attrs.items())],
        notes,
        cause,
    ]


def canon(value: Any) -> Any:
    """A representation equal for equal values and different for any observable change."""
    if isinstance(value, BaseException):
        return ["!exception", shape(value)]
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int) and type(value) is int:
        return ["int", str(value)]
    if isinstance(value, float):
        return ["float", repr(value)]
    if isinstance(value, list | tuple):
        return [type(value).__name__, [canon(v) for v in value]]
    if isinstance(value, dict):
        return ["dict", sorted((repr(k), canon(v)) for k, v in value.items())]
    if isinstance(value, set | frozenset):
        return [type(value).__name__, sorted(repr(canon(v)) for v in value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [(f.name, canon(getattr(value, f.name))) for f in dataclasses.fields(value)]
        return [type_name(type(value)), fields]
    if isinstance(value, enum.Enum):
        return [type_name(type(value)), value.name]
    return [type_name(type(value)), repr(value)]


def short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 5] + "...'" + f" ({len(text)} chars)"


def show(c: Any) -> str:
    """Python-like text for a ``canon`` value (failure messages)."""
    if c is None or isinstance(c, bool):
        return repr(c)
    if isinstance(c, str):
        return short(repr(c))
    if isinstance(c, list) and len(c) == 2 and isinstance(c[0], str):
        kind, body = c
        if kind in ("int", "float"):
            return str(body)
        if kind == "list":
            return "[" + ", ".join(show(x) for x in body) + "]"
        if kind == "tuple":
            return "(" + ", ".join(show(x) for x in body) + ("," if len(body) == 1 else "") + ")"
        if kind == "dict":
            return "{" + ", ".join(f"{k}: {show(v)}" for k, v in body) + "}"
        if kind == "!exception":
            return show_shape(body)
        if isinstance(body, str):
            return body
        if isinstance(body, list) and all(isinstance(f, tuple | list) for f in body):
            return f"{kind}(" + ", ".join(f"{f[0]}={show(f[1])}" for f in body) + ")"
    if isinstance(c, list):
        return "[" + ", ".join(show(x) for x in c) + "]"
    return repr(c)


def show_shape(s: Any) -> str:
    """``Type(args)`` plus the attributes, notes and cause that differ from the default."""
    if not (isinstance(s, list) and len(s) == 6):
        return repr(s)
    name, args, text, attrs, notes, cause = s
    out = f"{name}({', '.join(short(repr(a)) for a in args)})"
    extra = [f"str={short(repr(text))}"]
    extra += [f"{k}={short(repr(v))}" for k, v in attrs if v is not None and v != "None"]
    if notes:
        extra.append(f"notes={notes!r}")
    if cause is not None:
        extra.append(f"cause={show_shape(cause)}")
    return out + " [" + ", ".join(extra) + "]"


def show_result(r: Any) -> str:
    """An entry's result: ``ok`` value, ``raise`` exception or ``incomplete``."""
    kind, body = r
    if kind == "ok":
        return f"returned {show(body)}"
    if kind == "raised":
        return f"raised {show_shape(body)}"
    return f"{kind}: {body}"
