"""Exceptions as bytes: a callee's failure rebuilt in the caller with its state.

Separate from ``_codec`` because no annotation describes what an exception
carries: its values go as tagged JSON (``_values``), not through pydantic, and
rebuilding one is a security boundary (class lookup in ``sys.modules`` only,
never an import; ``RemoteError`` for what is not rebuilt). The payload format
is in ``encode_failure``'s docstring, the rebuilding rules in ``decode_failure``'s.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
import traceback as _traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from types import WrapperDescriptorType
from typing import Any

import orjson

from ._errors import MalformedMessage, RemoteError
from ._values import ADDRESS as _ADDRESS
from ._values import ValueDecoder, ValueEncoder, plain_key, safe_repr

__all__ = [
    "BUILTIN_FIELDS",
    "MAX_CHAIN_DEPTH",
    "MAX_EXCEPTIONS",
    "MAX_FAILURE_BYTES",
    "MAX_TEXT",
    "decode_failure",
    "encode_failure",
]

BUILTIN_FIELDS: dict[type[BaseException], tuple[str, ...]] = {
    OSError: ("errno", "strerror", "filename", "filename2")
    + (("winerror",) if hasattr(OSError, "winerror") else ()),
    UnicodeDecodeError: ("encoding", "object", "start", "end", "reason"),
    UnicodeEncodeError: ("encoding", "object", "start", "end", "reason"),
    UnicodeTranslateError: ("object", "start", "end", "reason"),
    SyntaxError: ("msg", "filename", "lineno", "offset", "text", "end_lineno", "end_offset"),
    ImportError: ("msg", "name", "path"),
    NameError: ("name",),
    AttributeError: ("name",),  # not ``obj``: an arbitrary object, and its repr has an address
    StopIteration: ("value",),
    StopAsyncIteration: (),
    SystemExit: ("code",),
    BaseExceptionGroup: ("message",),  # with ``exceptions``, given to the constructor
}
"""Fields that builtin exceptions keep outside ``args`` and ``__dict__``; they travel as
``fields`` and are set back through the builtin's own descriptor. ``KeyError`` and the
others need nothing beyond ``args``."""

MAX_FAILURE_BYTES = 8 * 1024 * 1024
MAX_EXCEPTIONS = 64
"""Most exceptions one failure payload carries (the root, its chain, group members...)."""
MAX_CHAIN_DEPTH = 16
"""Deepest link (cause, context, group member, exception in args) followed from the root."""
MAX_TEXT = 16 * 1024
"""Longest message or traceback text kept per exception."""
_NOTE = "Remote traceback (from the callee):\n"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_ARGS: Any = BaseException.__dict__["args"]
_CAUSE: Any = BaseException.__dict__["__cause__"]
_CONTEXT: Any = BaseException.__dict__["__context__"]
_SUPPRESS: Any = BaseException.__dict__["__suppress_context__"]


def encode_failure(exc: BaseException) -> bytes:
    """Encode an exception, with what it is linked to, so that the caller can rebuild it.

    ``{"v": 2, "exceptions": [root, ...]}``: a flat list of exception objects,
    the root first; links are indices into the list, so an exception reached
    twice (``raise X from e`` makes ``e`` both cause and context) is encoded
    once and cycles end. Each object has ``type`` (``module:qualname``) and
    ``message`` (``str(exc)``), and when not empty: ``args`` (tagged values),
    ``state`` (``__dict__`` without dunder keys, tagged), ``fields`` (the
    ``BUILTIN_FIELDS`` of its class), ``exceptions`` (group members),
    ``cause``, ``context``, ``suppress_context``, ``notes`` and ``traceback``
    (the callee's frames, dasync's own stripped). Dicts keep their order, sets
    are sorted and memory addresses are cut from reprs and texts, so one exception
    always gives the same bytes.
    """
    try:
        return _FailureEncoder(exc).payload()
    except Exception as error:  # never fail a routine's completion over its error report
        node = {"type": _type_path(type(exc)), "message": f"<not encodable: {error!r}>"}
        return orjson.dumps({"v": 2, "exceptions": [node]})


class _FailureEncoder:
    def __init__(self, root: BaseException) -> None:
        self._order: list[BaseException] = []
        self._depth: list[int] = []
        self._index: dict[int, int] = {}
        self._current = 0
        self._values = ValueEncoder(self._nested)
        self._ref(root, 0)

    def payload(self) -> bytes:
        nodes = []
        i = 0
        while i < len(self._order):  # grows while nodes are encoded (breadth first)
            nodes.append(self._node(self._order[i], self._depth[i]))
            i += 1
        return orjson.dumps({"v": 2, "exceptions": nodes})

    def _ref(self, exc: BaseException | None, depth: int) -> int | None:
        if exc is None:
            return None
        index = self._index.get(id(exc))
        if index is None and depth <= MAX_CHAIN_DEPTH and len(self._order) < MAX_EXCEPTIONS:
            index = self._index[id(exc)] = len(self._order)
            self._order.append(exc)
            self._depth.append(depth)
        return index

    def _nested(self, exc: BaseException) -> int | None:
        return self._ref(exc, self._current + 1)

    def _node(self, exc: BaseException, depth: int) -> dict[str, Any]:
        self._current = depth
        enc = self._values.encode
        cls = type(exc)
        node: dict[str, Any] = {"type": _type_path(cls), "message": self._text(_str(exc))}
        if exc.args:
            node["args"] = [enc(a) for a in exc.args]
        attrs = getattr(exc, "__dict__", None) or {}
        state = {k: enc(v) for k, v in attrs.items() if plain_key(k) and not k.startswith("__")}
        if state:
            node["state"] = state
        fields = {}
        for name, descriptor in _field_descriptors(cls).items():
            try:
                value = descriptor.__get__(exc, cls)
            except Exception:
                continue
            if value is not None:
                fields[name] = enc(value)
        if fields:
            node["fields"] = fields
        if isinstance(exc, BaseExceptionGroup):
            members = [self._ref(m, depth + 1) for m in exc.exceptions]
            node["exceptions"] = [m for m in members if m is not None]
        for key, linked in (("cause", exc.__cause__), ("context", exc.__context__)):
            index = self._ref(linked, depth + 1)
            if index is not None:
                node[key] = index
        if exc.__suppress_context__:
            node["suppress_context"] = True
        notes = attrs.get("__notes__")
        if isinstance(notes, list | tuple) and notes:
            node["notes"] = [enc(n) for n in notes if isinstance(n, str)]
        text = self._text(_user_traceback(exc), keep_end=True)
        if text:
            node["traceback"] = text
        return node

    def _text(self, text: str, keep_end: bool = False) -> str:
        """Display text, cut to its share of the payload's budget, without lone surrogates."""
        limit = max(200, min(MAX_TEXT, self._values.budget))
        if len(text) > limit:
            text = "…" + text[-limit:] if keep_end else text[:limit] + "…"
        self._values.budget -= len(text)
        text = _ADDRESS.sub("", text)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _type_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<str() of {type(exc).__qualname__} failed>"


