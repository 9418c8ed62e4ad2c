"""Plain Python that would differ between runs gives the same values inside a routine.

D-ASYNC's promise is that service methods are ordinary code. A routine that
calls ``time.time()``, ``random.random()`` or ``uuid.uuid4()`` and is replayed
after a crash would see other values than it did live, and its replay would go
another way. Inside a routine (code running on the routine's own loop) these
functions therefore answer from the routine:

* ``time.time()``, ``time.time_ns()`` (and so ``datetime.date.today()``): the
  routine's clock, which is the journaled arrival time of the step's input —
  constant within a step, moving forward between steps;
* the ``random`` module's functions, ``uuid.uuid4()`` and ``uuid.uuid1()``: the
  routine's own generator, seeded from a value journaled with its start.

No journal entry is written per call. Outside routines nothing changes: each
replaced function first checks whether a routine is running here (a context
variable and the running loop) and otherwise calls the original. ``logging``
keeps the wall clock, so log records show when they were really written.

What cannot be made deterministic raises ``UnsafeInRoutine`` inside a routine
where it can be detected (``os.urandom``, ``secrets``); the rest is listed in
the guide (``datetime.now()``, whose C code reads the system clock directly;
``time.monotonic()`` and ``perf_counter()``, kept real for measuring).

Two orderings asyncio leaves to object identity outside the loop's own objects
are fixed here too: ``asyncio.as_completed`` turns coroutines into tasks in
the order given (stock asyncio does it in set order), and the future of
``asyncio.gather`` hashes by creation order inside a routine.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from .._errors import UnsafeInRoutine
from ._instance import RoutineInstance, _current, current_instance
from ._loop import RoutineLoop

__all__ = ["install", "installed", "real_random", "real_uuid4"]

_real_urandom = os.urandom
real_random = random.random
"""The process's own generator (for values that are journaled, like ``dasync.random()``)."""


def real_uuid4() -> uuid.UUID:
    """A random UUID from the operating system, even inside a routine (``dasync.uuid4()``)."""
    return uuid.UUID(bytes=_real_urandom(16), version=4)


_REAL_CLOCK_CALLERS = frozenset({"logging"})
"""Modules whose calls to ``time.time()`` keep the wall clock inside routines."""

_installed = False


def installed() -> bool:
    return _installed


def install() -> None:
    """Replace the functions above, once per process (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    _install_clock()
    _install_random()
    _install_uuid()
    _install_refusals()
    _install_asyncio_orderings()


# --- time -----------------------------------------------------------------------------------


def _install_clock() -> None:
    real_time, real_time_ns = time.time, time.time_ns
    routine_var, running_loop = _current.get, asyncio.events._get_running_loop

    def routine_clock(real: Callable[[], Any]) -> Any:
        inst = routine_var()
        if inst is None or running_loop() is not inst._loop:
            return None
        if sys._getframe(2).f_globals.get("__name__") in _REAL_CLOCK_CALLERS:
            return None
        return inst.time()

    @functools.wraps(real_time)
    def time_() -> float:
        now = routine_clock(real_time)
        return real_time() if now is None else float(now)

    @functools.wraps(real_time_ns)
    def time_ns() -> int:
        now = routine_clock(real_time_ns)
        return real_time_ns() if now is None else int(now * 1e9)

    time.time = time_
    time.time_ns = time_ns


# --- random and uuid --------------------------------------------------------------------------


def _install_random() -> None:
    shared = random._inst
    for name in dir(random):
        original = getattr(random, name)
        if getattr(original, "__self__", None) is shared and callable(original):
            setattr(random, name, _per_routine(name, original))


def _per_routine(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    method = getattr(random.Random, name)
    routine_var, running_loop = _current.get, asyncio.events._get_running_loop

    @functools.wraps(original)
    def routed(*args: Any, **kwargs: Any) -> Any:
        inst = routine_var()
        if inst is None or running_loop() is not inst._loop:
            return original(*args, **kwargs)
        return method(inst.random, *args, **kwargs)

    return routed


def _install_uuid() -> None:
    real_uuid4, real_uuid1 = uuid.uuid4, uuid.uuid1

    @functools.wraps(real_uuid4)
    def uuid4() -> uuid.UUID:
        inst = current_instance()
        if inst is None:
            return real_uuid4()
        return uuid.UUID(int=inst.random.getrandbits(128), version=4)

    @functools.wraps(real_uuid1)
    def uuid1(node: int | None = None, clock_seq: int | None = None) -> uuid.UUID:
        inst = current_instance()
        if inst is None:
            return real_uuid1(node, clock_seq)
        return _uuid1_of(inst, node, clock_seq)

    uuid.uuid4 = uuid4
    uuid.uuid1 = uuid1


def _uuid1_of(inst: RoutineInstance, node: int | None, clock_seq: int | None) -> uuid.UUID:
    """A version-1 UUID from the routine's clock and generator (RFC 9562 section 5.1)."""
    rng = inst.random
    ticks = int(inst.time() * 10_000_000) + 0x01B21DD213814000
    if clock_seq is None:
        clock_seq = rng.getrandbits(14)
    if node is None:
        node = rng.getrandbits(48) | (1 << 40)  # multicast bit: not a real MAC address
    fields = (
        ticks & 0xFFFFFFFF,
        (ticks >> 32) & 0xFFFF,
        ((ticks >> 48) & 0x0FFF) | 0x1000,
        ((clock_seq >> 8) & 0x3F) | 0x80,
        clock_seq & 0xFF,
        node,
    )
    return uuid.UUID(fields=fields)


# --- what cannot be made deterministic ----------------------------------------------------


def _install_refusals() -> None:
    real_urandom = _real_urandom

    @functools.wraps(real_urandom)
    def urandom(size: int, /) -> bytes:
        if current_instance() is not None:
            raise UnsafeInRoutine(
                "os.urandom() (and so the secrets module) inside a routine returns other "
                "bytes when the routine is replayed; use random.randbytes() (deterministic in "
                "routines), dasync.uuid4(), or run it in `await dasync.io(...)` and pass the "
                "result to a service call so that it is journaled"
            )
        return real_urandom(size)

    os.urandom = urandom
    random._urandom = urandom  # type: ignore[attr-defined]  # what SystemRandom (secrets) calls


# --- orderings asyncio leaves to identity -------------------------------------------------


def _install_asyncio_orderings() -> None:
    stock = asyncio.as_completed

    @functools.wraps(stock)
    def as_completed(fs: Any, *, timeout: float | None = None) -> Any:
        loop = asyncio.events._get_running_loop()
        if (
            isinstance(loop, RoutineLoop)
            and not asyncio.isfuture(fs)
            and not asyncio.iscoroutine(fs)
        ):
            fs = [asyncio.ensure_future(f, loop=loop) for f in dict.fromkeys(fs)]
        return stock(fs, timeout=timeout)

    asyncio.as_completed = as_completed
    asyncio.tasks.as_completed = as_completed

    gathering: Any = asyncio.tasks._GatheringFuture  # type: ignore[attr-defined]

    def gathering_hash(self: Any) -> int:
        order: int | None = self.__dict__.get("_dasync_order")
        if order is None:
            loop = self.get_loop()
            order = loop.next_order() if isinstance(loop, RoutineLoop) else object.__hash__(self)
            self.__dict__["_dasync_order"] = order
        return order

    gathering.__hash__ = gathering_hash
