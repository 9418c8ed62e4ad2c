"""Test helpers for code built on dasync: in-process runtimes, a virtual clock, fakes,
and the conformance checks for transport and store implementations."""

from ._clock import VirtualClock as VirtualClock
from ._conformance import Backend as Backend
from ._conformance import BackendFactory as BackendFactory
from ._conformance import check_transport as check_transport
from ._environment import NonDeterminismFound as NonDeterminismFound
from ._environment import instantiate as instantiate
from ._environment import runtime as runtime

__all__ = [
    "Backend",
    "BackendFactory",
    "NonDeterminismFound",
    "VirtualClock",
    "check_transport",
    "instantiate",
    "runtime",
]
