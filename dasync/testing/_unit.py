"""``instantiate()``: a service for plain unit tests, its methods run as routines in time
that only moves when they wait.

Each call of a public method from a test runs the method as a routine on dasync's own
replay engine (``RoutineInstance``), driven here in process, with no transport and no
journal: so ``dasync.call_id()``, ``uuid4()``/``now()``/``random()``, plain ``time`` and
``random`` and events behave as they do when dasync hosts the service, and
``asyncio.sleep``, ``wait_for`` and ``timeout`` inside it wait on a ``VirtualClock`` that
jumps to the next deadline as soon as every routine of the instance waits on a timer.

Everything else is plain asyncio, which is the oracle: arguments, results and exceptions
are the very objects (never encoded), fakes are the objects the test passed and are called
directly, ``self.other()`` inside a method runs inline, and cancelling the test's await
cancels the routine. The engine rather than the host loop runs the method because only the
engine knows the routine (``call_id``) and can make its timers virtual without patching
the test's own event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from .._codec import decode_event, encode_event, encode_value
from .._contract import ServiceSpec
from .._engine import (
    Call,
    Cancel,
    FireTimer,
    Input,
    Resolve,
    RoutineInstance,
    Signal,
    Start,
    StartTimer,
    current_instance,
)
from .._errors import ContractError
from .._event import BoundEvent, EventSpec, _Fired
from .._failures import encode_failure
from .._injection import Injector
from .._proxy import make_proxy
from .._service import validate_service
from ._clock import VirtualClock

__all__ = ["clock_of", "fired", "instantiate"]

S = TypeVar("S")
T = TypeVar("T")


class _IgnoredEvents:
    """Events of the proxies ``instantiate`` injects: ``+=``/``-=`` are accepted and ignored
    (call the handler yourself to test it); firing one is refused, as it goes nowhere."""

    def subscribe(self, event: EventSpec, handler: Callable[..., Awaitable[Any]]) -> None:
        pass

    def unsubscribe(self, event: EventSpec, handler: Callable[..., Awaitable[Any]]) -> None:
        pass

    def publish(self, event: EventSpec, payload: bytes) -> asyncio.Future[None]:
        raise ContractError(
            f"{event.topic} was fired on a proxy of dasync.testing.instantiate(), which is not "
            f"connected to a runtime; pass a fake for it, or use dasync.testing.runtime()"
        )


class _Harness:
    """What an instantiated service carries: its clock, the events it fired, its routines."""

    def __init__(self, spec: ServiceSpec, obj: object) -> None:
        self.spec = spec
        self.obj = obj
        self.fired: list[tuple[str, Any]] = []
        self.signals: deque[tuple[str, bytes]] = deque()
        """Sent by the test (``send_signal``), not taken yet."""
        self._signalled: asyncio.Event | None = None
        self.clock = VirtualClock(time.time(), poll=0)
        self._calls = itertools.count(1)
        self._active = 0
        # exact: some routine is between two inputs (running its code, or real I/O it awaits)
        self.clock.is_busy = lambda: self._active > 0

    async def run(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run ``name(*args, **kwargs)`` as one routine, to its end."""
        fn = getattr(type(self.obj), name)
        outcome: list[Any] = []

        async def body(_: bytes) -> bytes:
            outcome.append(await fn(self.obj, *args, **kwargs))
            return b""

        n = next(self._calls)
        inst = RoutineInstance(
            f"test/{self.spec.name}.{name}.{n}", self.spec.name, name, body, lambda _: b""
        )
        timers: list[tuple[float, int]] = []
        inp: Input = Start(b"", self.clock.now(), {"method": name}, seed=secrets.randbits(63) | 1)
        cancels = 0
        while True:
            self._active += 1
            try:
                step, cancelled = await _uninterrupted(inst.activate(inp))
            finally:
                self._active -= 1
            cancels += cancelled
            calls = [c for c in step.commands if isinstance(c, Call)]
            for command in step.commands:
                if isinstance(command, StartTimer):
                    heapq.heappush(timers, (command.fire_at, command.seq))
            if inst.done:
                break
            if cancelled:
                inp = Cancel(self.clock.now(), f"test-{cancels}")
            elif calls:
                inp = Resolve(calls[0].seq, False, _no_fake(calls[0]), self.clock.now())
            elif self.signals:  # sent by the test: taken now, before any later timer
                signal, payload = self.signals.popleft()
                inp = Signal(signal, f"test-{next(self._calls)}", payload, self.clock.now())
            else:
                while timers and not inst.wants(FireTimer(timers[0][1], 0.0)):
                    heapq.heappop(timers)
                if not timers and not inst.waiting_for_signal:
                    inst.evict()
                    raise RuntimeError(
                        f"{self.spec.name}.{name} waits for something that cannot happen here: "
                        f"no timer, call, signal or real I/O is pending (an asyncio.Event "
                        f"nobody sets?)"
                    )
                signalled = self._signalled = self._signalled or asyncio.Event()
                signalled.clear()
                waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(signalled.wait())]
                if timers:
                    waits.append(asyncio.ensure_future(self.clock.sleep_until(timers[0][0])))
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                except asyncio.CancelledError:
                    cancels += 1
                    inp = Cancel(self.clock.now(), f"test-{cancels}")
                    continue
                finally:
                    for waiting in waits:
                        waiting.cancel()
                if self.signals or not timers or timers[0][0] > self.clock.now():
                    continue  # a signal came first (or the wait ended for nothing): look again
                _, seq = heapq.heappop(timers)
                inp = FireTimer(seq, self.clock.now())
        failure = inst.failure
        if failure is not None:
            raise failure
        return outcome[0]

    def send(self, name: str, value: Any) -> None:
        self.signals.append((name, encode_value(value, what=f"signal {name!r}")))
        if self._signalled is not None:
            self._signalled.set()

    def record(self, event: EventSpec, payload: bytes) -> None:
        self.fired.append((event.name, decode_event(event, payload)))


