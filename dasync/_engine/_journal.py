"""The byte format of one journal entry (one committed step), written and read exactly.

Format 2 (current)::

    entry  = header "\\n" blobs
    header = {"v": 2, "in": {...}, "cmd": [{...}, ...]}       (compact JSON, one line)

Payloads (arguments, results, failures, event bodies, propagated context) are
not parsed: the header stores each one's *length* and the bytes follow the
newline, in the order the header names them (the input's first, then each
command's). So a payload comes back byte for byte — an integer above 2**64
stays an integer, a payload that is not JSON at all cannot corrupt the entry —
and replay can compare what it issues against exactly what was recorded.

Format 1 (journals written before) embedded payloads as JSON values; it is
still read, so routines in flight across an upgrade resume.

Each kind's fields are a table (``_INPUTS``, ``_COMMANDS``): a field is either
a scalar kept in the header or a blob kept after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import orjson

from .._errors import MalformedMessage
from ._model import (
    Call,
    Cancel,
    CancelCall,
    Command,
    Complete,
    Emit,
    FireTimer,
    Input,
    Postpone,
    Record,
    Resolve,
    Start,
    StartTimer,
    Step,
    StepRecord,
)

__all__ = ["FORMAT", "decode_step", "encode_step"]

FORMAT = 2


@dataclass(frozen=True)
class _Kind:
    tag: str
    cls: type
    scalars: tuple[tuple[str, str], ...]
    """(attribute, header key) kept in the header."""
    blobs: tuple[tuple[str, str], ...]
    """(attribute, header key) whose bytes follow the header; the key holds the length."""

    def __post_init__(self) -> None:
        # encoding runs for every committed step: read all fields with one C call each
        object.__setattr__(self, "scalar_keys", ("k", *(key for _, key in self.scalars)))
        object.__setattr__(self, "read_scalars", attrgetter(*(a for a, _ in self.scalars)))
        object.__setattr__(self, "blob_keys", tuple(key for _, key in self.blobs))
        object.__setattr__(
            self, "read_blobs", attrgetter(*(a for a, _ in self.blobs)) if self.blobs else None
        )


_INPUTS = (
    _Kind("start", Start, (("at", "at"), ("meta", "meta"), ("seed", "seed")),
          (("args", "a"), ("context", "ctx"))),
    _Kind("reply", Resolve, (("seq", "s"), ("ok", "ok"), ("at", "at")), (("payload", "p"),)),
    _Kind("timer", FireTimer, (("seq", "s"), ("at", "at")), ()),
    _Kind("cancel", Cancel, (("at", "at"), ("id", "id")), ()),
)  # fmt: skip

_COMMANDS = (
    _Kind("call", Call, (("seq", "s"), ("service", "svc"), ("method", "m"), ("callee", "id")),
          (("args", "a"), ("context", "ctx"))),
    _Kind("cancel", CancelCall,
          (("seq", "s"), ("target", "t"), ("service", "svc"), ("callee", "id")), ()),
    _Kind("timer", StartTimer, (("seq", "s"), ("fire_at", "at")), ()),
    _Kind("rec", Record, (("seq", "s"), ("kind", "kind"), ("value", "v")), ()),
    _Kind("emit", Emit, (("seq", "s"), ("event", "e"), ("event_id", "id")), (("payload", "p"),)),
    _Kind("done", Complete, (("seq", "s"), ("ok", "ok")), (("payload", "p"),)),
    _Kind("postpone", Postpone, (("attempt", "n"), ("due", "due"), ("error", "err")), ()),
)  # fmt: skip

_BY_CLASS = {k.cls: k for k in (*_INPUTS, *_COMMANDS)}
_INPUT_TAGS = {k.tag: k for k in _INPUTS}
_COMMAND_TAGS = {k.tag: k for k in _COMMANDS}


def encode_step(step: Step | StepRecord) -> bytes:
    """One journal entry for ``step``."""
    blobs: list[bytes] = []
    head = {
        "v": FORMAT,
        "in": _header(step.input, blobs),
        "cmd": [_header(c, blobs) for c in step.commands],
    }
    return orjson.dumps(head, default=_plain_mapping) + b"\n" + b"".join(blobs)


def _plain_mapping(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot journal {type(value).__name__}")


def _header(item: Any, blobs: list[bytes]) -> dict[str, Any]:
    kind: Any = _BY_CLASS[type(item)]
    out = dict(zip(kind.scalar_keys, (kind.tag, *kind.read_scalars(item)), strict=True))
    if kind.read_blobs is not None:
        values = kind.read_blobs(item)
        if len(kind.blob_keys) == 1:
            values = (values,)
        for key, blob in zip(kind.blob_keys, values, strict=True):
            out[key] = len(blob)
            blobs.append(blob)
    return out


def decode_step(data: bytes) -> StepRecord:
    """The step stored in one journal entry (format 2, or format 1 for older journals)."""
    head, sep, tail = bytes(data).partition(b"\n")
    try:
        if not sep:
            return _decode_v1(orjson.loads(head))
        raw = orjson.loads(head)
        if raw.get("v") != FORMAT:
            raise ValueError(f"unknown journal format {raw.get('v')!r}")
        reader = _Blobs(memoryview(tail))
        inp = _item(raw["in"], _INPUT_TAGS, reader)
        commands = tuple(_item(c, _COMMAND_TAGS, reader) for c in raw["cmd"])
        if reader.left:
            raise ValueError(f"{reader.left} bytes after the last payload")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedMessage(f"journal entry is corrupt: {exc!r}") from None
    return StepRecord(inp, commands)


class _Blobs:
    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._at = 0

    def take(self, length: Any) -> bytes:
        if not isinstance(length, int) or length < 0 or self._at + length > len(self._view):
            raise ValueError(f"payload length {length!r} does not fit the entry")
        start, self._at = self._at, self._at + length
        return bytes(self._view[start : self._at])

    @property
    def left(self) -> int:
        return len(self._view) - self._at


def _item(raw: dict[str, Any], kinds: dict[str, _Kind], blobs: _Blobs) -> Any:
    kind = kinds[raw["k"]]
    values = {attr: raw[key] for attr, key in kind.scalars}
    for attr, key in kind.blobs:
        values[attr] = blobs.take(raw[key])
    return kind.cls(**values)


# --- format 1 (read only) -------------------------------------------------------------------


def _decode_v1(raw: dict[str, Any]) -> StepRecord:
    i = raw["in"]
    inp: Input
    kind = i["k"]
    if kind == "start":
        inp = Start(orjson.dumps(i["args"]), i["at"], i.get("meta") or {})
    elif kind == "reply":
        inp = Resolve(i["seq"], i["ok"], orjson.dumps(i["p"]), i["at"])
    elif kind == "timer":
        inp = FireTimer(i["seq"], i["at"])
    else:
        inp = Cancel(i["at"])
    cmds: list[Command] = []
    for c in raw["cmd"]:
        k = c["k"]
        if k == "call":
            cmds.append(Call(c["s"], c["svc"], c["m"], orjson.dumps(c["a"])))
        elif k == "cancel":
            cmds.append(CancelCall(c["s"], c["t"], c["svc"]))
        elif k == "timer":
            cmds.append(StartTimer(c["s"], c["at"]))
        elif k == "rec":
            cmds.append(Record(c["s"], c["kind"], c["v"]))
        elif k == "emit":
            cmds.append(Emit(c["s"], c["e"], orjson.dumps(c["p"])))
        else:
            cmds.append(Complete(c["s"], c["ok"], orjson.dumps(c["p"])))
    return StepRecord(inp, tuple(cmds))
