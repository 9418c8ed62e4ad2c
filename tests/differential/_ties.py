"""Programs whose outcome depends on scheduling accidents, which the generator avoids.

Distinct durations rule out ties between timed nodes, but two branches can
still finish at the *same* virtual instant without any timer between: both
instantly (plain local code, or a cancelled call's cleanup, which in dasync is
a round trip of messages taking no virtual time), or both right when they are
cancelled. Which of them is "first" is then decided by how many loop
iterations each takes -- a direct ``await`` may finish without suspending, a
durable call always waits for a reply -- or, in plain asyncio itself, by set
iteration order: ``as_completed`` makes its tasks from ``set(coroutines)``,
``TaskGroup`` cancels its children in the order of a set. Such a race has no
single asyncio answer, so it is no test of dasync. Hence, for a construct whose
result depends on which branch finishes first (``gather`` without
``return_exceptions``, ``TaskGroup``, ``wait`` with ``FIRST_*``,
``as_completed``):

* at most one branch may finish instantly (``instant``);
* when branches are cancelled as a group, a branch may turn its cancellation into
  something else (``converts``: a leaf in ``hold:return`` mode, an ``except
  CancelledError``, a ``finally`` or ``__aexit__`` that raises, a ``TaskGroup``,
  which raises its children's errors rather than the cancel), after a round trip
  in dasync but maybe in the same loop iteration in plain asyncio. A
  ``TaskGroup`` collects such outcomes in the order they come, so at most one
  branch may convert; a cancelled ``gather`` takes the first child to finish,
  so with a converting branch it must have no other (found by the long run: the
  converter's exception in plain asyncio, a sibling's CancelledError in dasync);

and a spawned task that is cancelled must not race an instant ``meanwhile``
with an instant body.

``instant`` and ``converts`` over-approximate: they may reject a program that
had one answer, never accept one that had several.
"""

from __future__ import annotations

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
    walk,
)

__all__ = ["converts", "instant", "race_problem", "valid"]


def instant(op: Op) -> bool:
    """May ``op`` finish without any of its timers passing (at the instant it starts)?"""
    if isinstance(op, Const | Raise | Emit | Note):
        return True
    if isinstance(op, Call | Sleep | Sub):
        return False
    if isinstance(op, Seq | AGen):
        return instant(op.items[0]) if op.items else True
    if isinstance(op, Try | Chain | WaitFor | Timeout):
        return instant(op.body)
    if isinstance(op, Ctx):
        return instant(op.enter)
    if isinstance(op, Gather):
        if op.return_exceptions:
            return all(instant(c) for c in op.items)
        return any(instant(c) for c in op.items)
    if isinstance(op, TaskGroup):
        return any(instant(c) for c in op.items)
    if isinstance(op, Wait):
        if op.when == "ALL_COMPLETED":
            return all(instant(c) for c in op.items)
        return any(instant(c) for c in op.items)
    if isinstance(op, AsCompleted):
        return all(instant(c) for c in op.items)
    if isinstance(op, Spawn):
        return instant(op.meanwhile)
    raise TypeError(op)


def converts(op: Op) -> bool:
    """May ``op``, when cancelled, end otherwise than with ``CancelledError``?"""
    for node in walk(op):
        if isinstance(node, Call) and node.mode == "hold:return":
            return True
        if isinstance(node, Try) and (node.catch or "").lstrip("*") == "CancelledError":
            return True
        if isinstance(node, TaskGroup):
            return True
        cleanup = []
        if isinstance(node, Try):
            cleanup = [node.final]
        elif isinstance(node, AGen):
            cleanup = [node.final]
        elif isinstance(node, Ctx):
            cleanup = [node.exit]
        if any(c is not None and any(isinstance(x, Raise) for x in walk(c)) for c in cleanup):
            return True
    return False


def race_problem(op: Op) -> str | None:
    """Why the node ``op`` itself has no single asyncio outcome, or None."""
    racing = (
        (isinstance(op, Gather) and not op.return_exceptions)
        or isinstance(op, TaskGroup | AsCompleted)
        or (isinstance(op, Wait) and op.when != "ALL_COMPLETED")
    )
    if racing:
        items = op.items  # type: ignore[attr-defined]
        if sum(instant(c) for c in items) > 1:
            return "two branches may finish at the same instant"
        converting = sum(converts(c) for c in items)
        if isinstance(op, TaskGroup) and converting > 1:
            return "two branches may turn a group cancellation into an outcome"
        if isinstance(op, Gather) and converting and len(items) > 1:
            return "a branch may turn a group cancellation into an outcome racing a CancelledError"
    if isinstance(op, Spawn) and op.cancel and instant(op.body) and instant(op.meanwhile):
        return "the cancel may or may not reach the task before it finishes"
    return None


def valid(program: Op) -> bool:
    return all(race_problem(node) is None for node in walk(program))
