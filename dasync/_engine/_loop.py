"""A deterministic asyncio event loop for one routine.

Handles run strictly in FIFO order from a ready deque; time only moves when the
engine says so; timers become durable ``StartTimer`` commands. So
``asyncio.gather``, ``create_task``, ``wait``, ``sleep``, ``timeout`` and
cancellation behave as usual, and the same inputs always give the same
interleaving — which is what makes replay possible.

Routines may still await real I/O (a database driver running on the host loop):
``_Bridge`` swaps a foreign future for a local one that completes when the
foreign one does, and the loop is not idle until every bridged await is done.
So a step never commits half-way through an I/O call.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import contextvars
import logging
from asyncio import events, futures
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Protocol

__all__ = ["RoutineLoop"]

_log = logging.getLogger("dasync.engine")


class TimerSink(Protocol):
    def start_timer(self, fire_at: float) -> int: ...


class RoutineLoop(asyncio.AbstractEventLoop):
    """The loop a routine's tasks run on; driven by ``run_until_idle``."""

    def __init__(self, timers: TimerSink, name: str) -> None:
        self._ready: collections.deque[asyncio.Handle] = collections.deque()
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._timer_sink = timers
        self._name = name
        self._now = 0.0
        self._running = False
        self._closed = False
        self._bridges = 0
        self._wakeup: asyncio.Event | None = None
        self.errors: list[dict[str, Any]] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        """This routine's unfinished tasks (``asyncio.all_tasks`` would scan every loop's)."""
        self.host: asyncio.AbstractEventLoop | None = None
        """The real event loop driving this one (where ``dasync.io`` work runs)."""

    # --- driving --------------------------------------------------------------------------

    def set_time(self, now: float) -> None:
        self._now = max(self._now, now)

    def fire_timer(self, seq: int) -> bool:
        """Make the durable timer ``seq`` ready; False if it was cancelled or unknown.

        Timers of this routine due no later than ``seq`` fire with it, earliest first:
        a transport may deliver timer messages late and out of order (NATS schedules
        fire in batches), and a routine must still see its timers in deadline order.
        The late messages of timers fired this way are then no-ops.
        """
        handle = self._timers.get(seq)
        if handle is None or handle.cancelled():
            self._timers.pop(seq, None)
            return False
        due = sorted(
            (h.when(), s)
            for s, h in self._timers.items()
            if h.when() <= handle.when() and not h.cancelled()
        )
        for _, s in due:
            fired = self._timers.pop(s)
            self._now = max(self._now, fired.when())
            self._ready.append(fired)
        return True

    def has_live_timer(self, seq: int) -> bool:
        handle = self._timers.get(seq)
        return handle is not None and not handle.cancelled()

    def run_ready(self) -> None:
        """Run handles until none is ready; never blocks."""
        previous = events._get_running_loop()
        if previous is not None and previous is not self:
            self.host = previous
        events._set_running_loop(self)
        self._running = True
        try:
            ready = self._ready
            while ready:
                handle = ready.popleft()
                if not handle._cancelled:
                    handle._run()
        finally:
            self._running = False
            events._set_running_loop(previous)

    async def run_until_idle(self) -> None:
        """Run until nothing is ready and no bridged I/O is pending."""
        while True:
            self.run_ready()
            if self._bridges == 0:
                return
            wakeup = self._wakeup = asyncio.Event()
            await wakeup.wait()

    # --- bridging foreign futures ---------------------------------------------------------

    def _bridge(self, foreign: asyncio.Future[Any]) -> asyncio.Future[Any]:
        local: asyncio.Future[Any] = asyncio.Future(loop=self)
        local._asyncio_future_blocking = True
        foreign._asyncio_future_blocking = False
        self._bridges += 1

        def foreign_done(_: Any) -> None:
            self._bridges -= 1
            if not local.done():
                local.set_result(None)
            if self._wakeup is not None:
                self._wakeup.set()

        def local_done(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled() and not foreign.done():
                foreign.cancel()

        foreign.add_done_callback(foreign_done)
        local.add_done_callback(local_done)
        return local

    # --- the AbstractEventLoop surface routines use ---------------------------------------

    def time(self) -> float:
        return self._now

    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at(self._now + delay, callback, *args, context=context)

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        seq = self._timer_sink.start_timer(when)
        self._timers[seq] = handle
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        pass  # the durable timer still fires; fire_timer() then finds it cancelled

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[Any]:
        task = asyncio.Task(_Bridge(coro, self), loop=self, name=name, context=context)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._ready.clear()
        self._timers.clear()

    def get_debug(self) -> bool:
        return False

    def set_debug(self, enabled: bool) -> None:
        pass

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if exc is not None and not isinstance(exc, Exception):
            return  # engine control-flow signals (replay divergence, eviction)
        self.errors.append(context)
        _log.debug("routine %s: %s", self._name, context.get("message"), exc_info=exc)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.call_exception_handler(context)

    def get_exception_handler(self) -> None:
        return None

    def get_task_factory(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<RoutineLoop {self._name}>"


class _Bridge(collections.abc.Coroutine[Any, Any, Any]):
    """Wraps a task's coroutine so that awaiting a host-loop future works."""

    __slots__ = ("_coro", "_loop")

    def __init__(
        self, coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any], loop: RoutineLoop
    ) -> None:
        self._coro = coro
        self._loop = loop

    def _intercept(self, yielded: Any) -> Any:
        if getattr(yielded, "_asyncio_future_blocking", None) is not None:
            if futures._get_loop(yielded) is not self._loop:  # type: ignore[attr-defined]
                return self._loop._bridge(yielded)
        return yielded

    def send(self, value: Any) -> Any:
        return self._intercept(self._coro.send(value))

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if val is None and tb is None:
            return self._intercept(self._coro.throw(typ))
        return self._intercept(self._coro.throw(typ, val, tb))

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._coro.__await__()  # type: ignore[union-attr]

    @property
    def cr_frame(self) -> Any:
        return getattr(self._coro, "cr_frame", None)

    @property
    def cr_code(self) -> Any:
        return getattr(self._coro, "cr_code", None)

    def __repr__(self) -> str:
        return repr(self._coro)