def _user_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` without frames from dasync's own modules, nor its notes
    (they travel on their own); empty when no frame is left."""
    try:
        frames = [
            f
            for f in _traceback.extract_tb(exc.__traceback__)
            if not os.path.abspath(f.filename).startswith(_PACKAGE_DIR)
        ]
        if not frames:
            return ""  # never raised, or raised by dasync itself: the message says it all
        only = _traceback.TracebackException(type(exc), exc, None, compact=True)
        only.__notes__ = None
        return "".join(_traceback.format_list(frames)) + "".join(only.format_exception_only())
    except Exception:
        return ""


_DESCRIPTORS: weakref.WeakKeyDictionary[type, dict[str, Any]] = weakref.WeakKeyDictionary()


def _field_descriptors(cls: type) -> dict[str, Any]:
    """The table's fields of ``cls`` that still use the builtin's descriptor (a subclass
    that redefines one, e.g. as a property, keeps it in its ``__dict__`` instead)."""
    cached = _DESCRIPTORS.get(cls)
    if cached is not None:
        return cached
    found: dict[str, Any] = {}
    for base, names in BUILTIN_FIELDS.items():
        if issubclass(cls, base):
            for name in names:
                descriptor = inspect.getattr_static(base, name, None)
                if descriptor is not None and inspect.getattr_static(cls, name, None) is descriptor:
                    found.setdefault(name, descriptor)
    _DESCRIPTORS[cls] = found
    return found


def decode_failure(data: bytes) -> BaseException:
    """Rebuild a callee's exception; never raises, never imports.

    Classes are looked up in ``sys.modules`` only (a class the caller has not
    loaded cannot be in its ``except`` clauses anyway) and only subclasses of
    ``Exception``, ``asyncio.CancelledError`` and ``BaseExceptionGroup`` are
    rebuilt: builtins by calling them with their args, other classes like
    pickle restores state, without ``__init__`` (``cls.__new__(cls, *args)``,
    then ``args``, fields and ``__dict__``). Everything else becomes
    ``RemoteError``; a payload that is not a failure becomes ``MalformedMessage``.
    """
    try:
        return _decode_failure(data)
    except Exception as exc:  # whatever a hostile payload provokes stays a value
        return MalformedMessage(f"undecodable failure payload ({exc}): {_preview(data)}")


def _preview(data: object) -> str:
    if isinstance(data, bytes | bytearray | memoryview):
        return repr(bytes(data[:200]))
    return f"<{type(data).__name__}>"


def _decode_failure(data: bytes) -> BaseException:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedMessage("a failure payload must be bytes")
    if len(data) > MAX_FAILURE_BYTES:
        raise MalformedMessage(f"{len(data)} bytes, over the limit of {MAX_FAILURE_BYTES}")
    payload = orjson.loads(bytes(data))
    if not isinstance(payload, dict):
        raise MalformedMessage("not a JSON object")
    if "v" not in payload and "type" in payload:
        nodes = [_legacy_node(payload)]
    elif payload.get("v") == 2:
        raw = payload.get("exceptions")
        if not isinstance(raw, list) or not 0 < len(raw) <= MAX_EXCEPTIONS:
            raise MalformedMessage(f"'exceptions' must be a list of 1 to {MAX_EXCEPTIONS} objects")
        nodes = [_parse_node(n, len(raw)) for n in raw]
    else:
        raise MalformedMessage(f"unknown failure format {safe_repr(payload.get('v'), 40)}")
    return _build_all(nodes)


@dataclass
class _Node:
    """One exception of a payload, checked for shape; values still tagged (``raw``: not)."""

    type_path: str
    message: str
    args: list[Any] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    members: list[int] = field(default_factory=list)
    cause: int | None = None
    context: int | None = None
    suppress_context: bool = False
    notes: list[Any] = field(default_factory=list)
    traceback: str = ""
    deps: set[int] = field(default_factory=set)
    raw: bool = False


def _get(node: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = node.get(key, default)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise MalformedMessage(f"exception field {key!r} has the wrong type")
    return value


def _parse_node(node: Any, count: int) -> _Node:
    if not isinstance(node, dict):
        raise MalformedMessage("an exception must be a JSON object")

    def index(value: Any) -> int:
        if type(value) is not int or not 0 <= value < count:
            raise MalformedMessage(f"exception index {safe_repr(value, 20)} out of range")
        return value

    parsed = _Node(
        type_path=_get(node, "type", str, None)[:1000],
        message=_get(node, "message", str, ""),
        args=_get(node, "args", list, []),
        state=_get(node, "state", dict, {}),
        fields=_get(node, "fields", dict, {}),
        members=[index(m) for m in _get(node, "exceptions", list, [])],
        cause=None if node.get("cause") is None else index(node["cause"]),
        context=None if node.get("context") is None else index(node["context"]),
        suppress_context=_get(node, "suppress_context", bool, False),
        notes=_get(node, "notes", list, []),
        traceback=_get(node, "traceback", str, ""),
    )
    # a first decoding checks every tag and finds the exceptions the values refer to
    scan = ValueDecoder(lambda i: parsed.deps.add(index(i)))
    for value in (parsed.args, *parsed.state.values(), *parsed.fields.values()):
        scan.decode(value)  # as _build will: state and fields are names, not tagged objects
    ValueDecoder().decode(parsed.notes)
    parsed.deps.update(parsed.members)
    return parsed


def _legacy_node(payload: dict[str, Any]) -> _Node:
    """Format 1 (``{type, message, args, state, traceback}``, plain JSON values), still found
    in journals written before format 2."""
    return _Node(
        type_path=_get(payload, "type", str, None),
        message=_get(payload, "message", str, ""),
        args=_get(payload, "args", list, []),
        state=_get(payload, "state", dict, {}),
        traceback=_get(payload, "traceback", str, ""),
        raw=True,
    )


def _build_all(nodes: list[_Node]) -> BaseException:
    """Build exceptions after those their values and members refer to; a cycle among those
    is broken by decoding the reference still missing as ``None``. Then link the chains."""
    built: dict[int, BaseException] = {}
    pending = list(range(len(nodes)))
    while pending:
        ready = [i for i in pending if nodes[i].deps <= built.keys()] or pending[:1]
        for i in ready:
            built[i] = _build(nodes[i], built)
        pending = [i for i in pending if i not in built]
    for i, node in enumerate(nodes):
        exc = built[i]
        if node.cause is not None:
            _CAUSE.__set__(exc, built[node.cause])
        if node.context is not None:
            _CONTEXT.__set__(exc, built[node.context])
        _SUPPRESS.__set__(exc, node.suppress_context)
    return built[0]


def _same(value: Any) -> Any:
    return value


def _build(node: _Node, built: dict[int, BaseException]) -> BaseException:
    decode: Callable[[Any], Any] = _same if node.raw else ValueDecoder(built.get).decode
    args = list(decode(node.args))
    state = {k: decode(v) for k, v in node.state.items() if not k.startswith("__")}
    fields = {k: decode(v) for k, v in node.fields.items()}
    members = [built.get(i) for i in node.members]
    notes = [n for n in ValueDecoder().decode(node.notes) if isinstance(n, str)]
    cls = _lookup(node.type_path)
    exc = _rebuild(cls, args, fields, members, state) if cls is not None else None
    if exc is None:
        extra = {"exceptions": tuple(m for m in members if m is not None)} if members else {}
        return RemoteError(
            node.type_path.replace(":", "."),
            node.message,
            node.traceback,
            args,
            {**fields, **state, **extra},
            notes,
        )
    if notes or node.traceback:
        text = node.traceback.rstrip()
        exc.__dict__["__notes__"] = notes + ([_NOTE + text] if text else [])
    return exc


def _rebuild(
    cls: type[BaseException],
    args: list[Any],
    fields: dict[str, Any],
    members: list[BaseException | None],
    state: dict[str, Any],
) -> BaseException | None:
    if not (issubclass(cls, Exception) or cls in (asyncio.CancelledError, BaseExceptionGroup)):
        return None  # SystemExit, KeyboardInterrupt, GeneratorExit, custom BaseExceptions
    try:
        exc = _construct(cls, args, fields, members)
        if not isinstance(exc, cls):
            return None
        descriptors = _field_descriptors(cls)
        for name, value in fields.items():
            if name in descriptors:
                try:
                    descriptors[name].__set__(exc, value)
                except (AttributeError, TypeError, ValueError):
                    pass  # read-only (a group's message) or refused: the constructor set it
        exc.__dict__.update(state)
    except Exception:
        return None
    return exc


def _construct(
    cls: type[BaseException],
    args: list[Any],
    fields: dict[str, Any],
    members: list[BaseException | None],
) -> BaseException:
    if issubclass(cls, BaseExceptionGroup):
        group: Any = BaseExceptionGroup.__new__  # the checks are its own: str, exceptions
        exc: BaseException = group(cls, fields.get("message"), members)
    elif isinstance(cls.__init__, WrapperDescriptorType):  # no Python __init__: call it
        try:
            return cls(*args)
        except Exception:
            exc = cls.__new__(cls, *args)
    else:
        exc = cls.__new__(cls, *args)
    _ARGS.__set__(exc, tuple(args))
    return exc


def _lookup(type_path: str) -> type[BaseException] | None:
    """The class named ``module:qualname`` if its module is loaded; never imports."""
    module_name, _, qualname = type_path.partition(":")
    obj: Any = sys.modules.get(module_name)
    if obj is None or not qualname:
        return None
    for part in qualname.split("."):
        if not part.isidentifier():
            return None  # "<locals>": a class defined in a function has no global name
        try:
            obj = vars(obj).get(part)
        except TypeError:
            return None
    if not (isinstance(obj, type) and issubclass(obj, BaseException)):
        return None
    if obj.__module__ != module_name or obj.__qualname__ != qualname:
        return None  # an alias: encoders always write the canonical name
    return obj
