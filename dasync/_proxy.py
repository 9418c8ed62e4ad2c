"""Contract proxies: objects that look like the contract and turn calls into messages.

The only module that imports wrapt. A proxy wraps a generated stub class that
subclasses the contract, so ``isinstance(proxy, Contract)`` holds and IDEs see
the contract's methods. Inside a routine a call is durable (journaled, sent,
awaited across crashes); outside one it goes to the proxy's fallback, which for
a client starts a routine and waits for its result.
"""

from __future__ import annotations

import collections.abc
import functools
import sys
import typing
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar, cast

import wrapt

from ._codec import bind_args, decode_result, encode_args
from ._contract import MethodSpec, ServiceSpec, spec_of
from ._engine import current_instance, evicting_instance
from ._errors import NotInRoutine
from ._event import BoundEvent, EventAttribute, EventBinding, EventSpec
from ._failures import decode_failure

__all__ = ["ContractProxy", "PendingCall", "durable_call", "make_proxy", "self_call"]

T = TypeVar("T")

Fallback = Callable[[MethodSpec, bytes], Awaitable[Any]]
"""What a proxy does when called outside a routine."""


async def durable_call(method: MethodSpec, payload: bytes) -> Any:
    """Issue a durable call from the running routine and wait for its outcome."""
    inst = current_instance()
    if inst is None:
        raise NotInRoutine(
            f"{method.qualname}() was called outside a routine; durable calls are made from "
            f"inside service methods, or from a client (dasync.connect(...).proxy(...))"
        )
    ok, data = await inst.call(method.service, method.name, payload)
    if ok:
        return decode_result(method, data)
    raise decode_failure(data)


def _no_fallback(method: MethodSpec, payload: bytes) -> Awaitable[Any]:
    return durable_call(method, payload)


class ContractProxy(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """A stand-in for a remote service; behaves like its contract."""

    def __repr__(self) -> str:
        spec: ServiceSpec = self.__wrapped__._dasync_spec
        return f"<dasync proxy for {spec.name}>"


def make_proxy(
    contract: type[T], fallback: Fallback | None = None, events: EventBinding | None = None
) -> T:
    """A proxy for ``contract`` whose calls are durable inside routines.

    ``events`` receives ``+=``/``-=`` subscriptions and direct publishes of the
    contract's events (a runtime while it builds a service, or a client).
    """
    spec = spec_of(contract)
    stub_cls: Any = _stub_class(cast(Any, contract), spec)
    stub = stub_cls.__new__(stub_cls)
    stub._dasync_spec = spec
    stub._dasync_fallback = fallback or _no_fallback
    stub._dasync_events = events
    return cast(T, ContractProxy(stub))


@functools.cache
def _stub_class(contract: Any, spec: ServiceSpec) -> type:
    if getattr(contract, "_is_protocol", False) and not getattr(
        contract, "_is_runtime_protocol", False
    ):
        # isinstance() refuses plain Protocols; a contract's proxy must pass it
        typing.runtime_checkable(contract)
    namespace: dict[str, Any] = {
        "__slots__": ("_dasync_spec", "_dasync_fallback", "_dasync_events")
    }
    for name, method in spec.methods.items():
        namespace[name] = _stub_method(method)
    for name, event in spec.events.items():
        namespace[name] = EventAttribute(event)
    namespace["__init__"] = object.__init__
    return type(f"{contract.__name__}Proxy", (contract,), namespace)


def _stub_method(method: MethodSpec) -> Callable[..., Awaitable[Any]]:
    def call(self: Any, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        payload = encode_args(method, bind_args(method, args, kwargs))
        if current_instance() is not None:
            return PendingCall(functools.partial(durable_call, method, payload), method)
        return PendingCall(functools.partial(self._dasync_fallback, method, payload), method)

    call.__name__ = method.name
    call.__qualname__ = f"{method.service}Proxy.{method.name}"
    call.__doc__ = method.doc
    call.__signature__ = method.signature  # type: ignore[attr-defined]
    return call


class PendingCall(collections.abc.Coroutine[Any, Any, Any]):
    """What calling a proxy method returns: a coroutine that makes the call when awaited.

    Like a native coroutine it does nothing until awaited (or handed to
    ``create_task``, ``gather``...). Unlike one, dropping it unawaited inside a
    routine is not a silent no-op with a ``RuntimeWarning``: the routine fails
    with ``NotAwaited`` naming the call and the line that made it.
    """

    __slots__ = ("_make", "_coro", "_routine", "_method", "_line")

    def __init__(self, make: Callable[[], Coroutine[Any, Any, Any]], method: MethodSpec) -> None:
        self._make = make
        self._coro: Coroutine[Any, Any, Any] | None = None
        self._method = method
        self._routine = current_instance()
        self._line: tuple[str, int] | None = None
        if self._routine is not None:
            frame = sys._getframe(2)
            self._line = (frame.f_code.co_filename, frame.f_lineno)

    def _started(self) -> Coroutine[Any, Any, Any]:
        coro = self._coro
        if coro is None:
            coro = self._coro = self._make()
        return coro

    def send(self, value: Any) -> Any:
        return self._started().send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if val is None and tb is None:
            return self._started().throw(typ)
        return self._started().throw(typ, val, tb)

    def close(self) -> None:
        self._started().close()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._started().__await__()

    def __del__(self) -> None:
        if self._coro is None and self._routine is not None and self._line is not None:
            filename, lineno = self._line
            self._routine.note_unawaited(
                f"{self._method.qualname}() called at {filename}:{lineno} was never awaited"
            )

    def __repr__(self) -> str:
        return f"<dasync call {self._method.qualname}()>"


class _SelfMethod:
    """Replaces a public routine method on a hosted service instance.

    ``self.method(...)`` inside a routine becomes a durable sub-routine call
    (it may run on another worker); outside a routine it runs inline.
    """

    __slots__ = ("_method", "_bound")

    def __init__(self, method: MethodSpec, bound: Callable[..., Awaitable[Any]]) -> None:
        self._method = method
        self._bound = bound

    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        if current_instance() is None:
            if evicting_instance() is not None:
                raise NotInRoutine(
                    f"{self._method.qualname}() was called from a finally block run because "
                    f"its routine is being dropped from memory; no durable call can be made then"
                )
            return self._bound(*args, **kwargs)
        payload = encode_args(self._method, bind_args(self._method, args, kwargs))
        return PendingCall(functools.partial(durable_call, self._method, payload), self._method)


def self_call(method: MethodSpec, bound: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    return _SelfMethod(method, bound)


def hosted_event(event: EventSpec, binding: EventBinding | None) -> BoundEvent[Any]:
    """The event attribute of a hosted service instance (``self.event(payload)`` fires it)."""
    return BoundEvent(event, binding)
