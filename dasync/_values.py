"""Tagged JSON: Python values that plain JSON cannot hold exactly, for untyped payloads.

Exceptions carry values no annotation describes (``args``, attributes, notes),
so they cannot go through pydantic. They travel as JSON in which a *tag* — an
object with exactly one key, starting with ``$`` — stands for what JSON lacks:

====================================  ===========================================
``{"$bytes": "<base64>"}``            ``bytes`` (standard alphabet, padded)
``{"$str": "<base64>"}``              a ``str`` with lone surrogates (UTF-8, surrogatepass)
``{"$tuple": [...]}``                 ``tuple``
``{"$set": [...]}``                   ``set``, items in a stable order
``{"$frozenset": [...]}``             ``frozenset``, items in a stable order
``{"$dict": [[k, v], ...]}``          a ``dict`` with a non-str key or a key starting with ``$``
``{"$int": "<decimal>"}``             an ``int`` outside ``[-2**63, 2**64)`` (orjson's range)
``{"$float": "inf"|"-inf"|"nan"}``    a float JSON has no number for
``{"$exc": <index>}``                 an exception of the same failure payload
``{"$repr": "<text>"}``               anything else, as its ``repr`` (decoded as that str)
====================================  ===========================================

Only the exact builtin types are kept (a ``str`` subclass or an ``OrderedDict``
becomes its repr). Plain JSON objects never have a key starting with ``$``, so
decoding is strict: an unknown tag, a tag with a wrong shape, nesting deeper
than ``MAX_DEPTH`` or an out-of-range value raises ``MalformedMessage``.
Encoding never fails: what it cannot hold becomes ``$repr``, and a size budget
bounds what one payload may carry.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable
from typing import Any

import orjson

from ._errors import MalformedMessage

__all__ = ["ADDRESS", "MAX_DEPTH", "ValueDecoder", "ValueEncoder", "plain_key", "safe_repr"]

MAX_DEPTH = 32
"""Deepest nesting of containers encoded; deeper values become ``$repr``."""
MAX_ITEMS = 10_000
"""Largest container encoded item by item; larger ones become ``$repr``."""
MAX_INT_DIGITS = 4300
"""Longest ``$int`` accepted (Python's own limit for ``int(str)``)."""
MAX_REPR = 2000
"""Longest ``$repr`` text written (longer ones are cut)."""

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_FLOATS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
"""What reprs put for an object's memory address; stripped, so payloads are stable."""
_DIGITS = re.compile(rf"-?[0-9]{{1,{MAX_INT_DIGITS}}}")

JSON = Any
"""A value orjson can dump and load back unchanged."""


def safe_repr(value: object, limit: int = MAX_REPR) -> str:
    """``repr`` that never raises, has no memory address and is at most ``limit`` chars."""
    try:
        text = repr(value)
    except Exception:
        text = f"<unrepresentable {type(value).__qualname__}>"
    text = ADDRESS.sub("", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain_key(key: object) -> bool:
    """Whether ``key`` can be a key of a plain JSON object (else the dict is ``$dict``)."""
    if type(key) is not str or key.startswith("$"):
        return False
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ValueEncoder:
    """Encodes values as tagged JSON within a size budget shared by one payload.

    ``exception`` maps a nested exception to its index in the payload (or
    ``None`` when the payload is full), so exceptions are encoded once each.
    """

    def __init__(
        self,
        exception: Callable[[BaseException], int | None] | None = None,
        budget: int = 256 * 1024,
    ) -> None:
        self._exception = exception
        self.budget = budget
        self._path: set[int] = set()  # containers being encoded, to cut cycles

    def encode(self, value: object, depth: int = 0) -> JSON:
        self.budget -= 8
        kind = type(value)
        if value is None or kind is bool:
            return value
        if kind is str:
            return self._text(value)  # type: ignore[arg-type]
        if kind is int:
            return self._int(value)  # type: ignore[arg-type]
        if kind is float:
            return value if math.isfinite(value) else {"$float": str(value)}  # type: ignore[arg-type]
        if kind is bytes:
            return self._bytes(value)  # type: ignore[arg-type]
        if isinstance(value, BaseException):
            index = self._exception(value) if self._exception is not None else None
            return {"$exc": index} if index is not None else {"$repr": safe_repr(value)}
        if kind in (list, tuple, set, frozenset, dict):
            size = len(value)  # type: ignore[arg-type]
            if depth >= MAX_DEPTH or size > MAX_ITEMS or self.budget < 0 or id(value) in self._path:
                # a summary, not repr(): the repr of a shared or cyclic structure can explode
                return {"$repr": f"<{kind.__name__} of {size} items, not encoded>"}
            self._path.add(id(value))
            try:
                return self._container(value, depth + 1)
            finally:
                self._path.discard(id(value))
        text = safe_repr(value)
        self.budget -= len(text)
        return {"$repr": text}

    def _text(self, value: str) -> JSON:
        self.budget -= len(value)
        if self.budget < 0:
            return {"$repr": f"<str of {len(value)} chars, over the payload's size budget>"}
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raw = value.encode("utf-8", "surrogatepass")
            return {"$str": base64.b64encode(raw).decode("ascii")}
        return value

    def _int(self, value: int) -> JSON:
        if _INT_MIN <= value <= _INT_MAX:
            return value
        if value.bit_length() > MAX_INT_DIGITS * 3:  # str() would refuse it
            return {"$repr": f"<int of {value.bit_length()} bits>"}
        text = str(value)
        self.budget -= len(text)
        return {"$int": text}

    def _bytes(self, value: bytes) -> JSON:
        self.budget -= len(value) * 4 // 3
        if self.budget < 0:
            return {"$repr": f"<bytes of length {len(value)}, over the payload's size budget>"}
        return {"$bytes": base64.b64encode(value).decode("ascii")}

    def _container(self, value: Any, depth: int) -> JSON:
        if type(value) is list:
            return [self.encode(v, depth) for v in value]
        if type(value) is tuple:
            return {"$tuple": [self.encode(v, depth) for v in value]}
        if type(value) is dict:
            if all(plain_key(k) for k in value):
                return {k: self.encode(v, depth) for k, v in value.items()}
            return {
                "$dict": [[self.encode(k, depth), self.encode(v, depth)] for k, v in value.items()]
            }
        items = [self.encode(v, depth) for v in value]
        items.sort(key=lambda item: orjson.dumps(item, option=orjson.OPT_SORT_KEYS))
        return {"$set" if type(value) is set else "$frozenset": items}


class ValueDecoder:
    """Decodes tagged JSON strictly; ``exception`` resolves ``{"$exc": i}``."""

    def __init__(self, exception: Callable[[int], BaseException | None] | None = None) -> None:
        self._exception = exception

    def decode(self, data: JSON, depth: int = 0) -> Any:
        if data is None or isinstance(data, bool | int | float | str):
            return data
        if depth >= MAX_DEPTH + 2:
            raise MalformedMessage(f"value nested deeper than {MAX_DEPTH} levels")
        if isinstance(data, list):
            return [self.decode(v, depth + 1) for v in data]
        if not isinstance(data, dict):
            raise MalformedMessage(f"unexpected JSON value {safe_repr(data, 60)}")
        if len(data) == 1:
            ((key, body),) = data.items()
            if key.startswith("$"):
                return self._tag(key, body, depth + 1)
        if any(k.startswith("$") for k in data):
            raise MalformedMessage(f"object mixes a tag with other keys: {sorted(data)[:5]}")
        return {k: self.decode(v, depth + 1) for k, v in data.items()}

    def _tag(self, tag: str, body: JSON, depth: int) -> Any:
        try:
            return _TAGS[tag](self, body, depth)
        except KeyError:
            raise MalformedMessage(f"unknown tag {safe_repr(tag, 60)}") from None
        except MalformedMessage:
            raise
        except (TypeError, ValueError, binascii.Error) as exc:
            raise MalformedMessage(f"bad {tag} value: {exc}") from None

    def _items(self, body: JSON, depth: int) -> list[Any]:
        if not isinstance(body, list):
            raise TypeError("expected a list")
        return [self.decode(v, depth) for v in body]

    def _dict(self, body: JSON, depth: int) -> dict[Any, Any]:
        if not isinstance(body, list) or not all(isinstance(p, list) and len(p) == 2 for p in body):
            raise TypeError("expected a list of [key, value] pairs")
        return {self.decode(k, depth): self.decode(v, depth) for k, v in body}

    def _exc(self, body: JSON, depth: int) -> BaseException | None:
        if type(body) is not int or self._exception is None:
            raise TypeError("expected the index of an exception of this payload")
        return self._exception(body)


def _str(body: JSON) -> str:
    if not isinstance(body, str):
        raise TypeError("expected a string")
    return body


def _b64(body: JSON) -> bytes:
    return base64.b64decode(_str(body), validate=True)


def _int(body: JSON) -> int:
    if not _DIGITS.fullmatch(_str(body)):
        raise ValueError(f"not a decimal integer of at most {MAX_INT_DIGITS} digits")
    return int(body)


def _float(body: JSON) -> float:
    if _str(body) not in _FLOATS:
        raise ValueError("expected 'inf', '-inf' or 'nan'")
    return _FLOATS[body]


_TAGS: dict[str, Callable[[ValueDecoder, JSON, int], Any]] = {
    "$bytes": lambda d, b, depth: _b64(b),
    "$str": lambda d, b, depth: _b64(b).decode("utf-8", "surrogatepass"),
    "$tuple": lambda d, b, depth: tuple(d._items(b, depth)),
    "$set": lambda d, b, depth: set(d._items(b, depth)),
    "$frozenset": lambda d, b, depth: frozenset(d._items(b, depth)),
    "$dict": lambda d, b, depth: d._dict(b, depth),
    "$int": lambda d, b, depth: _int(b),
    "$float": lambda d, b, depth: _float(b),
    "$exc": lambda d, b, depth: d._exc(b, depth),
    "$repr": lambda d, b, depth: _str(b),
}
