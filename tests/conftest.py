"""Shared fixtures: every semantic test runs with the routine cache and with forced replay.

``--transport=memory|nats`` picks the backend the suite runs on (as temporalio's
``-E``); only ``memory`` is wired so far.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

import dasync
from dasync.testing import runtime

TRANSPORTS = ("memory", "nats")


def pytest_addoption(parser: pytest.Parser) -> None:
    try:
        parser.addoption(
            "--transport",
            choices=TRANSPORTS,
            default="memory",
            help="backend the suite runs on (default: memory)",
        )
    except ValueError:
        pass  # the dasync pytest plugin declared it already


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> str:
    name: str = request.config.getoption("--transport")
    if name == "nats":
        pytest.skip("NATS transport not available yet")
    return name


@pytest.fixture(params=["cached", "forced"])
def replay_mode(request: pytest.FixtureRequest) -> str:
    """``cached``: live routines stay in memory; ``forced``: replay on every activation."""
    mode: str = request.param
    return mode


MakeRuntime = Callable[..., AbstractAsyncContextManager[dasync.Runtime]]


@pytest.fixture
def make_runtime(replay_mode: str, transport: str) -> MakeRuntime:
    """``async with make_runtime([ServiceA, ServiceB]) as rt:`` in the current replay mode."""

    def make(services: Iterable[type], **kw: Any) -> AbstractAsyncContextManager[dasync.Runtime]:
        kw.setdefault("force_replay", replay_mode == "forced")
        return runtime(services, **kw)

    return make
