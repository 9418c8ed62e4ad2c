"""Comparing a mode's outcome with the plain-asyncio oracle's, and saying how they differ."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from ._scenario import Outcome
from ._shape import short, show, show_result

__all__ = ["HarnessError", "differences", "order_violations", "report"]

Before = Callable[[str, str], bool]


class HarnessError(AssertionError):
    """The oracle itself broke an ordering the harness believes asyncio guarantees."""


def order_violations(
    effects: list[str], before: Before | None, pairs: Iterable[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """Pairs ``(a, b)`` that must be in that order and are both present but reversed."""
    first: dict[str, int] = {}
    for i, label in enumerate(effects):
        first.setdefault(label, i)
    bad = [(a, b) for a, b in pairs if a in first and b in first and first[a] > first[b]]
    if before is not None:
        labels = list(first)
        for a in labels:
            for b in labels:
                if a != b and first[a] > first[b] and before(a, b):
                    bad.append((a, b))
    return bad


_FIELDS = ("type", "args", "str()", "attributes", "notes", "__cause__")


def _shape_diff(a: Any, b: Any, where: str) -> list[str]:
    if not (isinstance(a, list) and isinstance(b, list) and len(a) == len(b) == len(_FIELDS)):
        return [f"{where or 'exception'}: {short(repr(a))} vs {short(repr(b))}"]
    out = []
    for name, x, y in zip(_FIELDS, a, b, strict=True):
        if x == y:
            continue
        if name == "__cause__" and x is not None and y is not None:
            out += _shape_diff(x, y, f"{where}__cause__.")
        else:
            out.append(f"{where}{name}: {short(repr(x))} vs {short(repr(y))}")
    return out


def _canon_diff(a: Any, b: Any, path: str) -> list[str]:
    if a == b:
        return []
    containers = ("list", "tuple")
    if (
        isinstance(a, list) and isinstance(b, list) and len(a) == 2 == len(b)
        and a[0] == b[0] and a[0] in containers and len(a[1]) == len(b[1])
    ):  # fmt: skip
        differing = [i for i, (x, y) in enumerate(zip(a[1], b[1], strict=True)) if x != y]
        if len(differing) <= 6:
            return [d for i in differing for d in _canon_diff(a[1][i], b[1][i], f"{path}[{i}]")]
    return [f"{path}: {show(a)} vs {show(b)}"]


def explain(want: Any, have: Any) -> list[str]:
    """Where two entry results differ, each as ``where: plain vs mode``."""
    (want_kind, want_body), (have_kind, have_body) = want, have
    if want_kind != have_kind:
        return []
    if want_kind == "raised":
        return _shape_diff(want_body, have_body, "")
    if want_kind == "ok":
        return _canon_diff(want_body, have_body, "value")
    return []


def differences(
    expected: Outcome,
    got: Outcome,
    before: Before | None = None,
    pairs: Iterable[tuple[str, str]] = (),
) -> list[str]:
    """What ``got`` does differently from ``expected`` (empty when equivalent)."""
    problems = []
    for i, (want, have) in enumerate(zip(expected.results, got.results, strict=True)):
        if want != have:
            problems.append(
                f"entry {i} result: plain asyncio {show_result(want)}; "
                f"{got.mode} {show_result(have)}"
            )
            for where in explain(want, have)[:6]:
                problems.append(f"  differs at {where}  (plain vs {got.mode})")
    want_fx, have_fx = Counter(expected.effects), Counter(got.effects)
    missing, extra = want_fx - have_fx, have_fx - want_fx
    if missing:
        problems.append(
            f"effects missing (happened in plain asyncio): {sorted(missing.elements())}"
        )
    if extra:
        problems.append(f"effects extra (not in plain asyncio): {sorted(extra.elements())}")
    if got.strays:
        problems.append(
            f"effects outside any routine (ran inline instead of as durable calls): {got.strays}"
        )
    for error in got.errors:
        problems.append(f"dasync raised: {error}")
    pairs = list(pairs)
    for a, b in order_violations(got.effects, before, pairs):
        problems.append(
            f"order: {a} must happen before {b} (it does in asyncio); {got.mode} did not"
        )
    return problems


def report(expected: Outcome, got: Outcome, problems: list[str], program: str = "") -> str:
    lines = [f"mode {got.mode!r} disagrees with plain asyncio:"]
    lines += [f"  - {p}" for p in problems]
    lines.append(f"  plain effects:  {expected.effects}")
    lines.append(f"  {got.mode} effects: {got.effects}")
    if got.diagnostics:
        lines.append("  diagnostics:")
        seen: set[str] = set()
        for note in got.diagnostics:
            if note not in seen:
                seen.add(note)
                lines.append(f"    {note}")
    if program:
        lines.append("program:")
        lines += ["  " + line for line in program.splitlines()]
    return "\n".join(lines)
