"""The engine's own vocabulary: what comes in (inputs), what goes out (commands).

Payloads are opaque bytes here: encoding belongs to the runtime, routing to
the transport. A journal is a list of ``StepRecord``: the one input a step
consumed and the commands it produced, in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "Call",
    "CancelCall",
    "Cancel",
    "Command",
    "Complete",
    "Emit",
    "FireTimer",
    "Input",
    "Record",
    "Resolve",
    "Start",
    "StartTimer",
    "Step",
    "StepRecord",
    "decode_step",
    "encode_step",
]


# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """Begin the routine with its encoded arguments."""

    args: bytes
    at: float
    meta: Mapping[str, str] = field(default_factory=dict, compare=False)
    """Routing facts the runtime keeps with the routine (method, where to reply)."""

    @property
    def key(self) -> str:
        return "start"


@dataclass(frozen=True, slots=True)
class Resolve:
    """The outcome of the call issued at ``seq``: a result, or a failure to raise."""

    seq: int
    ok: bool
    payload: bytes
    at: float

    @property
    def key(self) -> str:
        return f"reply:{self.seq}"


@dataclass(frozen=True, slots=True)
class FireTimer:
    seq: int
    at: float

    @property
    def key(self) -> str:
        return f"timer:{self.seq}"


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel the routine's main task, as ``task.cancel()`` would."""

    at: float

    @property
    def key(self) -> str:
        return "cancel"


Input = Start | Resolve | FireTimer | Cancel


# --- commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """Start the routine ``service.method`` under the id ``<routine id>-<seq>``."""

    seq: int
    service: str
    method: str
    args: bytes

    def describe(self) -> str:
        return f"call {self.service}.{self.method} (seq {self.seq})"


@dataclass(frozen=True, slots=True)
class CancelCall:
    """Ask the callee of the call at ``target`` to cancel."""

    seq: int
    target: int
    service: str

    def describe(self) -> str:
        return f"cancel of call seq {self.target} (seq {self.seq})"


@dataclass(frozen=True, slots=True)
class StartTimer:
    seq: int
    fire_at: float

    def describe(self) -> str:
        return f"timer (seq {self.seq})"


@dataclass(frozen=True, slots=True)
class Record:
    """A value that must be the same on replay (``dasync.uuid4()``, ``now()``, ``random()``)."""

    seq: int
    kind: str
    value: Any

    def describe(self) -> str:
        return f"dasync.{self.kind}() (seq {self.seq})"


@dataclass(frozen=True, slots=True)
class Emit:
    """Publish the event ``event`` of the routine's service once the step commits."""

    seq: int
    event: str
    payload: bytes

    def describe(self) -> str:
        return f"event {self.event} (seq {self.seq})"


@dataclass(frozen=True, slots=True)
class Complete:
    """The routine finished: its encoded result or failure."""

    seq: int
    ok: bool
    payload: bytes

    def describe(self) -> str:
        return f"completion (seq {self.seq})"


Command = Call | CancelCall | StartTimer | Record | Emit | Complete


def same_command(a: Command, b: Command) -> bool:
    """Whether replay issued the command the journal has (payloads are not compared)."""
    if type(a) is not type(b) or a.seq != b.seq:
        return False
    if isinstance(a, Call):
        return (a.service, a.method) == (b.service, b.method)  # type: ignore[union-attr]
    if isinstance(a, Record):
        return a.kind == b.kind  # type: ignore[union-attr]
    if isinstance(a, Emit):
        return a.event == b.event  # type: ignore[union-attr]
    if isinstance(a, CancelCall):
        return a.target == b.target  # type: ignore[union-attr]
    return True


# --- steps --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """What one activation produced, returned by ``RoutineInstance.activate``."""

    index: int
    input: Input
    commands: tuple[Command, ...]
    noop: bool = False

    @property
    def completion(self) -> Complete | None:
        last = self.commands[-1] if self.commands else None
        return last if isinstance(last, Complete) else None


@dataclass(frozen=True, slots=True)
class StepRecord:
    """A committed step as stored in the journal."""

    input: Input
    commands: tuple[Command, ...]


def _frag(b: bytes) -> Any:
    return orjson.Fragment(b)


def encode_step(step: Step | StepRecord) -> bytes:
    """One journal entry; payloads are embedded as raw JSON, so the entry stays JSON."""
    inp = step.input
    i: dict[str, Any]
    if isinstance(inp, Start):
        i = {"k": "start", "at": inp.at, "args": _frag(inp.args), "meta": dict(inp.meta)}
    elif isinstance(inp, Resolve):
        i = {"k": "reply", "at": inp.at, "seq": inp.seq, "ok": inp.ok, "p": _frag(inp.payload)}
    elif isinstance(inp, FireTimer):
        i = {"k": "timer", "at": inp.at, "seq": inp.seq}
    else:
        i = {"k": "cancel", "at": inp.at}
    cmds: list[dict[str, Any]] = []
    for c in step.commands:
        if isinstance(c, Call):
            cmds.append(
                {"k": "call", "s": c.seq, "svc": c.service, "m": c.method, "a": _frag(c.args)}
            )
        elif isinstance(c, CancelCall):
            cmds.append({"k": "cancel", "s": c.seq, "t": c.target, "svc": c.service})
        elif isinstance(c, StartTimer):
            cmds.append({"k": "timer", "s": c.seq, "at": c.fire_at})
        elif isinstance(c, Record):
            cmds.append({"k": "rec", "s": c.seq, "kind": c.kind, "v": c.value})
        elif isinstance(c, Emit):
            cmds.append({"k": "emit", "s": c.seq, "e": c.event, "p": _frag(c.payload)})
        else:
            cmds.append({"k": "done", "s": c.seq, "ok": c.ok, "p": _frag(c.payload)})
    return orjson.dumps({"in": i, "cmd": cmds})


def decode_step(data: bytes) -> StepRecord:
    raw = orjson.loads(data)
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
