"""Hosting services: the worker loop, the client and the runtime that ties them."""

from ._client import Client as Client
from ._client import RoutineHandle as RoutineHandle
from ._runtime import Runtime as Runtime
from ._worker import Worker as Worker

__all__ = ["Client", "RoutineHandle", "Runtime", "Worker"]
