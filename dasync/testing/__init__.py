"""Test helpers for code built on dasync: in-process runtimes, a virtual clock, service
instances for unit tests, and the conformance checks for transport and store
implementations. ``docs/testing.md`` is the guide."""

from ._clock import VirtualClock as VirtualClock
from ._conformance import Backend as Backend
from ._conformance import BackendFactory as BackendFactory
from ._conformance import check_transport as check_transport
from ._environment import NonDeterminismFound as NonDeterminismFound
from ._environment import runtime as runtime
from ._replay import ReplayResult as ReplayResult
from ._replay import load_journals as load_journals
from ._replay import replay as replay
from ._unit import clock_of as clock_of
from ._unit import fired as fired
from ._unit import instantiate as instantiate
from ._unit import send_signal as send_signal

__all__ = [
    "Backend",
    "BackendFactory",
    "NonDeterminismFound",
    "ReplayResult",
    "VirtualClock",
    "check_transport",
    "clock_of",
    "fired",
    "instantiate",
    "load_journals",
    "replay",
    "runtime",
    "send_signal",
]
