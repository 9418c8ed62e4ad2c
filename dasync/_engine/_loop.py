"""A deterministic asyncio event loop for one routine.

Handles run strictly in FIFO order from a ready deque; time only moves when the
engine says so; timers become durable ``StartTimer`` commands. So
``asyncio.gather``, ``create_task``, ``wait``, ``sleep``, ``timeout`` and
cancellation behave as usual, and the same inputs always give the same
interleaving — which is what makes replay possible.

Orderings that stock asyncio leaves to object identity are made to follow
creation order instead: the loop's tasks and futures hash by a per-routine
counter, so sets of them (``asyncio.wait``'s ``done``/``pending``,
``TaskGroup``'s children, ``as_completed``'s queue) iterate the same way live
and on every replay.

Routines may still await real I/O (a database driver running on the host loop):
``_Bridge`` swaps a foreign future for a local one that completes when the
foreign one does, and the loop is not idle until every bridged await is done.
So a step never commits half-way through an I/O call. ``run_in_executor`` (and
so ``asyncio.to_thread``) runs on the host loop's executor the same way.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import contextvars
import logging
import sys
import weakref
from asyncio import events, futures
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Protocol

__all__ = ["RoutineFuture", "RoutineLoop", "RoutineTask"]

_log = logging.getLogger("dasync.engine")


class TimerSink(Protocol):
    def start_timer(self, fire_at: float) -> int: ...


class _Closed:
    """The timer sink of a detached loop: nothing may start a timer any more."""

    def start_timer(self, fire_at: float) -> int:
        raise RuntimeError("the routine's loop is closed")


_CLOSED = _Closed()


class RoutineTask(asyncio.Task):  # type: ignore[type-arg]
    """A task of a routine: hashes by creation order, so sets of tasks iterate alike."""

    def __init__(
        self,
        coro: Any,
        *,
        loop: RoutineLoop,
        name: str | None,
        context: contextvars.Context | None,
        order: int,
    ) -> None:
        self.order = order  # before Task.__init__, which puts the task in a WeakSet
        super().__init__(coro, loop=loop, name=name, context=context)

    def __hash__(self) -> int:
        return self.order


class RoutineFuture(asyncio.Future):  # type: ignore[type-arg]
    """A future of a routine: hashes by creation order (see ``RoutineTask``)."""

    order: int  # set right after construction, before anything can hash it

    def __hash__(self) -> int:
        return self.order


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
        self._order = 0
        self._wakeup: asyncio.Event | None = None
        self._asyncgens: dict[int, weakref.ref[Any]] = {}
        self.errors: list[dict[str, Any]] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        """This routine's unfinished tasks (``asyncio.all_tasks`` would scan every loop's)."""
        self.host: asyncio.AbstractEventLoop | None = None
        """The real event loop driving this one (where ``dasync.io`` work runs)."""

    # --- driving --------------------------------------------------------------------------

    def set_time(self, now: float) -> None:
        self._now = max(self._now, now)

    def next_order(self) -> int:
        """The next creation number (hash) for an object of this routine."""
        self._order += 1
        return self._order

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
        # per thread, like the running loop: a generator keeps the finalizer it met first
        hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(self._asyncgen_firstiter, self._asyncgen_finalizer)
        events._set_running_loop(self)
        self._running = True
        try:
            ready = self._ready
            while ready and not self._closed:
                handle = ready.popleft()
                if not handle._cancelled:
                    try:
                        handle._run()
                    except (SystemExit, KeyboardInterrupt):
                        # raised by routine code: the task holds it as its outcome already
                        # (Task.__step sets it before re-raising), so it is the routine's
                        # failure, never the worker's
                        pass
        finally:
            self._running = False
            events._set_running_loop(previous)
            sys.set_asyncgen_hooks(*hooks)

    async def run_until_idle(self) -> None:
        """Run until nothing is ready and no bridged I/O is pending."""
        while True:
            self.run_ready()
            if self._bridges == 0 or self._closed:
                return
            wakeup = self._wakeup = asyncio.Event()
            await wakeup.wait()

    @property
    def idle(self) -> bool:
        return not self._ready and self._bridges == 0

    # --- async generators: finalized here, in a deterministic order -----------------------

    def _asyncgen_firstiter(self, agen: Any) -> None:
        self._asyncgens[self.next_order()] = weakref.ref(agen)

    def _asyncgen_finalizer(self, agen: Any) -> None:
        if self._closed:
            return  # evicted: nothing may run any more
        self.call_soon(self.create_task, agen.aclose())

    @property
    def has_asyncgens(self) -> bool:
        """Whether an async generator was first iterated here and not yet handed over."""
        return bool(self._asyncgens)

    def live_asyncgens(self) -> list[Any]:
        """Async generators first iterated here and not yet collected, oldest first."""
        alive = [ref() for _, ref in sorted(self._asyncgens.items())]
        self._asyncgens.clear()
        return [g for g in alive if g is not None and g.ag_frame is not None]

    # --- bridging foreign futures ---------------------------------------------------------

    def _bridge(self, foreign: asyncio.Future[Any]) -> asyncio.Future[Any]:
        local = self.create_future()
        local._asyncio_future_blocking = True
        foreign._asyncio_future_blocking = False
        self._bridges += 1

        def foreign_done(_: Any) -> None:
            self._bridges -= 1
            if not local.done() and not self._closed:
                local.set_result(None)
            if self._wakeup is not None:
                self._wakeup.set()

        def local_done(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled() and not foreign.done():
                foreign.cancel()

        foreign.add_done_callback(foreign_done)
        local.add_done_callback(local_done)
        return local

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., Any], *args: Any
    ) -> Any:
        """Run ``func`` in the host's executor; the step waits for it (not journaled)."""
        if self.host is None:
            raise RuntimeError("the routine's loop has not been driven yet")
        return self.host.run_in_executor(executor, func, *args)

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

    call_soon_threadsafe = call_soon  # type: ignore[assignment]

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
        fut = RoutineFuture(loop=self)
        self._order += 1
        fut.order = self._order
        return fut

    def create_task(
        self,
        coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[Any]:
        task = RoutineTask(
            _Bridge(coro, self), loop=self, name=name, context=context, order=self.next_order()
        )
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
        self._asyncgens.clear()

    def detach(self) -> None:
        """Closed for good: forget the routine (which refers to this loop) and its tasks."""
        self.close()
        self._timer_sink = _CLOSED
        self.tasks.clear()
        self._wakeup = None

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

    async def shutdown_asyncgens(self) -> None:
        pass  # the routine closes its generators itself when it completes

    def __repr__(self) -> str:
        return f"<RoutineLoop {self._name}>"


def _refuse(name: str) -> Callable[..., Any]:
    def refuse(self: RoutineLoop, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"loop.{name}() cannot run on a routine's deterministic event loop: run the I/O "
            f"on the process's loop with `await dasync.io(...)` (it then runs again on replay, "
            f"so keep it idempotent), or move it into a service method"
        )

    refuse.__name__ = name
    return refuse


for _name in (
    "create_connection", "create_server", "create_unix_connection", "create_unix_server",
    "create_datagram_endpoint", "getaddrinfo", "getnameinfo", "sock_recv", "sock_recv_into",
    "sock_recvfrom", "sock_sendall", "sock_sendto", "sock_connect", "sock_accept",
    "sock_sendfile", "sendfile", "start_tls", "connect_accepted_socket", "connect_read_pipe",
    "connect_write_pipe", "subprocess_exec", "subprocess_shell", "add_reader", "add_writer",
    "remove_reader", "remove_writer", "add_signal_handler", "remove_signal_handler",
    "run_forever", "run_until_complete", "set_default_executor",
):  # fmt: skip
    setattr(RoutineLoop, _name, _refuse(_name))


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
