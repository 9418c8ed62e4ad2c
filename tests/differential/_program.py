"""Routine programs: a small AST of asyncio operations, its JSON form and its printout.

A program is a tree of ``Op`` nodes, each with an ``id`` unique in the whole
tree (sub-programs included), so an effect names the node that caused it and a
failure can be traced back to one line of the printout. ``Sub`` bodies travel
to the sub-routine as JSON (``dump``/``load``); ``render`` prints a program as
Python-like text for failure reports.

Every node that takes virtual time (a leaf call, a sub-routine, a sleep, a
timeout) has a distinct power-of-two duration: any two different sets of them
have different sums, so two things can only happen at the same virtual instant
when no timed node separates them -- and then they are plain local code, which
dasync runs in the same order as asyncio. See the package docstring.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AGen",
    "AsCompleted",
    "Call",
    "Chain",
    "Const",
    "Ctx",
    "Emit",
    "Gather",
    "Note",
    "Op",
    "Raise",
    "Seq",
    "Sleep",
    "Spawn",
    "Sub",
    "TaskGroup",
    "Timeout",
    "Try",
    "Wait",
    "WaitFor",
    "children",
    "dump",
    "load",
    "render",
    "walk",
]


@dataclass(frozen=True)
class Op:
    id: int


@dataclass(frozen=True)
class Call(Op):
    """``await leaf.act(key, delay, mode, value)``: a durable call to another service."""

    delay: float
    mode: str  # ok | fail:<kind> | hold:return | hold:raise | hold:finally
    value: int


@dataclass(frozen=True)
class Note(Op):
    """``await leaf.note(key)``: an instant durable call (only in an abandoned generator)."""


@dataclass(frozen=True)
class Const(Op):
    value: int


@dataclass(frozen=True)
class Raise(Op):
    kind: str
    value: int


@dataclass(frozen=True)
class Sleep(Op):
    """``await asyncio.sleep(delay)``: a durable timer."""

    delay: float


@dataclass(frozen=True)
class Emit(Op):
    """``self.fired(key)``: a domain event; a listener service records ``<key>:heard``."""


@dataclass(frozen=True)
class Seq(Op):
    items: tuple[Op, ...]


@dataclass(frozen=True)
class Sub(Op):
    """``await self.run(body, delay)`` (a durable sub-routine) or ``self.peer.run(...)``."""

    body: Op
    delay: float
    via: str  # self | peer


@dataclass(frozen=True)
class Try(Op):
    body: Op
    catch: str | None  # a name of _exceptions.CATCHABLE, "*Name" for except*, None
    handler: Op | None
    final: Op | None


@dataclass(frozen=True)
class Chain(Op):
    """``try: body except Exception as e: raise <kind>(value) from e``."""

    body: Op
    kind: str
    value: int


@dataclass(frozen=True)
class Gather(Op):
    items: tuple[Op, ...]
    return_exceptions: bool


@dataclass(frozen=True)
class TaskGroup(Op):
    items: tuple[Op, ...]


@dataclass(frozen=True)
class Wait(Op):
    """``done, pending = await asyncio.wait(tasks, ...)`` then ``for t in pending: t.cancel()``."""

    items: tuple[Op, ...]
    when: str  # ALL_COMPLETED | FIRST_COMPLETED | FIRST_EXCEPTION
    timeout: float | None


@dataclass(frozen=True)
class AsCompleted(Op):
    """``for f in asyncio.as_completed([coroutines]): await f`` (each awaited in a try)."""

    items: tuple[Op, ...]


@dataclass(frozen=True)
class Spawn(Op):
    """``t = create_task(body)``; ``meanwhile``; optionally ``t.cancel()``; ``await t``."""

    body: Op
    meanwhile: Op
    cancel: bool


@dataclass(frozen=True)
class WaitFor(Op):
    body: Op
    timeout: float


@dataclass(frozen=True)
class Timeout(Op):
    """``async with asyncio.timeout(timeout): body``."""

    body: Op
    timeout: float


@dataclass(frozen=True)
class AGen(Op):
    """An async generator yielding ``items``' values, ``finally: final``; the consumer
    takes ``take`` values then breaks: ``close`` is ``break`` (the generator is
    abandoned, finalized by the loop) or ``aclose`` (closed explicitly)."""

    items: tuple[Op, ...]
    take: int
    final: Op | None
    close: str


@dataclass(frozen=True)
class Ctx(Op):
    """``async with`` a manager whose ``__aenter__`` runs ``enter``, ``__aexit__`` ``exit``
    (returning ``suppress``)."""

    enter: Op
    body: Op
    exit: Op
    suppress: bool


_KINDS: dict[str, type[Op]] = {
    cls.__name__: cls
    for cls in (
        Call, Note, Const, Raise, Sleep, Emit, Seq, Sub, Try, Chain, Gather, TaskGroup, Wait,
        AsCompleted, Spawn, WaitFor, Timeout, AGen, Ctx,
    )
}  # fmt: skip


def children(op: Op) -> list[tuple[int, Op]]:
    """``(index, child)`` pairs; the index is the child's position for ordering."""
    if isinstance(op, Seq | Gather | TaskGroup | Wait | AsCompleted):
        return list(enumerate(op.items))
    if isinstance(op, AGen):
        out = list(enumerate(op.items))
        if op.final is not None:
            out.append((len(op.items), op.final))
        return out
    if isinstance(op, Sub | Chain | WaitFor | Timeout):
        return [(0, op.body)]
    if isinstance(op, Try):
        return [(i, c) for i, c in enumerate((op.body, op.handler, op.final)) if c is not None]
    if isinstance(op, Spawn):
        return [(0, op.body), (1, op.meanwhile)]
    if isinstance(op, Ctx):
        return [(0, op.enter), (1, op.body), (2, op.exit)]
    return []


