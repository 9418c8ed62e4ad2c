"""Which effects of a program asyncio orders, whatever the scheduling: happens-before.

Every effect has a *position*: the path of ``(node, child index)`` steps from
the root to the node that caused it (a leaf call's effects add the phase:
``start`` is 0, ``done``/``fail``/``cancel`` are 1). Effect ``a`` must happen
before effect ``b`` when, where their paths part, the node runs its children
one after the other (a sequence, ``try`` body -> handler -> ``finally``, an
``async with``'s enter -> body -> exit, a generator's items -> its ``finally``,
a call's phases) and ``a``'s branch comes first -- provided ``a`` is certainly
finished when its branch is: that is its *anchor*.

A branch a construct does not wait for (``asyncio.wait``'s tasks: the pending
ones are cancelled without being awaited; the rest of a ``gather`` after its
first failure; ``as_completed``'s tasks when the loop is cancelled; a spawned
task whose ``meanwhile`` raised) is only certainly finished when the routine
that created it has drained its tasks: the anchor moves up to that routine's
body (a ``Sub`` node, or the whole program). An event's handler and an
abandoned generator's finalizer are awaited by nothing: they are ordered after
what precedes them, and before nothing.

Branches of ``gather``/``TaskGroup``/``wait``/``as_completed``/``create_task``
are concurrent: no order between them is required, since the interleaving of
concurrent tasks is exactly where a direct ``await`` (which may finish without
suspending) and a durable call (which always waits for a reply message)
legitimately differ.
"""

from __future__ import annotations

from collections.abc import Callable

from ._program import (
    AGen,
    AsCompleted,
    Call,
    Chain,
    Ctx,
    Emit,
    Gather,
    Note,
    Op,
    Seq,
    Spawn,
    Sub,
    Timeout,
    Try,
    Wait,
    WaitFor,
    children,
    walk,
)

__all__ = ["happens_before"]

Path = tuple[tuple[int, int], ...]

_SEQUENTIAL = (Seq, Try, Ctx, AGen, Chain, Sub, WaitFor, Timeout, Call, Note, Emit)


def _detaching(node: Op, index: int) -> bool:
    if isinstance(node, Gather):
        return not node.return_exceptions
    if isinstance(node, Wait | AsCompleted):
        return True
    return isinstance(node, Spawn) and index == 0


def _never_joined(node: Op, index: int) -> bool:
    return isinstance(node, AGen) and node.close == "break" and index == len(node.items)


def happens_before(program: Op) -> Callable[[str, str], bool]:
    """``before(a, b)``: asyncio guarantees effect ``a`` happens before effect ``b``."""
    nodes = {op.id: op for op in walk(program)}
    positions: dict[str, tuple[Path, Path | None]] = {}

    def anchor(path: Path) -> Path | None:
        length, lifted = len(path), False
        for depth in range(len(path) - 1, -1, -1):
            node_id, index = path[depth]
            node = nodes[node_id]
            if _never_joined(node, index):
                return None
            if _detaching(node, index):
                lifted = True
            if isinstance(node, Sub) and lifted:  # the sub-routine drains its tasks
                length, lifted = depth + 1, False
        return path[: 0 if lifted else length]

    def visit(op: Op, path: Path) -> None:
        if isinstance(op, Call):
            for phase, names in ((0, ("start",)), (1, ("done", "fail", "cancel", "finally"))):
                here = (*path, (op.id, phase))
                for name in names:
                    positions[f"n{op.id}:{name}"] = (here, anchor(here))
        elif isinstance(op, Note):
            here = (*path, (op.id, 0))
            positions[f"n{op.id}:note"] = (here, anchor(here))
        elif isinstance(op, Emit):
            positions[f"n{op.id}:heard"] = ((*path, (op.id, 0)), None)
        for index, child in children(op):
            visit(child, (*path, (op.id, index)))

    visit(program, ())

    def before(a: str, b: str) -> bool:
        if a not in positions or b not in positions:
            return False
        done_at = positions[a][1]
        starts_at = positions[b][0]
        if done_at is None:
            return False
        for (node_a, index_a), (node_b, index_b) in zip(done_at, starts_at, strict=False):
            if (node_a, index_a) != (node_b, index_b):
                assert node_a == node_b
                return isinstance(nodes[node_a], _SEQUENTIAL) and index_a < index_b
        return False

    return before
