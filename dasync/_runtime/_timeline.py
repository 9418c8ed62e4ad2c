"""A routine's journal as a readable timeline, and as a Mermaid sequence diagram.

The journal already holds everything ``dasync show`` prints: each step's input
(with its arrival time), the calls it made (target, arguments, callee id), the
replies (result or failure), timers, cancels, events and retry markers. This
module only pairs things up (a call with its reply, a timer with its firing)
and words them; it reads no store, so the client loads the journals (the
routine's and its children's) and hands them over.

A call issued in the step that consumed a *failed* reply is marked as
compensation: that is how a saga's ``except`` branch shows in the journal, and
the diagram draws those calls in a shaded block.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._engine import (
    Call,
    Cancel,
    CancelCall,
    Complete,
    Emit,
    FireTimer,
    Progress,
    Record,
    Resolve,
    Signal,
    Start,
    StartTimer,
    StepRecord,
    decode_step,
)
from ..transports import JournalStore
from ._index import failure_summary, parent_of, status_of_completion
from ._wire import callee_of

__all__ = [
    "CallSpan",
    "Row",
    "Timeline",
    "build_timeline",
    "load_timeline",
    "mermaid",
    "render_text",
    "summary",
]

_SUMMARY = 60


@dataclass(frozen=True)
class CallSpan:
    """One durable call: when it was issued, and how (and when) it came back."""

    seq: int
    service: str
    method: str
    args: str
    """Its arguments, summarised."""
    callee: str
    issued: float
    step: int
    resolved: float | None = None
    ok: bool | None = None
    result: str = ""
    """The result or error, summarised."""
    compensating: str = ""
    """Set when issued in reaction to a failed call: that call's ``Service.method``."""
    cancelled: bool = False
    """The routine asked the callee to cancel (``CancelCall``)."""

    @property
    def duration(self) -> float | None:
        return None if self.resolved is None else self.resolved - self.issued


@dataclass(frozen=True)
class Row:
    """One line of the timeline."""

    at: float
    step: int
    kind: str
    """``start``, ``call``, ``reply``, ``timer``, ``fired``, ``cancel``, ``cancel-call``,
    ``event``, ``recorded``, ``retry``, ``completed``, ``failed``, ``cancelled``."""
    text: str


@dataclass(frozen=True)
class Timeline:
    service: str
    routine_id: str
    method: str
    args: str
    caller: str
    parent: str
    started: float
    rows: list[Row]
    calls: list[CallSpan]
    status: str
    """``running``, or how it completed (``completed``, ``failed``, ``cancelled``)."""
    outcome: str = ""
    children: dict[str, Timeline] = field(default_factory=dict)
    """The timelines of the routines it called, by ``Service/routine_id``."""

    @property
    def key(self) -> str:
        return f"{self.service}/{self.routine_id}"


def summary(payload: bytes, limit: int = _SUMMARY) -> str:
    """A short text for an encoded value: its JSON, cut."""
    try:
        value = json.loads(payload) if payload else None
    except ValueError:
        text = repr(payload[:limit])
    else:
        text = json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _args(payload: bytes) -> str:
    """``name=value, ...`` of an encoded argument object."""
    try:
        value = json.loads(payload) if payload else {}
    except ValueError:
        return summary(payload)
    if not isinstance(value, dict):
        return summary(payload)
    parts = [f"{k}={summary(json.dumps(v).encode(), 24)}" for k, v in value.items()]
    text = ", ".join(parts)
    return text if len(text) <= _SUMMARY else text[: _SUMMARY - 1] + "…"


def _outcome(ok: bool, payload: bytes) -> str:
    return summary(payload) if ok else failure_summary(payload, _SUMMARY)


