"""What the worker does with each delivery: one pure decision, read from a table.

Processing a delivery ends in one of a few ``Outcome``\\ s: it was done, or it
raised. ``classify`` names the outcome of an exception by walking
``CLASSIFICATION`` (most specific class first, the first match wins), and
``decide`` turns an outcome and the delivery's attempt number into a
``Disposition``: acknowledge, hand back with a delay, or terminate as a dead
letter, and whether the routine's caller is told and its cached instance
dropped. ``decide`` only reads ``RULES``, the table that docs/reliability.md
shows ("What the worker does with each delivery") and the tests walk, so the
behaviour, the documentation and the tests cannot drift apart.

Pure on purpose: no I/O, no logging, no event loop. The worker does the
settling, the replying and the logging; this module only says which.

``asyncio.CancelledError`` is not an outcome: it means the worker itself is
stopping, so the worker re-raises it before classifying (the message is then
redelivered); ``classify`` refuses it with ``ValueError``.
"""

from __future__ import annotations

import enum
from asyncio import CancelledError
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .._engine import EvictedDuringStep
from .._errors import (
    InvalidArguments,
    JournalConflict,
    MalformedMessage,
    NonDeterminismError,
    TransportError,
)
from .._retry import DEFAULT_POLICY

__all__ = [
    "CLASSIFICATION",
    "POISON_REASON",
    "RULES",
    "Action",
    "ClaimedElsewhere",
    "Crashed",
    "Disposition",
    "Limits",
    "Outcome",
    "Postponed",
    "Refused",
    "RoutineMissing",
    "Rule",
    "TooLarge",
    "Wait",
    "backoff",
    "classify",
    "decide",
    "describe",
    "dispose",
]


# --- signals the worker raises ------------------------------------------------------------


