"""The byte format of one journal entry (one committed step), written and read exactly.

Format 2 (current)::

    entry  = header "\\n" blobs
    header = [2, INPUT, [COMMAND, ...](, CODE)]            (compact JSON, one line)
    INPUT, COMMAND = [tag, field, ..., blob length, ...]

e.g. ``[2,["reply",3,true,1767225600.0,4],[["call",4,"Leaf","step","r/S.m.4",8,0]]]``.
Payloads (arguments, results, failures, event bodies, propagated context) are
not parsed: the header stores each one's *length* and the bytes follow the
newline, in the order the header names them (the input's first, then each
command's). So a payload comes back byte for byte — an integer above 2**64
stays an integer, a payload that is not JSON at all cannot corrupt the entry —
and replay can compare what it issues against exactly what was recorded.

``CODE``, when present, names the version of the code that committed the step
(``Runtime(code_version=)``, by default the contract's version and a digest of
the service's module): what changed when a replay diverges, and which parked
routines a new deployment should try again.

Format 1 (journals written before) embedded payloads as JSON values; it is
still read, so routines in flight across an upgrade resume.

Each kind's fields, in their order, are a table (``_INPUTS``, ``_COMMANDS``):
scalars kept in the header, then blobs kept after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
    Progress,
    Record,
    Resolve,
    Signal,
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
    scalars: tuple[str, ...]
    """Attributes kept in the header, in order."""
    blobs: tuple[str, ...] = ()
    """Attributes whose bytes follow the header; the header holds their lengths, in order."""
    row: Any = field(init=False, repr=False, compare=False)
    """``row(item, blobs) -> header row``, appending the item's payloads to ``blobs``."""

    def __post_init__(self) -> None:
        # encoding runs for every committed step: read every field with one C call
        object.__setattr__(self, "row", _row_writer(self.tag, self.scalars, self.blobs))


def _row_writer(tag: str, scalars: tuple[str, ...], payloads: tuple[str, ...]) -> Any:
    """A function writing one kind's row, generated from its fields (as ``dataclasses``
    generates ``__init__``): encoding runs for every committed step."""
    fields = ", ".join([repr(tag), *(f"item.{a}" for a in scalars)])
    fields += "".join(f", len(item.{a})" for a in payloads)
    lines = [f"    blobs.append(item.{a})" for a in payloads]
    source = "def row(item, blobs):\n" + "".join(f"{line}\n" for line in lines)
    source += f"    return ({fields},)\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<journal row {tag}>", "exec"), namespace)
    return namespace["row"]


_INPUTS = (
    _Kind("start", Start, ("at", "meta", "seed"), ("args", "context")),
    _Kind("reply", Resolve, ("seq", "ok", "at"), ("payload",)),
    _Kind("timer", FireTimer, ("seq", "at")),
    _Kind("cancel", Cancel, ("at", "id")),
    _Kind("signal", Signal, ("name", "id", "at"), ("payload",)),
)

_COMMANDS = (
    _Kind("call", Call, ("seq", "service", "method", "callee"), ("args", "context")),
    _Kind("cancel", CancelCall, ("seq", "target", "service", "callee")),
    _Kind("timer", StartTimer, ("seq", "fire_at")),
    _Kind("rec", Record, ("seq", "kind", "value")),
    _Kind("emit", Emit, ("seq", "event", "event_id"), ("payload",)),
    _Kind("progress", Progress, ("seq",), ("payload",)),
    _Kind("done", Complete, ("seq", "ok"), ("payload",)),
    _Kind("postpone", Postpone, ("attempt", "due", "error")),
)

_BY_CLASS = {k.cls: k for k in (*_INPUTS, *_COMMANDS)}
_INPUT_TAGS = {k.tag: k for k in _INPUTS}
_COMMAND_TAGS = {k.tag: k for k in _COMMANDS}


def encode_step(step: Step | StepRecord, code: str = "") -> bytes:
    """One journal entry for ``step``, committed by the code version ``code``."""
    blobs: list[bytes] = []
    kinds = _BY_CLASS
    inp = step.input
    first = kinds[type(inp)].row(inp, blobs)  # the input's payloads come first
    rows = []
    for command in step.commands:
        rows.append(kinds[type(command)].row(command, blobs))
    header = (FORMAT, first, rows, code) if code else (FORMAT, first, rows)
    head = orjson.dumps(header, default=_plain_mapping)
    return b"".join((head, b"\n", *blobs))


def _plain_mapping(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot journal {type(value).__name__}")


def decode_step(data: bytes) -> StepRecord:
    """The step stored in one journal entry (format 2, or format 1 for older journals)."""
    head, sep, tail = bytes(data).partition(b"\n")
    try:
        if not sep:
            return _decode_v1(orjson.loads(head))
        version, raw_input, raw_commands, *rest = orjson.loads(head)
        if version != FORMAT or len(rest) > 1:
            raise ValueError(f"unknown journal format {version!r}")
        code = rest[0] if rest else ""
        if not isinstance(code, str):
            raise ValueError(f"code version {code!r} is not text")
        reader = _Blobs(memoryview(tail))
        inp = _item(raw_input, _INPUT_TAGS, reader)
        commands = tuple(_item(c, _COMMAND_TAGS, reader) for c in raw_commands)
        if reader.left:
            raise ValueError(f"{reader.left} bytes after the last payload")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedMessage(f"journal entry is corrupt: {exc!r}") from None
    return StepRecord(inp, commands, code)


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


def _item(row: list[Any], kinds: dict[str, _Kind], blobs: _Blobs) -> Any:
    kind = kinds[row[0]]
    n, m = len(kind.scalars), len(kind.blobs)
    if len(row) != 1 + n + m:
        raise ValueError(f"{kind.tag} entry has {len(row) - 1} fields, not {n + m}")
    values = dict(zip(kind.scalars, row[1 : 1 + n], strict=True))
    for attr, length in zip(kind.blobs, row[1 + n :], strict=True):
        values[attr] = blobs.take(length)
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