def build_timeline(
    service: str,
    routine_id: str,
    records: Sequence[StepRecord],
    children: Mapping[str, Timeline] | None = None,
) -> Timeline:
    """The timeline of a routine from its decoded journal (``children``: the timelines of
    routines it called, by ``Service/routine_id``, as far as the caller loaded them)."""
    rows: list[Row] = []
    calls: dict[int, CallSpan] = {}
    timers: dict[int, float] = {}
    start = records[0].input if records else None
    meta: Mapping[str, str] = start.meta if isinstance(start, Start) else {}
    began = start.at if isinstance(start, Start) else 0.0
    status, outcome = "running", ""
    for step, record in enumerate(records):
        inp = record.input
        at = inp.at
        failed_call = ""
        if isinstance(inp, Start):
            called = f"{meta.get('method', '?')}({_args(inp.args)})"
            rows.append(Row(at, step, "start", f"started {called} by {meta.get('caller', '?')}"))
        elif isinstance(inp, Resolve):
            span = calls.get(inp.seq)
            name = f"{span.service}.{span.method}" if span else f"call #{inp.seq}"
            text = _outcome(inp.ok, inp.payload)
            took = f" after {_ms(at - span.issued)}" if span else ""
            verb = "returned" if inp.ok else "raised"
            rows.append(Row(at, step, "reply", f"#{inp.seq} {name} {verb} {text}{took}"))
            if span is not None:
                calls[inp.seq] = _replace(span, resolved=at, ok=inp.ok, result=text)
            if not inp.ok:
                failed_call = f"{name} ({text})"
        elif isinstance(inp, FireTimer):
            rows.append(Row(at, step, "fired", f"timer #{inp.seq} fired"))
        elif isinstance(inp, Cancel):
            rows.append(Row(at, step, "cancel", "cancel requested"))
        elif isinstance(inp, Signal):
            sender = inp.id.rpartition("/")[0] or "?"
            text = f"signal {inp.name!r} = {summary(inp.payload)} from {sender}"
            rows.append(Row(at, step, "signal", text))
        marker = record.postponed
        if marker is not None:
            rows.append(
                Row(
                    at,
                    step,
                    "retry",
                    f"attempt {marker.attempt} failed ({marker.error}); "
                    f"retry in {_ms(marker.due - at)}",
                )
            )
            continue
        for command in record.commands:
            if isinstance(command, Call):
                callee = callee_of(routine_id, command)
                span = CallSpan(
                    command.seq,
                    command.service,
                    command.method,
                    _args(command.args),
                    callee,
                    at,
                    step,
                    compensating=failed_call,
                )
                calls[command.seq] = span
                extra = f" (compensating for {failed_call})" if failed_call else ""
                rows.append(
                    Row(
                        at,
                        step,
                        "call",
                        f"#{command.seq} call {command.service}."
                        f"{command.method}({span.args}) as {callee}{extra}",
                    )
                )
            elif isinstance(command, CancelCall):
                target = calls.get(command.target)
                if target is not None:
                    calls[command.target] = _replace(target, cancelled=True)
                rows.append(
                    Row(
                        at,
                        step,
                        "cancel-call",
                        f"#{command.seq} cancel call #{command.target} ({command.service})",
                    )
                )
            elif isinstance(command, StartTimer):
                timers[command.seq] = command.fire_at
                rows.append(
                    Row(at, step, "timer", f"#{command.seq} timer for {_ms(command.fire_at - at)}")
                )
            elif isinstance(command, Emit):
                rows.append(
                    Row(
                        at,
                        step,
                        "event",
                        f"#{command.seq} fired event {command.event}({summary(command.payload)})",
                    )
                )
            elif isinstance(command, Progress):
                rows.append(
                    Row(at, step, "progress", f"#{command.seq} progress {summary(command.payload)}")
                )
            elif isinstance(command, Record):
                rows.append(
                    Row(
                        at,
                        step,
                        "recorded",
                        f"#{command.seq} recorded dasync."
                        f"{command.kind}() = {summary(_json(command.value))}",
                    )
                )
            elif isinstance(command, Complete):
                status = status_of_completion(command)
                outcome = _outcome(command.ok, command.payload)
                verb = "returned" if command.ok else "raised"
                rows.append(
                    Row(at, step, status, f"{status}: {verb} {outcome} after {_ms(at - began)}")
                )
    return Timeline(
        service,
        routine_id,
        str(meta.get("method", "")),
        _args(start.args) if isinstance(start, Start) else "",
        str(meta.get("caller", "")),
        parent_of(meta),
        began,
        rows,
        sorted(calls.values(), key=lambda c: c.seq),
        status,
        outcome,
        dict(children or {}),
    )


def _json(value: Any) -> bytes:
    return json.dumps(value, default=str).encode()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if abs(seconds) < 10 else f"{seconds:.1f} s"


def _replace(span: CallSpan, **changes: Any) -> CallSpan:
    from dataclasses import replace

    return replace(span, **changes)


def render_text(timeline: Timeline, indent: str = "") -> list[str]:
    """The timeline as lines: a heading, then one line per row with its offset from the
    start; each child's timeline follows the call that started it, indented."""
    t = timeline
    lines = [
        f"{indent}{t.service}/{t.routine_id}  {t.method}({t.args})  {t.status}"
        + (f": {t.outcome}" if t.outcome else "")
    ]
    if t.parent:
        lines.append(f"{indent}  called by {t.parent}")
    for row in t.rows:
        lines.append(f"{indent}  +{row.at - t.started:8.3f}s  step {row.step:<3} {row.text}")
        if row.kind == "call":
            seq = int(row.text.split(" ", 1)[0].lstrip("#"))
            span = next((c for c in t.calls if c.seq == seq), None)
            child = t.children.get(f"{span.service}/{span.callee}") if span else None
            if child is not None:
                lines.extend(render_text(child, indent + "      "))
    return lines


