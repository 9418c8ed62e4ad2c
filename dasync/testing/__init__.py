"""Test helpers for code built on dasync: in-process runtimes, a virtual clock, fakes."""

from ._clock import VirtualClock as VirtualClock
from ._environment import instantiate as instantiate
from ._environment import runtime as runtime

__all__ = ["VirtualClock", "instantiate", "runtime"]