async def _uninterrupted(activation: Awaitable[T]) -> tuple[T, bool]:
    """Await one activation to its end even if the test cancels us meanwhile (a routine takes
    a cancel between inputs only); the flag says whether it did."""
    task = asyncio.ensure_future(activation)
    cancelled = False
    while True:
        try:
            return await asyncio.shield(task), cancelled
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True
            if task.done():
                return task.result(), cancelled


def _no_fake(call: Call) -> bytes:
    return encode_failure(
        ContractError(
            f"{call.service}.{call.method}() was called on a proxy that "
            f"dasync.testing.instantiate() injected: pass a fake for that parameter"
        )
    )


class _UnitMethod:
    """A public method of an instantiated service: a routine when a test calls it, plain
    Python (inline) when the service's own code does (``self.other()``)."""

    __slots__ = ("_harness", "_name")

    def __init__(self, harness: _Harness, name: str) -> None:
        self._harness = harness
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        if current_instance() is not None:
            return getattr(type(self._harness.obj), self._name)(  # type: ignore[no-any-return]
                self._harness.obj, *args, **kwargs
            )
        return self._harness.run(self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<dasync.testing method {self._harness.spec.name}.{self._name}>"


class _RecordedEvent(BoundEvent[Any]):
    """An event attribute of an instantiated service: firing checks the payload, as dasync
    does, and records it for ``fired()``."""

    __slots__ = ("_harness",)

    def __init__(self, spec: EventSpec, harness: _Harness) -> None:
        super().__init__(spec, None)
        self._harness = harness

    def __call__(self, payload: Any) -> _Fired:
        self._harness.record(self._spec, encode_event(self._spec, payload))
        return _Fired(None)


_HARNESS = "_dasync_testing_harness"


def instantiate(service_cls: type[S], **fakes: Any) -> S:
    """An instance of ``service_cls`` for plain unit tests, with fakes injected by name.

    Awaiting one of its public methods runs it as a routine under a virtual clock (see
    the module's docstring); ``fired(svc)`` lists the events it fired, ``clock_of(svc)``
    is its clock. Contract parameters not given as fakes get proxies; calling one from a
    method raises ``ContractError`` there, so a missing fake shows up as a clear error.
    """
    spec = validate_service(service_cls)
    injector = Injector(lambda c: make_proxy(c, events=_IgnoredEvents()), dict(fakes))
    obj: Any = injector.construct(service_cls)
    harness = _Harness(spec, obj)
    for name in spec.methods:
        obj.__dict__[name] = _UnitMethod(harness, name)
    for name, event in spec.events.items():
        obj.__dict__[name] = _RecordedEvent(event, harness)
    obj.__dict__[_HARNESS] = harness
    result: S = obj
    return result


def _harness_of(svc: object) -> _Harness:
    harness = getattr(svc, "__dict__", {}).get(_HARNESS)
    if not isinstance(harness, _Harness):
        raise TypeError(f"{svc!r} was not made by dasync.testing.instantiate()")
    return harness


@overload
def fired(svc: object) -> list[tuple[str, Any]]: ...
@overload
def fired(svc: object, event: str) -> list[Any]: ...
def fired(svc: object, event: str | None = None) -> list[tuple[str, Any]] | list[Any]:
    """The events ``svc`` (made by ``instantiate``) fired so far, oldest first.

    ``fired(svc)`` is ``[(event name, payload), ...]``; ``fired(svc, "name")`` the
    payloads of one event. Payloads are decoded from what would be published, so they
    are what a subscriber receives; each answer is a new list.
    """
    harness = _harness_of(svc)
    if event is None:
        return list(harness.fired)
    if event not in harness.spec.events:
        raise KeyError(f"{harness.spec.name} declares no event {event!r}")
    return [payload for name, payload in harness.fired if name == event]


def clock_of(svc: object) -> VirtualClock:
    """The virtual clock the routines of ``svc`` (made by ``instantiate``) run on.

    It starts at the real time of ``instantiate``; ``clock_of(svc).now()`` tells how far
    the methods have slept, and ``advance()`` moves it by hand.
    """
    return _harness_of(svc).clock


def send_signal(svc: object, name: str, value: Any) -> None:
    """Send signal ``name`` to the routine of ``svc`` (from ``instantiate``) that waits for
    it, or will: run the method as a task, send, then await the task. A signal is taken
    before any timer that is due later, so send it before the deadline passes (the clock
    jumps to the next timer as soon as nothing else can happen: hold it with
    ``clock_of(svc).held()`` while a test acts in between)."""
    _harness_of(svc).send(name, value)
