"""The oracle: the same service classes wired directly, run by plain asyncio.

Each service class is instantiated once, with the instances of the services
its constructor's contract parameters name (the implementation that subclasses
the contract) and the named extras (``log``) for the others: no proxies, so a
call to another service is a direct ``await`` and ``self.method()`` is an
ordinary method call. Events become an in-process fan-out: firing starts one
task per subscribed handler, as dasync starts one handler routine per
subscriber.

Each entry runs as its own task, and when it returns the tasks it left pending
are cancelled and awaited (``asyncio.run``'s shutdown, which is what a dasync
routine promises); event handlers are not the entry's tasks -- they are other
services' routines -- and are awaited to the end. Runs on ``VirtualTimeLoop``.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import typing
import weakref
from asyncio import events as asyncio_events
from typing import Any

import dasync

from ._effects import Effects
from ._observe import observed
from ._scenario import Control, Entry, Outcome, Scenario
from ._shape import canon, shape
from ._vloop import run_virtual

__all__ = ["build_plain", "run_plain", "run_plain_nested"]

_ENTRY: contextvars.ContextVar[int] = contextvars.ContextVar("differential_entry", default=-1)


class PlainEvent:
    """``dasync.Event`` for directly wired objects: ``+=`` subscribes, calling fires."""

    def __init__(self, tasks: set[asyncio.Task[Any]]) -> None:
        self._handlers: list[Any] = []
        self._tasks = tasks

    def __iadd__(self, handler: Any) -> PlainEvent:
        self._handlers.append(handler)
        return self

    def __isub__(self, handler: Any) -> PlainEvent:
        self._handlers.remove(handler)
        return self

    def __call__(self, payload: Any) -> None:
        loop = asyncio.get_running_loop()
        for handler in self._handlers:
            self._tasks.add(loop.create_task(handler(payload)))


def _event_names(cls: type) -> list[str]:
    names = []
    for klass in cls.__mro__:
        for name, ann in getattr(klass, "__annotations__", {}).items():
            hint = typing.get_type_hints(klass).get(name, ann)
            if typing.get_origin(hint) is dasync.Event or hint is dasync.Event:
                names.append(name)
    return names


def _implementation(classes: list[type], wanted: type) -> type | None:
    if wanted in classes:
        return wanted
    found = [c for c in classes if wanted in c.__mro__]
    return found[0] if len(found) == 1 else None


def build_plain(
    classes: list[type], extras: dict[str, Any], event_tasks: set[asyncio.Task[Any]]
) -> dict[type, Any]:
    """One instance per class, constructor parameters wired to instances or extras."""
    instances: dict[type, Any] = {}
    building: set[type] = set()

    def make(cls: type) -> Any:
        if cls in instances:
            return instances[cls]
        if cls in building:
            raise TypeError(f"plain wiring: dependency cycle through {cls.__qualname__}")
        building.add(cls)
        init = cls.__init__  # type: ignore[misc]
        hints = typing.get_type_hints(init) if init is not object.__init__ else {}
        kwargs: dict[str, Any] = {}
        if init is not object.__init__:
            for name, param in list(inspect.signature(init).parameters.items())[1:]:
                if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                    continue  # Protocol's placeholder __init__(self, *args, **kwargs)
                ann = hints.get(name)
                impl = _implementation(classes, ann) if isinstance(ann, type) else None
                if impl is not None:
                    kwargs[name] = make(impl)
                elif name in extras:
                    kwargs[name] = extras[name]
                elif param.default is inspect.Parameter.empty:
                    raise TypeError(f"plain wiring: nothing for {cls.__qualname__}({name})")
        obj = cls.__new__(cls)
        for event in _event_names(cls):
            setattr(obj, event, PlainEvent(event_tasks))
        obj.__init__(**kwargs)
        instances[cls] = obj
        return obj

    for cls in classes:
        make(cls)
    return instances


class _PlainControl:
    def __init__(self, effects: Effects, tasks: list[asyncio.Task[Any]]) -> None:
        self.effects = effects
        self._tasks = tasks

    async def until(self, label: str) -> None:
        await self.effects.when(label)

    async def cancel(self, entry: int) -> None:
        self._tasks[entry].cancel()


_OWNERS: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = weakref.WeakKeyDictionary()
"""Task -> the entry whose context created it (``Task.get_context`` is 3.12+)."""


def _task_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
    task = asyncio.Task(coro, loop=loop, **kwargs)
    context = kwargs.get("context")
    _OWNERS[task] = context.get(_ENTRY, -1) if context is not None else _ENTRY.get()
    return task


async def _run_entry(index: int, coro: Any, event_tasks: set[asyncio.Task[Any]]) -> Any:
    try:
        result = ["ok", canon(await coro)]
    except BaseException as exc:  # CancelledError included: a cancelled routine's outcome
        result = ["raised", shape(exc)]
    me = asyncio.current_task()
    while True:
        leftovers = [
            t
            for t in asyncio.all_tasks()
            if t is not me and t not in event_tasks and _OWNERS.get(t) == index
        ]
        if not leftovers:
            return result
        for t in leftovers:
            t.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)


def _entry_call(instances: dict[type, Any], entry: Entry) -> Any:
    impl = _implementation(list(instances), entry.contract)
    if impl is None:
        raise TypeError(f"plain wiring: no implementation of {entry.contract.__qualname__}")
    return getattr(instances[impl], entry.method)(*entry.args)


def run_plain(scenario: Scenario) -> Outcome:
    """Run ``scenario`` under plain asyncio with virtual time; the reference outcome."""
    effects = Effects()

    async def main() -> Outcome:
        event_tasks: set[asyncio.Task[Any]] = set()
        instances = build_plain(
            scenario.services, {"log": effects, **scenario.container}, event_tasks
        )
        loop = asyncio.get_running_loop()
        loop.set_task_factory(_task_factory)
        tasks: list[asyncio.Task[Any]] = []
        for i, entry in enumerate(scenario.entries):
            ctx = contextvars.copy_context()
            ctx.run(_ENTRY.set, i)
            coro = _run_entry(i, _entry_call(instances, entry), event_tasks)
            tasks.append(loop.create_task(coro, context=ctx))
        driver = None
        if scenario.driver is not None:
            control: Control = _PlainControl(effects, tasks)
            driver = loop.create_task(scenario.driver(control))
        results = list(await asyncio.gather(*tasks))
        if driver is not None and not driver.done():
            driver.cancel()  # waiting for something that did not happen: nothing left to do
            await asyncio.gather(driver, return_exceptions=True)
        while pending := [t for t in event_tasks if not t.done()]:
            await asyncio.wait(pending)
        return Outcome("plain", results, list(effects.labels))

    notes: list[str] = []
    with observed(notes):
        outcome: Outcome = run_virtual(main)
    outcome.diagnostics = notes
    return outcome


def run_plain_nested(scenario: Scenario) -> Outcome:
    """``run_plain`` from inside a running event loop (an async test), synchronously.

    Not in a thread: CPython 3.11.7 keeps the AST compiler's recursion counter global,
    and compiling annotations in two threads at once corrupts it (gh-106905). The outer
    loop simply does not run meanwhile, as if the oracle were one long callback.
    """
    outer = asyncio_events._get_running_loop()
    asyncio_events._set_running_loop(None)
    try:
        return run_plain(scenario)
    finally:
        asyncio_events._set_running_loop(outer)