class Postponed(Exception):
    """The routine waits out a retry backoff; other inputs wait with it."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.delay = delay

    def __str__(self) -> str:
        return f"the routine waits out a retry backoff of {self.delay:.3f} s"


class ClaimedElsewhere(Exception):
    """Another worker holds the lease on this routine's first step.

    Once it commits, a redelivery finds the journal and only re-sends; if it
    dies, its lease expires and a redelivery takes over.
    """


class RoutineMissing(MalformedMessage):
    """A reply, timer or cancel for a routine that is not (yet) in the store.

    The start may still be in flight on another worker (a cancel can overtake
    its routine's start), so it is handed back a few times before it is refused.
    """


class Refused(MalformedMessage):
    """An authenticated sender sent something it is not allowed to send.

    A forged reply, a cancel of another's routine, a call under an id the
    sender does not own. Its message names the sender and what it claimed.
    Terminated without telling anyone: the "caller" it names is not who sent it.
    """


class TooLarge(InvalidArguments):
    """A payload over the worker's limit, refused before anything is stored.

    An ``InvalidArguments``, because that is what the caller of a start gets
    (the client raises the same error before sending an oversized call).
    """

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(what, size, limit)
        self.what = what
        self.size = size
        self.limit = limit

    def __str__(self) -> str:
        return f"{self.what}: payload of {self.size} bytes is over the limit of {self.limit} bytes"


class Crashed(Exception):
    """Processing this message crashed workers ``crashes`` times; it is not run again.

    Raised before user code runs, so a message that kills its process is set
    aside instead of killing every worker in turn.
    """

    def __init__(self, crashes: int) -> None:
        super().__init__(crashes)
        self.crashes = crashes

    def __str__(self) -> str:
        return f"worker crashed {self.crashes} times processing it"


# --- outcomes and their classification ----------------------------------------------------


class Action(enum.Enum):
    """How a delivery is settled with the transport."""

    ACK = "ack"
    """Done with: the transport forgets it."""
    NAK = "nak"
    """Handed back, to be redelivered (to any worker) after ``Disposition.delay``."""
    TERM = "term"
    """Never delivered again: kept as a dead letter with ``Disposition.reason``."""


class Outcome(enum.Enum):
    """What processing a delivery came to; ``RULES`` says what each one means."""

    DONE = "done"
    """Processed: a step committed, a redelivery re-sent, or nothing to do."""
    CONFLICT = "conflict"
    """Another worker committed first (``JournalConflict``, ``EvictedDuringStep``)."""
    POSTPONED = "postponed"
    """The routine waits out a retry backoff (``Postponed.delay``)."""
    CLAIMED_ELSEWHERE = "claimed_elsewhere"
    """Another worker holds the lease on the routine's first step."""
    ROUTINE_MISSING = "routine_missing"
    """A reply, timer or cancel for a routine not (yet) in the store."""
    MALFORMED = "malformed"
    """The message cannot be parsed or makes no sense (``MalformedMessage``)."""
    REFUSED = "refused"
    """The authenticated sender is not allowed to send this (``Refused``)."""
    TOO_LARGE = "too_large"
    """The payload is over the limit (``TooLarge``)."""
    DIVERGED = "diverged"
    """Replay did not match the journal (``NonDeterminismError``)."""
    INFRASTRUCTURE = "infrastructure"
    """The store or transport failed (``TimeoutError``, ``TransportError``, ``OSError``)."""
    FAILED = "failed"
    """Anything else raised while processing: a bug, retried until it is poison."""
    CRASHED = "crashed"
    """Processing this message crashed workers too often (``Crashed``)."""


CLASSIFICATION: tuple[tuple[type[BaseException], Outcome], ...] = (
    (Crashed, Outcome.CRASHED),
    (Postponed, Outcome.POSTPONED),
    (ClaimedElsewhere, Outcome.CLAIMED_ELSEWHERE),
    (JournalConflict, Outcome.CONFLICT),  # a TransportError: before it
    (EvictedDuringStep, Outcome.CONFLICT),
    (RoutineMissing, Outcome.ROUTINE_MISSING),  # a MalformedMessage: before it
    (Refused, Outcome.REFUSED),  # a MalformedMessage: before it
    (TooLarge, Outcome.TOO_LARGE),
    (MalformedMessage, Outcome.MALFORMED),
    (NonDeterminismError, Outcome.DIVERGED),
    (TimeoutError, Outcome.INFRASTRUCTURE),
    (TransportError, Outcome.INFRASTRUCTURE),
    (OSError, Outcome.INFRASTRUCTURE),
    (BaseException, Outcome.FAILED),  # nothing may leave a message unsettled
)
"""Exception class -> outcome, most specific first; ``classify`` takes the first match."""


def classify(exc: BaseException) -> Outcome:
    """The outcome of a delivery whose processing raised ``exc``.

    ``CancelledError`` raises ``ValueError``: the worker is stopping and must
    re-raise it, leaving the message to be redelivered, rather than settle it.
    """
    if not isinstance(exc, BaseException):
        raise TypeError(f"classify takes an exception, not {type(exc).__name__}")
    if isinstance(exc, CancelledError):
        raise ValueError(
            "CancelledError is not a delivery outcome: the worker is stopping, it re-raises "
            "the cancellation and the message is redelivered"
        )
    for kind, outcome in CLASSIFICATION:
        if isinstance(exc, kind):
            return outcome
    raise AssertionError("unreachable: BaseException matches every exception")


# --- the rules ----------------------------------------------------------------------------


class Wait(enum.Enum):
    """How long a handed-back (NAK) delivery waits before it is redelivered."""

    AT_ONCE = "at once"
    """No delay: the conflict is resolved by reloading the journal."""
    GIVEN = "given"
    """The ``delay`` passed to ``decide`` (``Postponed.delay``)."""
    BACKOFF = "backoff"
    """``backoff(attempt, Rule.cap)``: exponential with jitter, capped."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The worker's settings that ``decide`` needs."""

    poison_after: int = 10
    """Attempts of a FAILED message before it is set aside as poison."""
    missing_attempts: int = 8
    """Deliveries of a message for a missing routine before it is refused."""
    on_divergence: str = "park"
    """``park``: a diverged routine's message waits as a dead letter for fixed code;
    ``fail`` (tests): the routine's caller gets the ``NonDeterminismError``."""

    def __post_init__(self) -> None:
        if self.on_divergence not in ("park", "fail"):
            raise ValueError(f"on_divergence must be 'park' or 'fail', not {self.on_divergence!r}")
        if self.poison_after < 1 or self.missing_attempts < 1:
            raise ValueError("poison_after and missing_attempts must be at least 1")


@dataclass(frozen=True, slots=True)
class Rule:
    """What one outcome means; ``decide`` reads nothing else.

    ``reason`` is a ``str.format`` template of the dead letter reason, with
    ``{attempt}``, ``{error}``, ``{first_error}`` and ``{crashes}``.
    """

    action: Action
    wait: Wait = Wait.AT_ONCE
    """For NAK: how long until the redelivery."""
    cap: float = 0.0
    """For ``Wait.BACKOFF``: the longest wait, in seconds."""
    term_from: str = ""
    """For NAK: a ``Limits`` field; from that attempt on the message is terminated instead."""
    reason: str = ""
    """When terminated: the dead letter's reason (template)."""
    tell_caller: bool = False
    """When terminated: the routine's caller gets the failure instead of waiting forever."""
    evict: bool = False
    """The cached live routine is dropped: its state may be wrong or stale."""
    poison: bool = False
    """The delivery counts as a failed attempt (toward ``Limits.poison_after``)."""
    on_divergence: tuple[tuple[str, Rule], ...] = ()
    """The rule to use instead, by ``Limits.on_divergence`` (for DIVERGED)."""


POISON_REASON = (
    "poison message: failed {attempt} attempts; first error: {first_error}; last error: {error}"
)

RULES: Mapping[Outcome, Rule] = MappingProxyType(
    {
        Outcome.DONE: Rule(Action.ACK),
        Outcome.CONFLICT: Rule(Action.NAK, Wait.AT_ONCE, evict=True),
        Outcome.POSTPONED: Rule(Action.NAK, Wait.GIVEN),
        Outcome.CLAIMED_ELSEWHERE: Rule(Action.NAK, Wait.BACKOFF, cap=1.0),
        Outcome.ROUTINE_MISSING: Rule(
            Action.NAK,
            Wait.BACKOFF,
            cap=5.0,
            term_from="missing_attempts",
            reason="{error} (still missing after {attempt} deliveries)",
        ),
        Outcome.MALFORMED: Rule(Action.TERM, reason="{error}"),
        Outcome.REFUSED: Rule(Action.TERM, reason="{error}"),
        Outcome.TOO_LARGE: Rule(Action.TERM, reason="{error}", tell_caller=True),
        Outcome.DIVERGED: Rule(
            Action.TERM,
            evict=True,
            on_divergence=(
                ("park", Rule(Action.TERM, reason="parked: non-determinism: {error}", evict=True)),
                (
                    "fail",
                    Rule(
                        Action.TERM,
                        reason="non-determinism: {error}",
                        tell_caller=True,
                        evict=True,
                    ),
                ),
            ),
        ),
        Outcome.INFRASTRUCTURE: Rule(Action.NAK, Wait.BACKOFF, cap=30.0, evict=True),
        Outcome.FAILED: Rule(
            Action.NAK,
            Wait.BACKOFF,
            cap=30.0,
            term_from="poison_after",
            reason=POISON_REASON,
            tell_caller=True,
            evict=True,
            poison=True,
        ),
        Outcome.CRASHED: Rule(
            Action.TERM,
            reason="worker crashed {crashes} times processing it",
            tell_caller=True,
            evict=True,
        ),
    }
)
"""Every outcome's rule; docs/reliability.md shows this table row by row."""


# --- the decision -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Disposition:
    """What the worker does with one delivery."""

    action: Action
    delay: float = 0.0
    """Seconds before the redelivery, for NAK."""
    reason: str = ""
    """For TERM: kept with the dead letter; for NAK: the error, for the log."""
    tell_caller: bool = False
    """Reply the failure to the routine's caller, if it has one."""
    evict: bool = False
    """Drop the cached live routine."""
    poison: bool = False
    """The delivery counts as a failed attempt (stats, logs)."""


_NO_TEXT = "(no error text)"


def decide(
    outcome: Outcome,
    attempt: int,
    limits: Limits,
    *,
    error: str = "",
    first_error: str = "",
    delay: float = 0.0,
    crashes: int = 0,
) -> Disposition:
    """What to do with delivery number ``attempt`` (1-based) whose processing came to ``outcome``.

    ``error`` is the current exception as ``describe`` gives it, ``first_error``
    the first one recorded for this message (defaults to ``error``), ``delay``
    the postponement (POSTPONED), ``crashes`` the crash count (CRASHED).
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, not {attempt}")
    rule = RULES[outcome]
    for mode, instead in rule.on_divergence:
        if mode == limits.on_divergence:
            rule = instead
            break
    action = rule.action
    if action is Action.NAK and rule.term_from:
        limit: int = getattr(limits, rule.term_from)
        if attempt >= limit:
            action = Action.TERM
    if action is Action.ACK:
        return Disposition(Action.ACK, evict=rule.evict, poison=rule.poison)
    if action is Action.NAK:
        return Disposition(
            Action.NAK,
            _wait(rule, attempt, delay),
            error,
            evict=rule.evict,
            poison=rule.poison,
        )
    if outcome is Outcome.CRASHED and crashes < 1:
        raise ValueError("a CRASHED outcome needs the number of crashes (crashes >= 1)")
    text = error or _NO_TEXT
    reason = rule.reason.format(
        attempt=attempt, error=text, first_error=first_error or text, crashes=crashes
    )
    return Disposition(
        Action.TERM,
        0.0,
        reason,
        tell_caller=rule.tell_caller,
        evict=rule.evict,
        poison=rule.poison,
    )


def _wait(rule: Rule, attempt: int, delay: float) -> float:
    if rule.wait is Wait.GIVEN:
        return max(0.0, delay)
    if rule.wait is Wait.BACKOFF:
        return backoff(attempt, rule.cap)
    return 0.0


def describe(exc: BaseException) -> str:
    """An exception as reasons and logs name it: ``Type: message`` (``Type`` if no message)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def dispose(
    exc: BaseException, attempt: int, limits: Limits, *, first_error: str = ""
) -> Disposition:
    """``decide`` for a delivery whose processing raised ``exc``.

    Reads the postponement and the crash count from the signal itself. Raises
    ``ValueError`` for ``CancelledError``, like ``classify``.
    """
    return decide(
        classify(exc),
        attempt,
        limits,
        error=describe(exc),
        first_error=first_error,
        delay=exc.delay if isinstance(exc, Postponed) else 0.0,
        crashes=exc.crashes if isinstance(exc, Crashed) else 0,
    )


def backoff(attempt: int, cap: float = 30.0) -> float:
    """Delay before redelivery attempt ``attempt + 1``: the default policy's, at most ``cap``."""
    return min(cap, DEFAULT_POLICY.delay(attempt))
