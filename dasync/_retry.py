"""Retry policies: how often, and after how long, a failed attempt is tried again.

Two kinds of failure are retried:

* infrastructure errors (store or transport failures, a worker that died):
  always, with the default policy's capped exponential backoff and jitter;
  user code never sees them;
* exceptions a method's policy marks as transient (``on=(TimeoutError, ...)``):
  the routine is re-run from its journal after a backoff, up to ``attempts``
  times; then the last exception is raised at the caller.

Application exceptions not marked transient are never retried: they are the
routine's result. A retry never holds a worker: the message is handed back to
the transport with a delay and picked up again by any worker.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

__all__ = ["DEFAULT_POLICY", "RetryPolicy", "policy_of", "retry"]

F = TypeVar("F", bound=Callable[..., Any])

_ATTR = "__dasync_retry__"


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all, waiting ``backoff * multiplier**n`` (capped, jittered) between."""

    attempts: int = 5
    backoff: float = 0.5
    max_delay: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.2
    """Fraction of the delay added or removed at random, so retries of many routines spread."""
    on: tuple[type[BaseException], ...] = field(default=())
    """Exception types (and subclasses) that are transient for this method."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.backoff < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValueError("backoff and max_delay must be >= 0 and multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.max_delay, self.backoff * self.multiplier ** max(attempt - 1, 0))
        spread = base * self.jitter * (2 * rand() - 1)
        return max(0.0, min(self.max_delay, base + spread))

    def retries(self, exc: BaseException, attempt: int) -> bool:
        """Whether failed attempt ``attempt`` raising ``exc`` is tried again."""
        return attempt < self.attempts and isinstance(exc, self.on)


DEFAULT_POLICY = RetryPolicy(attempts=10**9, backoff=0.05, max_delay=30.0)
"""Infrastructure failures: retried for as long as it takes, backing off to 30 s."""


@overload
def retry(fn: F, /) -> F: ...
@overload
def retry(
    *,
    attempts: int = 5,
    backoff: float = 0.5,
    max_delay: float = 60.0,
    multiplier: float = 2.0,
    jitter: float = 0.2,
    on: tuple[type[BaseException], ...] | type[BaseException] = (),
) -> Callable[[F], F]: ...


def retry(
    fn: Any = None,
    /,
    *,
    attempts: int = 5,
    backoff: float = 0.5,
    max_delay: float = 60.0,
    multiplier: float = 2.0,
    jitter: float = 0.2,
    on: tuple[type[BaseException], ...] | type[BaseException] = (),
) -> Any:
    """Retry a routine when it raises one of the transient exception types ``on``.

    Put it on the implementation's method or on the contract's::

        @dasync.retry(attempts=5, backoff=1.0, max_delay=30, on=(TimeoutError, RateLimited))
        async def charge(self, order: Order) -> Receipt: ...

    Each retry re-runs the routine from its journal after the backoff (calls
    that already completed are not repeated). After ``attempts`` tries the
    last exception is raised at the caller.
    """
    kinds = on if isinstance(on, tuple) else (on,)
    for kind in kinds:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise TypeError(f"retry(on=...) takes exception classes, not {kind!r}")
    policy = RetryPolicy(attempts, backoff, max_delay, multiplier, jitter, kinds)

    def decorate(f: F) -> F:
        setattr(f, _ATTR, policy)
        return f

    return decorate(fn) if fn is not None else decorate


def policy_of(*functions: Any) -> RetryPolicy | None:
    """The policy set with ``@retry`` on the first of ``functions`` that has one."""
    for fn in functions:
        policy = getattr(fn, _ATTR, None)
        if isinstance(policy, RetryPolicy):
            return policy
    return None