def walk(op: Op) -> Iterator[Op]:
    yield op
    for _, child in children(op):
        yield from walk(child)


# --- JSON -----------------------------------------------------------------------------------


def _to_data(op: Op) -> dict[str, Any]:
    data: dict[str, Any] = {"k": type(op).__name__}
    for f in dataclasses.fields(op):
        v = getattr(op, f.name)
        if isinstance(v, Op):
            v = _to_data(v)
        elif isinstance(v, tuple):
            v = [_to_data(x) for x in v]
        data[f.name] = v
    return data


def _from_data(data: dict[str, Any]) -> Op:
    cls = _KINDS[data["k"]]
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        v = data[f.name]
        if isinstance(v, dict):
            v = _from_data(v)
        elif isinstance(v, list):
            v = tuple(_from_data(x) for x in v)
        kwargs[f.name] = v
    return cls(**kwargs)


def dump(op: Op) -> str:
    return json.dumps(_to_data(op), separators=(",", ":"))


def load(text: str) -> Op:
    return _from_data(json.loads(text))


# --- printing -------------------------------------------------------------------------------


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _expr(op: Op) -> str | None:
    """A one-line expression for simple nodes, else None."""
    if isinstance(op, Call):
        return f'leaf.act("n{op.id}", {_num(op.delay)}, "{op.mode}", {op.value})'
    if isinstance(op, Note):
        return f'leaf.note("n{op.id}")'
    if isinstance(op, Sleep):
        return f"asyncio.sleep({_num(op.delay)})"
    return None


