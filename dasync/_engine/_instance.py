"""``RoutineInstance``: one routine's live state, advanced one input at a time.

``activate(input) -> Step`` applies one input, runs the routine's loop until it
is idle, and returns the commands it produced. ``replay(journal)`` rebuilds the
live state from committed steps, checking that the routine issues the same
commands again; it raises ``NonDeterminismError`` when it does not.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from .._errors import NonDeterminismError
from ._loop import RoutineLoop
from ._model import (
    Call,
    Cancel,
    CancelCall,
    Command,
    Complete,
    Emit,
    FireTimer,
    Input,
    Record,
    Resolve,
    Start,
    StartTimer,
    Step,
    StepRecord,
    same_command,
)

__all__ = ["RoutineInstance", "current_instance"]

Body = Callable[[bytes], Coroutine[Any, Any, bytes]]
"""Runs the routine: decodes its arguments, calls user code, encodes the result."""

FailureEncoder = Callable[[BaseException], bytes]

_current: contextvars.ContextVar[RoutineInstance | None] = contextvars.ContextVar(
    "dasync_routine", default=None
)


def current_instance() -> RoutineInstance | None:
    """The routine whose code is running in this context, if any."""
    return _current.get()


class _Diverged(BaseException):
    """Unwinds user code after replay diverged; the error itself is kept on the instance."""


class RoutineInstance:
    """A routine's coroutine tree plus the bookkeeping that makes it durable."""

    def __init__(
        self,
        routine_id: str,
        service: str,
        method: str,
        body: Body,
        encode_failure: FailureEncoder,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.routine_id = routine_id
        self.service = service
        self.method = method
        self.context = context or {}
        self._body = body
        self._encode_failure = encode_failure
        self._loop = RoutineLoop(self, routine_id)  # type: ignore[abstract]
        self._main: asyncio.Task[bytes] | None = None
        self._seq = 0
        self._calls: dict[int, asyncio.Future[tuple[bool, bytes]]] = {}
        self._callee_service: dict[int, str] = {}
        self._out: list[Command] = []
        self._expected: deque[Command] | None = None
        self._diverged: NonDeterminismError | None = None
        self._evicted = False
        self.steps = 0
        self.consumed: dict[str, int] = {}
        self.completion: Complete | None = None
        self.journal_bytes = 0

    # --- public to the runtime ------------------------------------------------------------

    @property
    def failure(self) -> BaseException | None:
        """The exception the routine's main task ended with, if it failed."""
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
        step = Step(self.steps, inp, tuple(self._out))
        self._advance(step.input, step.commands)
        return step

    async def replay(self, journal: Iterable[StepRecord]) -> None:
        """Re-run the routine through committed steps; raises NonDeterminismError."""
        for record in journal:
            self._out = []
            self._expected = deque(record.commands)
            try:
                await self._apply(record.input)
                if self._diverged is None and self._expected:
                    missing = self._expected[0]
                    self._diverged = NonDeterminismError(
                        self.routine_id, self.steps, missing.describe(), "nothing"
                    )
            finally:
                self._expected = None
            if self._diverged is not None:
                raise self._diverged
            self._advance(record.input, record.commands)

    def evict(self) -> None:
        """Unwind the routine's tasks without letting them issue commands."""
        self._evicted = True
        for task in list(self._loop.tasks):
            task.cancel()
        for _ in range(100):
            if not self._loop._ready:
                break
            self._loop.run_ready()
        self._loop.close()

    # --- called by routine code (through dasync's API) ------------------------------------

    def call(self, service: str, method: str, args: bytes) -> asyncio.Future[tuple[bool, bytes]]:
        """Issue a durable call; the future resolves to ``(ok, payload)``."""
        seq = self._next_seq()
        self._issue(Call(seq, service, method, args))
        fut: asyncio.Future[tuple[bool, bytes]] = self._loop.create_future()
        self._calls[seq] = fut
        self._callee_service[seq] = service
        fut.add_done_callback(lambda f, s=seq: self._call_done(s, f))  # type: ignore[misc]
        return fut

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

    def host_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop of the process, on which real I/O can run."""
        host = self._loop.host
        if host is None:
            raise RuntimeError("the routine's loop has not been driven yet")
        return host

    def emit(self, event: str, payload: bytes) -> None:
        """Fire an event; it is published when the current step commits."""
        self._issue(Emit(self._next_seq(), event, payload))

    def time(self) -> float:
        """The routine's clock: the time its current input arrived."""
        return self._loop.time()

    def start_timer(self, fire_at: float) -> int:
        seq = self._next_seq()
        self._issue(StartTimer(seq, fire_at))
        return seq

    # --- internals ------------------------------------------------------------------------

    def _next_seq(self) -> int:
        if self._evicted or self._diverged is not None:
            raise _Diverged()
        self._seq += 1
        return self._seq

    def _issue(self, command: Command) -> None:
        if self._expected is not None:
            expected = self._expected.popleft() if self._expected else None
            if expected is None or not same_command(expected, command):
                self._diverged = NonDeterminismError(
                    self.routine_id,
                    self.steps,
                    expected.describe() if expected else "nothing more",
                    command.describe(),
                )
                raise _Diverged()
            command = expected  # keep the journal's payload (e.g. the recorded fire time)
        self._out.append(command)

    def _call_done(self, seq: int, fut: asyncio.Future[Any]) -> None:
        service = self._callee_service.pop(seq, "")
        if fut.cancelled() and not self._evicted and self._diverged is None:
            if self._calls.pop(seq, None) is not None and not self.done:
                try:
                    self._issue(CancelCall(self._next_seq(), seq, service))
                except _Diverged:
                    pass

    async def _apply(self, inp: Input) -> None:
        self._loop.set_time(inp.at)
        if isinstance(inp, Start):
            ctx = contextvars.copy_context()
            ctx.run(_current.set, self)
            self._main = self._loop.create_task(self._run_body(inp.args), context=ctx)
        elif isinstance(inp, Resolve):
            fut = self._calls.pop(inp.seq, None)
            if fut is not None and not fut.done():
                fut.set_result((inp.ok, inp.payload))
        elif isinstance(inp, FireTimer):
            self._loop.fire_timer(inp.seq)
        elif isinstance(inp, Cancel):
            if self._main is not None and not self._main.done():
                self._main.cancel()
        await self._loop.run_until_idle()
        self._check_completion()

    async def _run_body(self, args: bytes) -> bytes:
        return await self._body(args)

    def _check_completion(self) -> None:
        main = self._main
        if main is None or not main.done() or self._diverged is not None:
            return
        if any(isinstance(c, Complete) for c in self._out):
            return
        if main.cancelled():
            ok, payload = False, self._encode_failure(asyncio.CancelledError())
        else:
            exc = main.exception()
            if exc is None:
                ok, payload = True, main.result()
            elif isinstance(exc, _Diverged):
                return
            else:
                ok, payload = False, self._encode_failure(exc)
        seq = self._next_seq()
        self._issue(Complete(seq, ok, payload))

    def _advance(self, inp: Input, commands: tuple[Command, ...]) -> None:
        self.consumed[inp.key] = self.steps
        self.steps += 1
        for command in commands:
            if isinstance(command, Complete):
                self.completion = command