# --- Mermaid ------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9 _.,=()\[\]{}'\"/+\-*?!@$%&|~…]")


def _label(text: str, limit: int = 70) -> str:
    """Message text Mermaid reads as text: no ``;``, ``#``, ``:`` or line breaks."""
    text = _UNSAFE.sub(" ", text).strip()
    return (text if len(text) <= limit else text[: limit - 1] + "…") or "-"


class _Diagram:
    def __init__(self) -> None:
        self.lines: list[str] = ["sequenceDiagram"]
        self.ids: dict[str, str] = {}

    def participant(self, name: str) -> str:
        known = self.ids.get(name)
        if known is None:
            known = self.ids[name] = f"P{len(self.ids) + 1}"
            self.lines.insert(len(self.ids), f"    participant {known} as {_label(name, 40)}")
        return known

    def add(self, line: str, depth: int) -> None:
        self.lines.append("    " * (depth + 1) + line)


def mermaid(timeline: Timeline) -> str:
    """A sequence diagram of the routine and, recursively, the children it has timelines
    for: calls as arrows with their arguments, replies dashed (crossed for failures),
    timers and cancels as notes, compensation in a shaded block."""
    diagram = _Diagram()
    caller = timeline.caller or "client"
    kind, _, name = caller.partition(":")
    source = diagram.participant(name if kind == "service" else caller)
    me = diagram.participant(timeline.service)
    diagram.add(f"{source}->>{me}: {_label(f'{timeline.method}({timeline.args})')}", 0)
    _draw(diagram, timeline, me, 0)
    if timeline.status != "running":
        arrow = "-->>" if timeline.status == "completed" else "--x"
        diagram.add(f"{me}{arrow}{source}: {_label(timeline.status + ' ' + timeline.outcome)}", 0)
    return "\n".join(diagram.lines) + "\n"


def _draw(diagram: _Diagram, timeline: Timeline, me: str, depth: int) -> None:
    spans = {c.seq: c for c in timeline.calls}
    compensating = False
    for row in timeline.rows:
        if row.kind == "call":
            seq = int(row.text.split(" ", 1)[0].lstrip("#"))
            span = spans[seq]
            if span.compensating and not compensating:
                compensating = True
                diagram.add("rect rgb(255, 236, 236)", depth)
                diagram.add(
                    f"Note over {me}: {_label('compensation after ' + span.compensating)}",
                    depth + 1,
                )
            inner = depth + (1 if compensating else 0)
            target = diagram.participant(span.service)
            diagram.add(f"{me}->>{target}: {_label(f'{span.method}({span.args})')}", inner)
            child = timeline.children.get(f"{span.service}/{span.callee}")
            if child is not None:
                diagram.add(f"activate {target}", inner)
                _draw(diagram, child, target, inner)
                diagram.add(f"deactivate {target}", inner)
        elif row.kind == "reply":
            seq = int(row.text.split(" ", 1)[0].lstrip("#"))
            replied = spans.get(seq)
            if replied is None:
                continue
            span = replied
            target = diagram.participant(span.service)
            arrow = "-->>" if span.ok else "--x"
            inner = depth + (1 if compensating else 0)
            diagram.add(f"{target}{arrow}{me}: {_label(span.result)}", inner)
        elif row.kind in (
            "timer",
            "fired",
            "cancel",
            "cancel-call",
            "event",
            "retry",
            "signal",
            "progress",
        ):
            inner = depth + (1 if compensating else 0)
            diagram.add(f"Note over {me}: {_label(row.text.lstrip('#0123456789 '))}", inner)
    if compensating:
        diagram.add("end", depth)


async def load_timeline(
    store: JournalStore, service: str, routine_id: str, *, depth: int = 3
) -> Timeline | None:
    """The routine's timeline with its children's, ``depth`` levels down (None: no journal)."""
    entries = await store.load(service, routine_id)
    if not entries:
        return None
    records = [decode_step(e) for e in entries]
    children: dict[str, Timeline] = {}
    if depth > 0:
        for record in records:
            for command in record.commands:
                if isinstance(command, Call):
                    callee = callee_of(routine_id, command)
                    child = await load_timeline(store, command.service, callee, depth=depth - 1)
                    if child is not None:
                        children[child.key] = child
    return build_timeline(service, routine_id, records, children)
