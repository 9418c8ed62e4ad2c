"""The engine's own vocabulary: what comes in (inputs), what goes out (commands).

Payloads are opaque bytes here: encoding belongs to the runtime, routing to
the transport. A journal is a list of ``StepRecord``: the one input a step
consumed and the commands it produced, in order. The byte format of a journal
entry is in ``_journal.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Call",
    "Cancel",
    "CancelCall",
    "Command",
    "Complete",
    "Emit",
    "FireTimer",
    "Input",
    "Postpone",
    "Progress",
    "Record",
    "Resolve",
    "Signal",
    "Start",
    "StartTimer",
    "Step",
    "StepRecord",
    "difference",
]


# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """Begin the routine with its encoded arguments."""

    args: bytes
    at: float
    meta: Mapping[str, str] = field(default_factory=dict, compare=False)
    """Routing facts the runtime keeps with the routine (method, where to reply, depth)."""
    seed: int = 0
    """Seeds the routine's own random generator (``random``, ``uuid`` inside the routine)."""
    context: bytes = b""
    """Declared context variables the caller propagated (a JSON object), or empty."""

    @property
    def key(self) -> str:
        return "start"


def input_key(kind: str, seq: int = 0, cancel_id: str = "") -> str:
    """The key under which an input is consumed once (``Input.key``), from what a message
    says it is: ``start``, ``reply:<seq>``, ``timer:<seq>``, ``cancel:<id>``, ``retry:<n>``,
    ``signal:<id>`` (``cancel_id``: the cancel's or the signal's own id)."""
    if kind == "start":
        return kind
    if kind == "cancel":
        return f"cancel:{cancel_id}" if cancel_id else "cancel"
    if kind == "signal":
        return f"signal:{cancel_id}"
    return f"{kind}:{seq}"


@dataclass(frozen=True, slots=True)
class Resolve:
    """The outcome of the call issued at ``seq``: a result, or a failure to raise."""

    seq: int
    ok: bool
    payload: bytes
    at: float

    @property
    def key(self) -> str:
        return input_key("reply", self.seq)


@dataclass(frozen=True, slots=True)
class FireTimer:
    seq: int
    at: float

    @property
    def key(self) -> str:
        return input_key("timer", self.seq)


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel the routine's main task, as ``task.cancel()`` would.

    Each cancel is its own input (``id``), so a routine that caught one cancel
    can be cancelled again. Journals written before cancel ids have ``id=""``.
    """

    at: float
    id: str = ""

    @property
    def key(self) -> str:
        return input_key("cancel", cancel_id=self.id)


@dataclass(frozen=True, slots=True)
class Signal:
    """A named signal sent to the routine (``dasync.signal``); ``id`` names this sending, so
    one delivered twice is consumed once."""

    name: str
    id: str
    payload: bytes
    at: float

    @property
    def key(self) -> str:
        return input_key("signal", cancel_id=self.id)


Input = Start | Resolve | FireTimer | Cancel | Signal


# --- commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """Start the routine ``service.method`` under the id ``callee``."""

    seq: int
    service: str
    method: str
    args: bytes
    callee: str = ""
    """The callee's routine id; empty in journals written before ids were journaled."""
    context: bytes = b""
    """Declared context variables propagated to the callee (a JSON object), or empty."""

    def describe(self) -> str:
        return f"call {self.service}.{self.method} (seq {self.seq})"


@dataclass(frozen=True, slots=True)
class CancelCall:
    """Ask the callee of the call at ``target`` to cancel."""

    seq: int
    target: int
    service: str
    callee: str = ""
    """The callee's routine id; empty in journals written before ids were journaled."""

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
    event_id: str = ""
    """The event's id; empty in journals written before ids were journaled."""

    def describe(self) -> str:
        return f"event {self.event} (seq {self.seq})"


@dataclass(frozen=True, slots=True)
class Progress:
    """An update the routine published (``dasync.progress``): journaled with its step, so
    clients read each once, in order, and a replay publishes nothing again."""

    seq: int
    payload: bytes

    def describe(self) -> str:
        return f"progress (seq {self.seq})"


@dataclass(frozen=True, slots=True)
class Complete:
    """The routine finished: its encoded result or failure."""

    seq: int
    ok: bool
    payload: bytes

    def describe(self) -> str:
        return f"completion (seq {self.seq})"


@dataclass(frozen=True, slots=True)
class Postpone:
    """The step's input failed transiently: try it again at ``due`` (attempt ``attempt``).

    A journal entry whose only command is a ``Postpone`` is a *retry marker*: it
    keeps the input and the count of failed attempts, and replay skips it.
    """

    attempt: int
    due: float
    error: str

    def describe(self) -> str:
        return f"retry {self.attempt} due at {self.due:.3f}"


Command = Call | CancelCall | StartTimer | Record | Emit | Progress | Complete | Postpone


def difference(expected: Command, actual: Command) -> str | None:
    """What differs between the journal's command and the one replay issued, if anything.

    Everything that decides what the command does is compared: kind, sequence,
    target, arguments (byte for byte), deadlines. A failure's payload is not
    (its message and traceback may legitimately embed addresses or line numbers);
    its being a failure is.
    """
    if type(expected) is not type(actual):
        return "kind"
    if getattr(expected, "seq", None) != getattr(actual, "seq", None):
        return "sequence number"
    for name in _COMPARED[type(expected)]:
        if getattr(expected, name) != getattr(actual, name):
            return name
    if isinstance(expected, Complete) and expected.ok and expected.payload != actual.payload:  # type: ignore[union-attr]
        return "result"
    return None


_COMPARED: dict[type, tuple[str, ...]] = {
    Call: ("service", "method", "args", "context"),
    CancelCall: ("target", "service"),
    StartTimer: ("fire_at",),
    Record: ("kind",),
    Emit: ("event", "payload"),
    Progress: ("payload",),
    Complete: ("ok",),
    Postpone: (),
}
"""The fields of each command that replay must reproduce exactly (see ``difference``)."""


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
    code: str = field(default="", compare=False)
    """The version of the code that committed it (``Worker`` sets it; empty before)."""

    @property
    def postponed(self) -> Postpone | None:
        """The retry marker this entry is, if it is one (replay skips those)."""
        if len(self.commands) == 1 and isinstance(self.commands[0], Postpone):
            return self.commands[0]
        return None

    @property
    def completion(self) -> Complete | None:
        for command in self.commands:
            if isinstance(command, Complete):
                return command
        return None


def completion_of(records: Sequence[StepRecord]) -> Complete | None:
    """How a routine ended, from its journal (``None`` while it runs): nothing is journaled
    after its completion, so the scan stops at the first one from the end."""
    for record in reversed(records):
        done = record.completion
        if done is not None:
            return done
    return None
