"""Hypothesis strategies for routine programs, bounded in size and depth.

Shrinking goes towards the first choice of every ``sampled_from``, so the
simplest kinds come first. Durations are ``2**e`` seconds for distinct ``e``
drawn as a permutation (see ``_program``), so no two timed nodes ever tie.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from ._exceptions import ERROR_KINDS
from ._program import (
    AGen,
    AsCompleted,
    Call,
    Chain,
    Const,
    Ctx,
    Emit,
    Gather,
    Note,
    Op,
    Raise,
    Seq,
    Sleep,
    Spawn,
    Sub,
    TaskGroup,
    Timeout,
    Try,
    Wait,
    WaitFor,
    render,
    walk,
)
from ._ties import converts, instant

__all__ = ["Program", "programs"]

POOL = 24
"""Distinct exponents available for durations: 1 s .. 2**23 s (97 days)."""

LEAVES = ["const", "const", "call", "call", "call", "call", "call", "call", "raise", "raise",
          "raise", "sleep", "sleep", "emit"]  # fmt: skip
COMPOUNDS = [
    "seq", "seq", "sub", "sub", "try", "try", "try", "chain", "gather", "gather", "taskgroup",
    "taskgroup", "wait", "wait", "as_completed", "spawn", "spawn", "wait_for", "wait_for",
    "timeout", "timeout", "agen", "ctx",
]  # fmt: skip
MODES = ["ok", "ok", "fail", "fail", "hold:return", "hold:raise", "hold:finally"]
CATCHES: list[str | None] = [
    "Exception", "Exception", "AppError", "TimeoutError", None, "ValueError", "LookupError",
    "CancelledError", "ExceptionGroup", "*AppError", "*Exception",
]  # fmt: skip
WHEN = ["ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION"]


@dataclass(frozen=True)
class Program:
    """A generated program; its repr is the Python-like printout (hypothesis shows it)."""

    op: Op

    def __repr__(self) -> str:
        return "\n" + render(self.op) + "\n"

    @property
    def size(self) -> int:
        return sum(1 for _ in walk(self.op))


class _Builder:
    def __init__(self, draw: Callable[..., Any], exponents: list[int], budget: int, depth: int):
        self.draw = draw
        self.exponents = exponents
        self.budget = budget
        self.max_depth = depth
        self.next_id = 0

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _duration(self) -> float | None:
        if not self.exponents:
            return None
        return float(2 ** self.exponents.pop())

    def _value(self) -> int:
        v: int = self.draw(st.integers(1, 9))
        return v

    def ops(self, depth: int, in_peer: bool, low: int = 1, high: int = 3) -> tuple[Op, ...]:
        n = self.draw(st.integers(low, max(low, min(high, self.budget))))
        return tuple(self.op(depth, in_peer) for _ in range(n))

    def racing(
        self, items: tuple[Op, ...], group: bool, first_wins: bool = False
    ) -> tuple[Op, ...]:
        """``items`` made free of ties (see ``_ties``): extra converters become plain calls,
        extra instant branches wait a timer first. ``first_wins`` (a cancelled ``gather``)
        allows a converter only as the one branch."""
        out: list[Op] = []
        instants = 0
        converters = 1 if first_wins and len(items) > 1 else 0
        for item in items:
            if instant(item) and instants:
                delay = self._duration()
                if delay is None:
                    continue
                item = Seq(self._id(), (Sleep(self._id(), delay), item))
            if group and converts(item):
                if converters:
                    delay = self._duration()
                    if delay is None:
                        continue
                    item = Call(self._id(), delay, "ok", 1)
                else:
                    converters += 1
            instants += instant(item)
            out.append(item)
        return tuple(out)

    def failing(self, depth: int, in_peer: bool) -> Op:
        """A leaf that raises: a local ``raise`` or a leaf call that fails."""
        self.budget -= 1
        i = self._id()
        kind = self.draw(st.sampled_from(ERROR_KINDS))
        delay = self._duration()
        if delay is not None and self.draw(st.booleans()):
            return Call(i, delay, f"fail:{kind}", self._value())
        return Raise(i, kind, self._value())

    def small(self, depth: int, in_peer: bool) -> Op:
        """A leaf (for finally blocks, handlers, context exits)."""
        return self.op(self.max_depth, in_peer)

    def op(self, depth: int, in_peer: bool) -> Op:
        draw = self.draw
        if self.budget <= 1 or depth >= self.max_depth:
            kind = draw(st.sampled_from(LEAVES))
        else:
            kind = draw(st.sampled_from(LEAVES + COMPOUNDS * 3))
        self.budget -= 1
        i = self._id()
        if kind in ("call", "sleep", "sub", "wait_for", "timeout") and not self.exponents:
            kind = "const"
        if kind == "const":
            return Const(i, self._value())
        if kind == "raise":
            return Raise(i, draw(st.sampled_from(ERROR_KINDS)), self._value())
        if kind == "emit":
            return Emit(i)
        if kind == "sleep":
            return Sleep(i, self._duration() or 1.0)
        if kind == "call":
            mode = draw(st.sampled_from(MODES))
            if mode == "fail":
                mode = "fail:" + draw(st.sampled_from(ERROR_KINDS))
            return Call(i, self._duration() or 1.0, mode, self._value())
        d = depth + 1
        if kind == "seq":
            return Seq(i, self.ops(d, in_peer, 2, 4))
        if kind == "sub":
            delay = self._duration() or 1.0
            via = "self" if in_peer else draw(st.sampled_from(["self", "peer"]))
            return Sub(i, self.op(d, in_peer or via == "peer"), delay, via)
        if kind == "try":
            # half the time the body is something that fails, so handlers do run
            body = self.failing(d, in_peer) if draw(st.booleans()) else self.op(d, in_peer)
            catch = draw(st.sampled_from(CATCHES))
            handler = None
            if catch is not None and draw(st.booleans()):
                handler = self.small(d, in_peer)
            final = self.small(d, in_peer) if catch is None or draw(st.booleans()) else None
            return Try(i, body, catch, handler, final)
        if kind == "chain":
            return Chain(i, self.op(d, in_peer), draw(st.sampled_from(ERROR_KINDS)), self._value())
        if kind == "gather":
            return_exceptions = draw(st.booleans())
            items = self.ops(d, in_peer)
            if not return_exceptions:
                items = self.racing(items, group=True, first_wins=True)
            return Gather(i, items, return_exceptions)
        if kind == "taskgroup":
            return TaskGroup(i, self.racing(self.ops(d, in_peer), group=True))
        if kind == "wait":
            timeout = self._duration() if draw(st.integers(0, 3)) == 0 else None
            when = draw(st.sampled_from(WHEN))
            items = self.ops(d, in_peer)
            if when != "ALL_COMPLETED":
                items = self.racing(items, group=False)
            return Wait(i, items, when, timeout)
        if kind == "as_completed":
            return AsCompleted(i, self.racing(self.ops(d, in_peer, 2, 3), group=False))
        if kind == "spawn":
            body, meanwhile = self.op(d, in_peer), self.op(d, in_peer)
            cancel = draw(st.booleans()) and not (instant(body) and instant(meanwhile))
            return Spawn(i, body, meanwhile, cancel)
        if kind == "wait_for":
            timeout = self._duration() or 1.0
            return WaitFor(i, self.op(d, in_peer), timeout)
        if kind == "timeout":
            timeout = self._duration() or 1.0
            return Timeout(i, self.op(d, in_peer), timeout)
        if kind == "agen":
            items = self.ops(d, in_peer)
            take = draw(st.integers(1, len(items)))
            close = draw(st.sampled_from(["aclose", "break"]))
            final: Op | None = None
            if draw(st.booleans()):
                # an abandoned generator is finalized by the loop, at a moment nothing
                # awaits: only an instant durable call there keeps outcomes comparable
                final = Note(self._id()) if close == "break" else self.small(d, in_peer)
            return AGen(i, items, take, final, close)
        if kind == "ctx":
            enter = self.small(d, in_peer)
            body = self.op(d, in_peer)
            return Ctx(i, enter, body, self.small(d, in_peer), draw(st.booleans()))
        raise AssertionError(kind)


@st.composite
def programs(draw: Callable[..., Any], max_nodes: int = 14, max_depth: int = 4) -> Program:
    """A program of at most about ``max_nodes`` nodes, nested at most ``max_depth`` deep."""
    exponents = list(draw(st.permutations(range(POOL))))
    budget = draw(st.integers(1, max_nodes))
    builder = _Builder(draw, exponents, budget, max_depth)
    return Program(builder.op(0, in_peer=False))
