"""What one differential run is made of (``Scenario``) and what it observed (``Outcome``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._effects import Effects

__all__ = ["Control", "Entry", "Outcome", "Scenario"]


@dataclass(frozen=True)
class Entry:
    """A routine the client starts: ``contract.method(*args)`` under ``routine_id``."""

    contract: type
    method: str
    args: tuple[Any, ...] = ()
    routine_id: str = "entry"
    via: str = "start"
    """``start``: ``client.start(contract.method, ..., routine_id=...)``; ``proxy``:
    ``client.proxy(contract).method(...)`` (no routine id of ours: no cancel, no handle)."""

    @property
    def function(self) -> Callable[..., Any]:
        fn: Callable[..., Any] = getattr(self.contract, self.method)
        return fn


class Control(Protocol):
    """What a scenario's driver can do while its routines run (the client's side)."""

    effects: Effects

    async def until(self, label: str) -> None:
        """Wait until the effect ``label`` has happened."""

    async def cancel(self, entry: int) -> None:
        """Cancel the routine of ``entries[entry]`` (``handle.cancel()`` / ``task.cancel()``)."""


Driver = Callable[[Control], Awaitable[None]]


@dataclass
class Scenario:
    """Services, the routines to start, and optionally a driver acting on them."""

    name: str
    services: list[type]
    entries: list[Entry]
    driver: Driver | None = None
    container: dict[str, Any] = field(default_factory=dict)
    """Extra named dependencies besides ``log`` (the ``Effects``)."""
    crash: bool = True
    """Whether crash runs make sense (False: the scenario relies on a driver's timing)."""


@dataclass
class Outcome:
    """What one mode observed."""

    mode: str
    results: list[Any]
    """Per entry: ``["ok", canon(value)]``, ``["raised", shape(exc)]``, ``["incomplete", why]``."""
    effects: list[str]
    """Effect labels in first-occurrence order."""
    commits: int = 0
    """Journal entries committed (dasync), which is what crash points count."""
    strays: list[str] = field(default_factory=list)
    """Effects recorded outside any routine (they ran inline: not durable, not keyed)."""
    errors: list[str] = field(default_factory=list)
    """What dasync raised besides the entries' outcomes (e.g. closing the test runtime)."""
    diagnostics: list[str] = field(default_factory=list)
    """Dead letters, rejected messages, logged routine failures, unraisable errors."""
