"""``RoutineInstance``: one routine's live state, advanced one input at a time.

``activate(input) -> Step`` applies one input, runs the routine's loop until it
is idle, and returns the commands it produced. ``replay(journal)`` rebuilds the
live state from committed steps, checking that the routine issues exactly the
same commands again; it raises ``NonDeterminismError`` when it does not.

Three asyncio rules are kept across durable calls:

* **Cancellation waits for the callee.** Cancelling a task that awaits a durable
  call asks the callee to cancel and keeps waiting; the task resumes with the
  callee's outcome (``CancelledError``, or the value it returned after catching
  the cancellation), as awaiting a cancelled ``asyncio.Task`` does.
* **Completion cancels what is left**, as ``asyncio.run`` does: tasks still
  pending when the routine's main coroutine finishes are cancelled (durably:
  their calls are cancelled, their ``finally`` blocks run as steps), then its
  async generators are closed, then the routine completes.
* **Eviction is invisible.** Dropping a live routine from memory closes its
  coroutines (``GeneratorExit``): no ``except CancelledError`` runs, and no
  command issued while unwinding is kept.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import os
import random
import sys
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from .._errors import CallDepthExceeded, NonDeterminismError, NotAwaited
from . import _context
from ._ids import MAX_CALL_DEPTH, child_id, event_id
from ._loop import RoutineLoop, RoutineTask
from ._model import (
    Call,
    Cancel,
    CancelCall,
    Command,
    Complete,
    Emit,
    FireTimer,
    Input,
    Progress,
    Record,
    Resolve,
    Signal,
    Start,
    StartTimer,
    Step,
    StepRecord,
    difference,
)

__all__ = ["EvictedDuringStep", "RoutineInstance", "current_instance", "evicting_instance"]

Body = Callable[[bytes], Coroutine[Any, Any, bytes]]
"""Runs the routine: decodes its arguments, calls user code, encodes the result."""

FailureEncoder = Callable[[BaseException], bytes]
C = TypeVar("C", bound=Command)

_current: contextvars.ContextVar[RoutineInstance | None] = contextvars.ContextVar(
    "dasync_routine", default=None
)
_running_loop = asyncio.events._get_running_loop


_evicting: RoutineInstance | None = None


def evicting_instance() -> RoutineInstance | None:
    """The routine being dropped from memory while its ``finally`` blocks run, if any.

    CPython runs a discarded coroutine's ``finally`` blocks; that code is not part of
    the routine (it cannot issue durable commands) and runs again for nothing. Tests
    that count side effects use this to tell those runs apart.
    """
    return _evicting


def current_instance() -> RoutineInstance | None:
    """The routine whose code is running here, if any.

    Only code running on the routine's own loop counts: a thread started from a
    routine (``asyncio.to_thread``) or work sent to the host loop (``dasync.io``)
    copies the context but is not part of the routine.
    """
    inst = _current.get()
    if inst is not None and _running_loop() is inst._loop:
        return inst
    return None


class _Diverged(BaseException):
    """Unwinds user code after replay diverged; the error itself is kept on the instance."""


class EvictedDuringStep(Exception):
    """The instance was dropped while its step was running (awaiting real I/O)."""


class CallFuture(asyncio.Future):  # type: ignore[type-arg]
    """The outcome ``(ok, payload)`` of one durable call.

    ``cancel()`` does not cancel it: it asks the callee to cancel (a durable
    ``CancelCall``) and the future still resolves with the callee's outcome —
    the way a task awaiting another task learns how that task really ended.
    """

    # set right after construction (no Python __init__: one is made per durable call)
    order: int
    _inst: RoutineInstance | None
    """None once the routine is dropped from memory (nothing may cancel the call then)."""
    _seq: int
    _service: str
    _callee: str

    def __hash__(self) -> int:
        return self.order

    def cancel(self, msg: Any = None) -> bool:
        inst = self._inst
        if self.done() or inst is None:
            return False
        inst._cancel_call(self._seq, self._service, self._callee)
        if inst.legacy:
            return super().cancel(msg)  # format 1: the caller resumed at once
        return True


class RoutineInstance:
    """A routine's coroutine tree plus the bookkeeping that makes it durable."""

    # a worker may keep 10,000 of these suspended in its cache: no per-instance dict
    __slots__ = (
        "_body", "_calls", "_diverged", "_drained", "_encode_failure", "_evicted",
        "_expected", "_fatal", "_generators_closed", "_issued", "_loop", "_main", "_out",
        "_random", "_seed", "_seq", "_signal_waiters", "_signals", "_task_context",
        "_unawaited", "completion", "consumed", "context", "depth", "journal_bytes",
        "legacy", "method", "routine_id", "service", "steps",
    )  # fmt: skip

    def __init__(
        self,
        routine_id: str,
        service: str,
        method: str,
        body: Body,
        encode_failure: FailureEncoder,
        context: dict[str, Any] | None = None,
    ) -> None:
        if not _plain_installed:
            _install_plain()
        self.routine_id = routine_id
        self.service = service
        self.method = method
        self.context = context or {}
        self._body = body
        self._encode_failure = encode_failure
        self._loop = RoutineLoop(self, routine_id)  # type: ignore[abstract]
        self._main: asyncio.Task[bytes] | None = None
        self._seq = 0
        self._calls: dict[int, CallFuture] = {}
        self._issued: dict[int, tuple[str, str]] = {}
        self._out: list[Command] = []
        self._expected: deque[Command] | None = None
        self._diverged: NonDeterminismError | None = None
        self._evicted = False
        self._fatal: BaseException | None = None
        self._drained: set[asyncio.Task[Any]] = set()
        self._task_context: contextvars.Context | None = None
        """The context the routine's tasks run in (it names this instance: ``_current``)."""
        self._generators_closed = False
        self._unawaited: list[str] = []
        self._random: random.Random | None = None
        self._seed = 0
        self.legacy = False
        """Started under journal format 1: keep that format's rules (cancelled calls resume
        the caller at once; completion does not wait for pending tasks), so routines in
        flight across the upgrade replay as they ran."""
        self.depth = 0
        self.steps = 0
        self.consumed: dict[str, int] = {}
        self._signals: dict[str, deque[bytes]] = {}
        """Signals received that nothing waited for yet, by name, oldest first."""
        self._signal_waiters: dict[str, deque[asyncio.Future[bytes]]] = {}
        self.completion: Complete | None = None
        self.journal_bytes = 0

    # --- public to the runtime ------------------------------------------------------------

    @property
    def failure(self) -> BaseException | None:
        """The exception the routine failed with, if it failed."""
        if self._fatal is not None:
            return self._fatal
        main = self._main
        if main is None or not main.done():
            return None
        if main.cancelled():
            return asyncio.CancelledError()
        exc = main.exception()
        return None if isinstance(exc, _Diverged) else exc

    @property
    def done(self) -> bool:
        return self.completion is not None

    @property
    def started(self) -> bool:
        return self._main is not None

    def wants(self, inp: Input) -> bool:
        """False when ``inp`` was consumed already or can no longer change anything."""
        if inp.key in self.consumed or self.done:
            return False
        if isinstance(inp, Start):
            return self._main is None
        if isinstance(inp, Resolve):
            fut = self._calls.get(inp.seq)
            return fut is not None and not fut.done()
        if isinstance(inp, FireTimer):
            return self._loop.has_live_timer(inp.seq)
        return self._main is not None

    async def activate(self, inp: Input) -> Step:
        """Apply one input and run until idle; the step is what must be committed."""
        if not self.wants(inp):
            return Step(self.steps, inp, (), noop=True)
        self._out = []
        await self._apply(inp)
        if self._evicted:
            raise EvictedDuringStep(self.routine_id)
        step = Step(self.steps, inp, tuple(self._out))
        self._advance(step.input, step.commands)
        return step

    async def replay(self, journal: Iterable[StepRecord]) -> None:
        """Re-run the routine through committed steps; raises NonDeterminismError."""
        for record in journal:
            if record.postponed is not None:
                self.steps += 1  # a retry marker: its input is applied by a later entry
                continue
            self._out = []
            self._expected = deque(record.commands)
            try:
                await self._apply(record.input)
                if self._diverged is None and self._expected:
                    missing = self._expected[0]
                    self._diverge(missing.describe(), "nothing", "", None)
            finally:
                self._expected = None
            if self._evicted:
                raise EvictedDuringStep(self.routine_id)
            if self._diverged is not None:
                raise self._diverged
            self._advance(record.input, record.commands)

    def cancel_postponed(self, inp: Cancel) -> Step:
        """A cancel arrived while the routine's next attempt waits out a retry backoff.

        As a cancel during ``await asyncio.sleep(backoff)`` in a retry loop would, it
        ends the routine cancelled without running the attempt; calls it still has
        in flight are cancelled too.
        """
        self._out = []
        self._loop.set_time(inp.at)
        for seq, fut in sorted(self._calls.items()):
            if not fut.done():
                self._issue(CancelCall(self._next_seq(), seq, fut._service, fut._callee))
        failure = self._encode_failure(asyncio.CancelledError())
        self._issue(Complete(self._next_seq(), False, failure))
        step = Step(self.steps, inp, tuple(self._out))
        self._advance(step.input, step.commands)
        return step

    def evict(self) -> None:
        """Drop the routine from memory without running its cancellation handlers.

        Its coroutines are closed (``GeneratorExit`` at their awaits): ``finally``
        blocks run, ``except CancelledError`` and ``except Exception`` do not, and
        any durable command attempted while unwinding is refused.
        """
        global _evicting
        if self._evicted:
            return
        self._evicted = True
        self._loop.close()
        _evicting = self
        try:
            for task in sorted(self._loop.tasks, key=_order):
                task._log_destroy_pending = False  # type: ignore[attr-defined]
                try:
                    task.get_coro().close()
                except BaseException:  # a finally that misbehaves while the routine is dropped
                    pass
        finally:
            _evicting = None
        self._loop.tasks.clear()
        for fut in self._calls.values():
            fut._inst = None  # a task dropped waiting on it keeps it (as in asyncio)
        self._calls.clear()
        # no cycle left through the instance: it is freed at once, not by the collector
        # (a worker drops one per routine; left to the collector, they cost about 5% of
        # a leaf's CPU in collections)
        self._loop.detach()
        if self._task_context is not None:
            self._task_context.run(_current.set, None)
            self._task_context = None

    # --- called by routine code (through dasync's API) ------------------------------------

    def call(self, service: str, method: str, args: bytes) -> CallFuture:
        """Issue a durable call; the future resolves to ``(ok, payload)``."""
        if self.depth >= MAX_CALL_DEPTH:
            raise CallDepthExceeded(
                f"{self.service}.{self.method} (routine {self.routine_id!r}) is {self.depth} "
                f"durable calls deep, the limit; {service}.{method}() is not called. Runaway "
                f"recursion through self or between services?"
            )
        seq = self._next_seq()
        callee = child_id(self.routine_id, self.service, self.method, seq)
        call = self._issue(Call(seq, service, method, args, callee, _context.capture()))
        loop = self._loop
        fut = CallFuture(loop=loop)
        fut.order, fut._inst, fut._seq = loop.next_order(), self, seq
        fut._service, fut._callee = service, call.callee
        self._calls[seq] = fut
        self._issued[seq] = (service, call.callee)
        return fut

    def issued_call(self, seq: int) -> tuple[str, str] | None:
        """``(service, callee routine id)`` of the call this routine made at ``seq``: a reply
        is accepted only from that service, for that callee."""
        return self._issued.get(seq)

    def record(self, kind: str, make: Callable[[], Any]) -> Any:
        """A value produced once and read back from the journal on replay."""
        seq = self._next_seq()
        if self._expected is not None and self._expected:
            head = self._expected[0]
            if isinstance(head, Record) and head.seq == seq and head.kind == kind:
                self._expected.popleft()
                self._out.append(head)
                return head.value
        value = make()
        self._issue(Record(seq, kind, value))
        return value

    def patched(self, change: str, *, record: bool = True) -> bool:
        """Whether this routine takes the new path of ``change`` here (``dasync.patched``).

        Live, it does, and a marker (``Record`` of kind ``patch:<change>``) says so in the
        journal; replaying, it does only where the journal has that marker, so steps
        committed by the code before the change replay the old path. ``record=False``
        (``dasync.deprecate_patch``) writes no marker but still reads one back.
        """
        kind = f"patch:{change}"
        if self._expected is not None:
            head = self._expected[0] if self._expected else None
            if isinstance(head, Record) and head.kind == kind and head.seq == self._seq + 1:
                self._next_seq()
                self._out.append(self._expected.popleft())
                return True
            return False
        if record:
            self._issue(Record(self._next_seq(), kind, True))
        return True

    @property
    def random(self) -> random.Random:
        """The routine's own generator, seeded from its journaled start: same on replay."""
        rng = self._random
        if rng is None:
            seed = self._seed or int.from_bytes(
                hashlib.blake2b(self.routine_id.encode(), digest_size=8).digest(), "big"
            )
            rng = self._random = random.Random(seed)
        return rng

    def host_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop of the process, on which real I/O can run."""
        host = self._loop.host
        if host is None:
            raise RuntimeError("the routine's loop has not been driven yet")
        return host

    def emit(self, event: str, payload: bytes) -> None:
        """Fire an event; it is published when the current step commits."""
        seq = self._next_seq()
        self._issue(Emit(seq, event, payload, event_id(self.routine_id, self.service, seq)))

    def progress(self, payload: bytes) -> None:
        """Publish a progress update; clients read it once the current step commits."""
        self._issue(Progress(self._next_seq(), payload))

    def wait_signal(self, name: str) -> asyncio.Future[bytes]:
        """The payload of the next signal ``name``: one received already (kept until asked
        for), or the next to arrive. Cancelling the wait leaves later signals kept."""
        if self._evicted or self._diverged is not None:
            raise _Diverged()
        fut: asyncio.Future[bytes] = self._loop.create_future()
        kept = self._signals.get(name)
        if kept:
            fut.set_result(kept.popleft())
        else:
            self._signal_waiters.setdefault(name, deque()).append(fut)
        return fut

    @property
    def waiting_for_signal(self) -> bool:
        """Whether some task of the routine awaits ``dasync.signal`` now."""
        return any(not f.done() for waiting in self._signal_waiters.values() for f in waiting)

    def _deliver_signal(self, inp: Signal) -> None:
        waiters = self._signal_waiters.get(inp.name)
        while waiters:
            fut = waiters.popleft()
            if not fut.done():  # a wait cancelled (a deadline passed) takes nothing
                fut.set_result(inp.payload)
                return
        self._signals.setdefault(inp.name, deque()).append(inp.payload)

    def time(self) -> float:
        """The routine's clock: the time its current input arrived."""
        return self._loop.time()

    def start_timer(self, fire_at: float) -> int:
        seq = self._next_seq()
        self._issue(StartTimer(seq, fire_at))
        return seq

    def note_unawaited(self, what: str) -> None:
        """A durable call object was dropped without being awaited: the routine must fail."""
        if not self._evicted and self.completion is None:
            self._unawaited.append(what)

    # --- internals ------------------------------------------------------------------------

    def _next_seq(self) -> int:
        if self._evicted or self._diverged is not None:
            raise _Diverged()
        self._seq += 1
        return self._seq

    def _issue(self, command: C) -> C:
        if self._expected is not None:
            expected = self._expected.popleft() if self._expected else None
            what = "nothing more" if expected is None else difference(expected, command)
            if what is not None:
                self._diverge(
                    expected.describe() if expected else "nothing more",
                    command.describe(),
                    what,
                    _user_frame(),
                )
                raise _Diverged()
            command = expected  # type: ignore[assignment]  # the journal's own (older ids)
        self._out.append(command)
        return command

    def _diverge(self, expected: str, actual: str, what: str, where: str | None) -> None:
        if self._diverged is None:
            self._diverged = NonDeterminismError(
                self.routine_id, self.steps, expected, actual, differs=what, where=where or ""
            )

    def _cancel_call(self, seq: int, service: str, callee: str) -> None:
        if self._evicted or self._diverged is not None or self.done or seq not in self._calls:
            return
        self._issue(CancelCall(self._next_seq(), seq, service, callee))

    async def _apply(self, inp: Input) -> None:
        self._loop.set_time(inp.at)
        if isinstance(inp, Start):
            self._start(inp)
        elif isinstance(inp, Resolve):
            fut = self._calls.pop(inp.seq, None)
            if fut is not None and not fut.done():
                fut.set_result((inp.ok, inp.payload))
        elif isinstance(inp, FireTimer):
            self._loop.fire_timer(inp.seq)
        elif isinstance(inp, Cancel):
            if self._main is not None and not self._main.done():
                self._main.cancel()
        elif isinstance(inp, Signal):
            self._deliver_signal(inp)
        try:
            while True:
                await self._loop.run_until_idle()
                if self._evicted or not self._settle():
                    return
        except _Diverged:
            pass  # the divergence is on the instance; replay() raises it

    def _start(self, inp: Start) -> None:
        self._seed = inp.seed
        self.legacy = inp.seed == 0  # every format-2 start carries a non-zero seed
        self.depth = int(inp.meta.get("depth", "0") or 0)
        ctx = self._task_context = contextvars.copy_context()
        ctx.run(_current.set, self)
        if inp.context:
            ctx.run(_context.restore, inp.context)
        self._main = self._loop.create_task(self._run_body(inp.args), context=ctx)

    async def _run_body(self, args: bytes) -> bytes:
        return await self._body(args)

    def _settle(self) -> bool:
        """The loop is idle: finish the routine if it can. True when it started more work.

        Order as ``asyncio.run``: the main task ends; the tasks still pending are
        cancelled and awaited; async generators still open are closed; then the
        routine completes with the main task's outcome.
        """
        main = self._main
        if main is None or self.completion is not None or self._diverged is not None:
            return False
        if self._unawaited and self._fatal is None:
            self._fatal = NotAwaited(
                f"{self.service}.{self.method}: "
                + "; ".join(self._unawaited)
                + ". A durable call runs only when awaited (or passed to create_task, gather"
                ", wait...); add `await`"
            )
            self._unawaited.clear()
        if self.legacy:
            if main.done():
                self._complete(main)
            return False
        if not main.done():
            if self._fatal is not None and main not in self._drained:
                self._drained.add(main)
                main.cancel()
                return True
            return False
        if not self._loop.tasks and not self._loop.has_asyncgens:
            # the common end: every task finished and no generator was ever iterated here
            self._generators_closed = True
            self._complete(main)
            return False
        pending = [t for t in sorted(self._loop.tasks, key=_order) if not t.done()]
        fresh = [t for t in pending if t not in self._drained]
        if fresh:
            for task in fresh:
                self._drained.add(task)
                task.cancel()
            return True
        if pending:
            return False  # cancellations still travelling to callees
        if not self._generators_closed:
            self._generators_closed = True
            generators = self._loop.live_asyncgens()
            for agen in generators:
                self._drained.add(self._loop.create_task(agen.aclose()))
            if generators:
                return True
        self._complete(main)
        return False

    def _complete(self, main: asyncio.Task[bytes]) -> None:
        if self._fatal is not None:
            ok, payload = False, self._encode_failure(self._fatal)
        elif main.cancelled():
            ok, payload = False, self._encode_failure(asyncio.CancelledError())
        else:
            exc = main.exception()
            if isinstance(exc, _Diverged):
                return
            if exc is None:
                ok, payload = True, main.result()
            else:
                ok, payload = False, self._encode_failure(exc)
        self._issue(Complete(self._next_seq(), ok, payload))

    def _advance(self, inp: Input, commands: tuple[Command, ...]) -> None:
        self.consumed[inp.key] = self.steps
        self.steps += 1
        for command in commands:
            if isinstance(command, Complete):
                self.completion = command


_plain_installed = False


def _install_plain() -> None:
    """Make plain Python's clocks and generators deterministic inside routines (``_plain``)."""
    global _plain_installed
    from . import _plain

    _plain.install()
    _plain_installed = True


def _order(task: asyncio.Task[Any]) -> int:
    return task.order if isinstance(task, RoutineTask) else 0


_SKIPPED = (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
    os.path.dirname(os.path.abspath(asyncio.__file__)) + os.sep,
    os.path.dirname(os.path.abspath(contextvars.__file__)) + os.sep + "contextlib",
)


def _user_frame() -> str:
    """Where user code issued the command being checked: the first frame not ours/asyncio's."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_SKIPPED):
            return f"{filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        frame = frame.f_back  # type: ignore[assignment]
    return ""
