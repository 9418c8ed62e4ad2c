"""Shrinking a failing program at the AST level, within a time budget.

Hypothesis's own shrinker works on the random choices and would re-run all
modes thousands of times; this one tries program edits that keep a program
valid (hoist a child in place of its parent, drop a list item, a handler or a
``finally``, replace a node by a constant, simplify a leaf's mode) and keeps an
edit when the program still fails the same way: in the same mode family with
at least one kind of problem in common. Durations stay distinct because nodes
are only ever removed, never duplicated.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator

from ._program import AGen, Call, Const, Note, Op, Sub, Try, children, walk
from ._ties import valid

__all__ = ["minimize", "replace"]

_LISTS = ("items",)


def replace(root: Op, target: int, new: Op | None) -> Op | None:
    """``root`` with node ``target`` replaced by ``new`` (``None`` removes it from a list)."""
    if root.id == target:
        return new
    changes = {}
    for f in dataclasses.fields(root):
        v = getattr(root, f.name)
        if isinstance(v, Op):
            r = replace(v, target, new)
            if r is not v:
                if r is None:
                    return root  # only list items and optional parts may go
                changes[f.name] = r
        elif isinstance(v, tuple) and v and isinstance(v[0], Op):
            items = [replace(x, target, new) for x in v]
            if any(a is not b for a, b in zip(items, v, strict=True)):
                kept = tuple(x for x in items if x is not None)
                if not kept:
                    return root
                changes[f.name] = kept
    if not changes:
        return root
    out = dataclasses.replace(root, **changes)
    if isinstance(out, AGen):
        out = dataclasses.replace(out, take=min(out.take, len(out.items)))
    return out


def _edits(op: Op) -> Iterator[Op]:
    """Smaller variants of one node (the caller puts them in place)."""
    for _, child in children(op):
        if not isinstance(child, Note):
            yield child
    if not isinstance(op, Const | Note):
        yield Const(op.id, 1)
    if isinstance(op, Try):
        if op.handler is not None:
            yield dataclasses.replace(op, handler=None)
        if op.final is not None and op.catch is not None:
            yield dataclasses.replace(op, final=None)
    if isinstance(op, AGen):
        if op.final is not None:
            yield dataclasses.replace(op, final=None)
        if op.close == "break" and op.final is not None:
            yield dataclasses.replace(op, close="aclose")
        if op.take > 1:
            yield dataclasses.replace(op, take=op.take - 1)
    if isinstance(op, Call):
        if op.mode != "ok":
            yield dataclasses.replace(op, mode="ok")
        if op.mode.startswith("fail:") and op.mode != "fail:app":
            yield dataclasses.replace(op, mode="fail:app")
    if isinstance(op, Sub) and op.via == "peer":
        yield dataclasses.replace(op, via="self")


def _candidates(root: Op) -> Iterator[Op]:
    for node in walk(root):
        if node is not root and hasattr(node, "id"):
            removed = replace(root, node.id, None)
            if removed is not None and removed is not root:
                yield removed
        for edit in _edits(node):
            out = replace(root, node.id, edit)
            if out is not None and out is not root:
                yield out


def minimize(program: Op, still_fails: Callable[[Op], bool], budget: float = 20.0) -> Op:
    """A smaller program that ``still_fails``, found greedily within ``budget`` seconds."""
    deadline = time.monotonic() + budget
    current = program
    progress = True
    while progress and time.monotonic() < deadline:
        progress = False
        for candidate in _candidates(current):
            if time.monotonic() > deadline:
                break
            if valid(candidate) and still_fails(candidate):
                current = candidate
                progress = True
                break
    return current
