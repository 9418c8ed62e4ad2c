"""The interpreter of generated programs: each node becomes the asyncio code it names.

It runs inside a service method (``Node.run``/``Peer.run``), so under dasync the
same code is a routine. It is deliberately ordinary asyncio: tasks, ``gather``,
``wait`` with ``for t in pending: t.cancel()``, ``as_completed`` over
coroutines, ``TaskGroup``, ``wait_for``, ``timeout``, async generators and
context managers, ``except*``.

Tasks a construct leaves running (the pending tasks ``wait`` cancels without
awaiting, the rest of a ``gather`` after its first failure, a spawned task
whose ``meanwhile`` raised) are waited for at the end of the routine that made
them, in its own code: a sub-routine is a direct ``await`` in plain asyncio
(its leftovers would outlive it) but a routine of its own in dasync (whose
leftovers are cancelled when it returns, as ``asyncio.run`` does); waiting for
them makes both the same program. The abandoned async generator's finalizer
task is the one exception -- asyncio creates it, not this code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ._exceptions import CATCHABLE, make_error
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
    dump,
    load,
)
from ._shape import shape

__all__ = ["run_program"]


async def run_program(host: Any, prog: str, delay: float) -> Any:
    """The body of ``Node.run``: sleep ``delay``, interpret, wait for leftover tasks."""
    if delay:
        await asyncio.sleep(delay)
    scope: set[asyncio.Task[Any]] = set()
    try:
        result = await _Interp(host, scope).ev(load(prog))
    except GeneratorExit:
        raise  # a dropped coroutine (a killed worker's): nothing may run any more
    except BaseException:
        await _drain(scope)
        raise
    await _drain(scope)
    return result


async def _drain(scope: set[asyncio.Task[Any]]) -> None:
    while pending := [t for t in scope if not t.done()]:
        await asyncio.wait(pending)
    for t in scope:
        if not t.cancelled():
            t.exception()  # retrieved: no "exception was never retrieved" noise


def _outcome(task: asyncio.Task[Any]) -> Any:
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return ["raised", shape(exc)] if exc is not None else task.result()


def _value(v: Any) -> Any:
    return ["raised", shape(v)] if isinstance(v, BaseException) else v


class _Manager:
    def __init__(self, interp: _Interp, op: Ctx) -> None:
        self._interp = interp
        self._op = op

    async def __aenter__(self) -> Any:
        return await self._interp.ev(self._op.enter)

    async def __aexit__(self, et: Any, e: Any, tb: Any) -> bool:
        await self._interp.ev(self._op.exit)
        return self._op.suppress and et is not None and issubclass(et, Exception)


class _Interp:
    def __init__(self, host: Any, scope: set[asyncio.Task[Any]]) -> None:
        self.host = host
        self.scope = scope

    async def ev(self, op: Op) -> Any:
        if isinstance(op, Call):
            return await self.host.leaf.act(f"n{op.id}", op.delay, op.mode, op.value)
        if isinstance(op, Note):
            return await self.host.leaf.note(f"n{op.id}:note")
        if isinstance(op, Const):
            return op.value
        if isinstance(op, Raise):
            raise make_error(op.kind, op.value)
        if isinstance(op, Sleep):
            return await asyncio.sleep(op.delay)
        if isinstance(op, Emit):
            self.host.fired(f"n{op.id}")
            return None
        if isinstance(op, Seq):
            return [await self.ev(item) for item in op.items]
        if isinstance(op, Sub):
            target = self.host.run if op.via == "self" else self.host.peer.run
            return await target(dump(op.body), op.delay)
        if isinstance(op, Try):
            return await self._try(op)
        if isinstance(op, Chain):
            try:
                return await self.ev(op.body)
            except Exception as e:
                raise make_error(op.kind, op.value) from e
        if isinstance(op, Gather):
            tasks = [self._task(item) for item in op.items]
            values = await asyncio.gather(*tasks, return_exceptions=op.return_exceptions)
            return [_value(v) for v in values]
        if isinstance(op, TaskGroup):
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self.ev(item)) for item in op.items]
            return [t.result() for t in tasks]
        if isinstance(op, Wait):
            return await self._wait(op)
        if isinstance(op, AsCompleted):
            out = []
            for f in asyncio.as_completed([self._tracked(item) for item in op.items]):
                try:
                    out.append(await f)
                except Exception as e:
                    out.append(["raised", shape(e)])
            return out
        if isinstance(op, Spawn):
            return await self._spawn(op)
        if isinstance(op, WaitFor):
            return await asyncio.wait_for(self.ev(op.body), op.timeout)
        if isinstance(op, Timeout):
            async with asyncio.timeout(op.timeout):
                return await self.ev(op.body)
        if isinstance(op, AGen):
            return await self._agen(op)
        if isinstance(op, Ctx):
            async with _Manager(self, op) as entered:
                return [entered, await self.ev(op.body)]
            return [entered, "suppressed"]
        raise TypeError(f"unknown node {op!r}")

    def _task(self, op: Op) -> asyncio.Task[Any]:
        task = asyncio.create_task(self.ev(op))
        self.scope.add(task)
        return task

    async def _tracked(self, op: Op) -> Any:
        task = asyncio.current_task()
        assert task is not None
        self.scope.add(task)
        return await self.ev(op)

    async def _try(self, op: Try) -> Any:
        try:
            if op.catch is None:
                return await self.ev(op.body)
            if op.catch.startswith("*"):
                result: Any = None
                try:
                    result = await self.ev(op.body)
                except* CATCHABLE[op.catch[1:]] as eg:
                    handled = None if op.handler is None else await self.ev(op.handler)
                    result = ["caught*", shape(eg), handled]
                return result
            try:
                return await self.ev(op.body)
            except CATCHABLE[op.catch] as e:
                handled = None if op.handler is None else await self.ev(op.handler)
                return ["caught", shape(e), handled]
        finally:
            if op.final is not None:
                await self.ev(op.final)

    async def _wait(self, op: Wait) -> Any:
        tasks = [self._task(item) for item in op.items]
        when = getattr(asyncio, op.when)
        done, pending = await asyncio.wait(tasks, return_when=when, timeout=op.timeout)
        for t in pending:
            t.cancel()
        finished = [[i, _outcome(t)] for i, t in enumerate(tasks) if t in done]
        return [*finished, ["pending", [i for i, t in enumerate(tasks) if t in pending]]]

    async def _spawn(self, op: Spawn) -> Any:
        task = self._task(op.body)
        during = await self.ev(op.meanwhile)
        if op.cancel:
            task.cancel()
        try:
            result = await task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if not task.cancelled() or (me is not None and me.cancelling()):
                raise
            result = "cancelled"
        return [during, result]

    async def _generate(self, op: AGen) -> AsyncIterator[Any]:
        try:
            for item in op.items:
                yield await self.ev(item)
        finally:
            if op.final is not None:
                await self.ev(op.final)

    async def _agen(self, op: AGen) -> list[Any]:
        out: list[Any] = []
        if op.close == "aclose":
            gen = self._generate(op)
            try:
                async for v in gen:
                    out.append(v)
                    if len(out) >= op.take:
                        break
            finally:
                await gen.aclose()  # type: ignore[attr-defined]
        else:
            async for v in self._generate(op):  # abandoned after break: the loop finalizes it
                out.append(v)
                if len(out) >= op.take:
                    break
        return out
