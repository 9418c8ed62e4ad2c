"""dasync: plain async Python services that run as durable, distributed workflows.

Layout: ``_contract`` (Protocol -> ServiceSpec), ``_proxy`` (wrapt proxies),
``_injection`` (dependency-injector), ``_codec`` (orjson + pydantic),
``_engine`` (deterministic loop, journal, replay; no transport imports),
``_runtime`` (worker, client, runtime), ``transports`` (memory, NATS),
``codegen`` (specs), ``cli`` and ``testing``.
"""

import importlib as _importlib
import typing as _typing

from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._collector import tune_collector as tune_collector
from ._contract import MethodSpec as MethodSpec
from ._contract import ServiceSpec as ServiceSpec
from ._contract import contract as contract
from ._contract import raises as raises
from ._contract import spec_of as spec_of
from ._deterministic import call_id as call_id
from ._deterministic import now as now
from ._deterministic import random as random
from ._deterministic import uuid4 as uuid4
from ._engine import propagate as propagate
from ._errors import CallDepthExceeded as CallDepthExceeded
from ._errors import CallFailed as CallFailed
from ._errors import ContractError as ContractError
from ._errors import DasyncError as DasyncError
from ._errors import InvalidArguments as InvalidArguments
from ._errors import JournalConflict as JournalConflict
from ._errors import MalformedMessage as MalformedMessage
from ._errors import NonDeterminismError as NonDeterminismError
from ._errors import NotAwaited as NotAwaited
from ._errors import NotInRoutine as NotInRoutine
from ._errors import RemoteError as RemoteError
from ._errors import RoutineFinished as RoutineFinished
from ._errors import TransportError as TransportError
from ._errors import TransportRefused as TransportRefused
from ._errors import UnknownMethod as UnknownMethod
from ._errors import UnknownService as UnknownService
from ._errors import UnsafeInRoutine as UnsafeInRoutine
from ._event import Event as Event
from ._event import ExternalEvent as ExternalEvent
from ._io import io as io
from ._patching import deprecate_patch as deprecate_patch
from ._patching import patched as patched
from ._progress import progress as progress
from ._retry import RetryPolicy as RetryPolicy
from ._retry import retry as retry
from ._service import service as service
from ._signal import signal as signal

if _typing.TYPE_CHECKING:
    from ._gateway import api_key_auth as api_key_auth
    from ._gateway import bearer_auth as bearer_auth
    from ._gateway import gateway_app as gateway_app
    from ._runtime import Client as Client
    from ._runtime import RoutineHandle as RoutineHandle
    from ._runtime import Runtime as Runtime
    from ._runtime._connect import connect as connect

__version__ = "0.1.0"

# The runtime pulls in wrapt, dependency_injector and the transports; it is imported on
# first use so that ``import dasync._engine`` (which runs this file) stays free of them.
_LAZY = {
    "Client": "._runtime",
    "RoutineHandle": "._runtime",
    "Runtime": "._runtime",
    "connect": "._runtime._connect",
    # the HTTP gateway: Starlette and uvicorn, the 'http' extra
    "api_key_auth": "._gateway",
    "bearer_auth": "._gateway",
    "gateway_app": "._gateway",
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CallDepthExceeded",
    "CallFailed",
    "Client",
    "Clock",
    "ContractError",
    "DasyncError",
    "Event",
    "ExternalEvent",
    "InvalidArguments",
    "JournalConflict",
    "MalformedMessage",
    "MethodSpec",
    "NonDeterminismError",
    "NotAwaited",
    "NotInRoutine",
    "RemoteError",
    "RetryPolicy",
    "RoutineFinished",
    "RoutineHandle",
    "Runtime",
    "ServiceSpec",
    "SystemClock",
    "TransportError",
    "TransportRefused",
    "UnknownMethod",
    "UnknownService",
    "UnsafeInRoutine",
    "api_key_auth",
    "bearer_auth",
    "call_id",
    "connect",
    "contract",
    "deprecate_patch",
    "gateway_app",
    "io",
    "now",
    "patched",
    "progress",
    "propagate",
    "raises",
    "random",
    "retry",
    "service",
    "signal",
    "spec_of",
    "tune_collector",
    "uuid4",
]