def _lines(op: Op, ind: str, out: list[str]) -> None:
    tag = f"  # n{op.id}"
    e = _expr(op)
    if e is not None:
        out.append(f"{ind}await {e}{tag}")
    elif isinstance(op, Const):
        out.append(f"{ind}{op.value}{tag}")
    elif isinstance(op, Raise):
        out.append(f"{ind}raise make_error({op.kind!r}, {op.value}){tag}")
    elif isinstance(op, Emit):
        out.append(f'{ind}self.fired("n{op.id}"){tag}')
    elif isinstance(op, Seq):
        out.append(f"{ind}# seq{tag}")
        for item in op.items:
            _lines(item, ind, out)
    elif isinstance(op, Sub):
        target = "self" if op.via == "self" else "self.peer"
        out.append(f"{ind}await {target}.run(delay={_num(op.delay)}, prog=<<{tag}")
        _lines(op.body, ind + "    ", out)
        out.append(f"{ind}>>)")
    elif isinstance(op, Try):
        out.append(f"{ind}try:{tag}")
        _lines(op.body, ind + "    ", out)
        if op.catch is not None:
            star = "*" if op.catch.startswith("*") else ""
            out.append(f"{ind}except{star} {op.catch.lstrip('*')} as e:")
            if op.handler is not None:
                _lines(op.handler, ind + "    ", out)
            else:
                out.append(f"{ind}    pass")
        if op.final is not None:
            out.append(f"{ind}finally:")
            _lines(op.final, ind + "    ", out)
    elif isinstance(op, Chain):
        out.append(f"{ind}try:{tag}")
        _lines(op.body, ind + "    ", out)
        out.append(f"{ind}except Exception as e:")
        out.append(f"{ind}    raise make_error({op.kind!r}, {op.value}) from e")
    elif isinstance(op, Gather | TaskGroup | Wait | AsCompleted):
        if isinstance(op, Gather):
            head = f"await asyncio.gather(*tasks, return_exceptions={op.return_exceptions})"
        elif isinstance(op, TaskGroup):
            head = "async with asyncio.TaskGroup() as tg:  tg.create_task(...) for each"
        elif isinstance(op, Wait):
            t = "" if op.timeout is None else f", timeout={_num(op.timeout)}"
            head = (
                f"done, pending = await asyncio.wait(tasks, return_when={op.when}{t}); "
                f"for t in pending: t.cancel()"
            )
        else:
            head = "for f in asyncio.as_completed(coroutines): try: await f ..."
        out.append(f"{ind}{head}{tag}")
        _branches(op.items, ind, out)
    elif isinstance(op, Spawn):
        out.append(f"{ind}t = asyncio.create_task(<<{tag}")
        _lines(op.body, ind + "    ", out)
        out.append(f"{ind}>>)")
        _lines(op.meanwhile, ind, out)
        if op.cancel:
            out.append(f"{ind}t.cancel()")
        out.append(f"{ind}await t")
    elif isinstance(op, WaitFor):
        out.append(f"{ind}await asyncio.wait_for(timeout={_num(op.timeout)}, fut=<<{tag}")
        _lines(op.body, ind + "    ", out)
        out.append(f"{ind}>>)")
    elif isinstance(op, Timeout):
        out.append(f"{ind}async with asyncio.timeout({_num(op.timeout)}):{tag}")
        _lines(op.body, ind + "    ", out)
    elif isinstance(op, AGen):
        out.append(f"{ind}async def gen():{tag}")
        out.append(f"{ind}    try:")
        for item in op.items:
            out.append(f"{ind}        yield <<")
            _lines(item, ind + "            ", out)
            out.append(f"{ind}        >>")
        out.append(f"{ind}    finally:")
        if op.final is not None:
            _lines(op.final, ind + "        ", out)
        else:
            out.append(f"{ind}        pass")
        how = "abandoned" if op.close == "break" else "then await g.aclose()"
        out.append(f"{ind}async for v in (g := gen()): take {op.take} then break  # {how}")
    elif isinstance(op, Ctx):
        out.append(f"{ind}class CM: async def __aenter__(): <<{tag}")
        _lines(op.enter, ind + "    ", out)
        out.append(f"{ind}>> async def __aexit__(): <<")
        _lines(op.exit, ind + "    ", out)
        out.append(f"{ind}>>  return {op.suppress}  # suppress")
        out.append(f"{ind}async with CM():")
        _lines(op.body, ind + "    ", out)
    else:  # pragma: no cover
        out.append(f"{ind}{op!r}")


def _branches(items: tuple[Op, ...], ind: str, out: list[str]) -> None:
    for i, item in enumerate(items):
        out.append(f"{ind}  branch {i}:")
        _lines(item, ind + "      ", out)


def render(op: Op) -> str:
    """The program as Python-like text, one node per line, tagged with node ids."""
    out = ["async def run(self):  # Node.run, the entry routine"]
    _lines(op, "    ", out)
    return "\n".join(out)
