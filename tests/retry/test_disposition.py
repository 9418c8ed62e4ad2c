"""The worker's decision about each delivery: the docs table, RULES and decide() agree.

Every row of docs/reliability.md's "What the worker does with each delivery" is
parsed and checked against ``decide`` at every attempt around the limits and in
both divergence modes, so the documentation cannot drift from the code.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import pickle
import random
import re
from asyncio import CancelledError
from dataclasses import dataclass
from pathlib import Path

import pytest

from dasync import _errors
from dasync._engine import EvictedDuringStep
from dasync._errors import (
    InvalidArguments,
    JournalConflict,
    MalformedMessage,
    NonDeterminismError,
    TransportError,
)
from dasync._failures import decode_failure, encode_failure
from dasync._retry import DEFAULT_POLICY
from dasync._runtime import _disposition
from dasync._runtime._disposition import (
    CLASSIFICATION,
    RULES,
    Action,
    ClaimedElsewhere,
    Crashed,
    Disposition,
    Limits,
    Outcome,
    Postponed,
    Refused,
    RoutineMissing,
    TooLarge,
    backoff,
    classify,
    decide,
    describe,
    dispose,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
HEADING = "## What the worker does with each delivery"
COLUMNS = [
    "outcome",
    "what happened",
    "example",
    "action",
    "delay",
    "dead letter reason",
    "caller told?",
    "counted toward poison?",
    "cached routine dropped?",
]
MODES = ("park", "fail")
ERROR = "RuntimeError: the last one"
FIRST = "ValueError: the first one"
DELAY = 1.25
CRASHES = 3


# --- the docs table, parsed ---------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row of the docs table, read into what ``decide`` must do."""

    outcome: Outcome
    example: str
    action: Action
    term_from: str
    """A ``Limits`` field: from that attempt on, TERM instead of ``action`` (NAK)."""
    delay: str
    """``none`` (no nak), ``zero``, ``given`` or ``backoff``."""
    cap: float
    reasons: dict[str, str | None]
    """Dead letter reason template by divergence mode (``None``: never terminated)."""
    told: dict[str, bool]
    poison: bool
    evict: bool


def _yes_no(cell: str) -> bool:
    word = cell.split(" ", 1)[0]
    assert word in ("yes", "no"), f"expected yes or no, not {cell!r}"
    return word == "yes"


def _by_mode(cell: str) -> dict[str, str]:
    """``park: X; fail: Y`` -> {park: X, fail: Y}; a cell without modes applies to both."""
    match = re.fullmatch(r"park: (.+); fail: (.+)", cell)
    if match:
        return {"park": match[1], "fail": match[2]}
    return {mode: cell for mode in MODES}


def _template(cell: str) -> str | None:
    if cell == "—":
        return None
    match = re.fullmatch(r"`([^`]*)`", cell)
    assert match, f"a reason must be a template in backticks or —, not {cell!r}"
    return match[1]


def _parse_row(line: str) -> Row:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    assert len(cells) == len(COLUMNS), f"{len(cells)} cells in {line!r}"
    outcome_cell, _happened, example, action, delay, reason, told, poison, evict = cells
    name = re.fullmatch(r"`(\w+)`", outcome_cell)
    assert name, f"outcome cell {outcome_cell!r}"
    limited = re.fullmatch(r"nak; term from attempt `(\w+)` \((\d+)\)", action)
    term_from = ""
    if limited:
        term_from = limited[1]
        assert int(limited[2]) == getattr(Limits(), term_from), "the documented default"
        first = Action.NAK
    else:
        first = Action(action)
    cap = 0.0
    if delay == "—":
        kind = "none"
    elif delay == "0 s":
        kind = "zero"
    elif delay == "`Postponed.delay`":
        kind = "given"
    else:
        backing = re.fullmatch(r"backoff, cap (\d+(?:\.\d+)?) s", delay)
        assert backing, f"delay cell {delay!r}"
        kind, cap = "backoff", float(backing[1])
    return Row(
        Outcome[name[1]],
        example,
        first,
        term_from,
        kind,
        cap,
        {mode: _template(cell) for mode, cell in _by_mode(reason).items()},
        {mode: _yes_no(cell) for mode, cell in _by_mode(told).items()},
        _yes_no(poison),
        _yes_no(evict),
    )


def _table_lines() -> tuple[list[str], list[str]]:
    text = DOCS.read_text(encoding="utf-8")
    assert text.count(HEADING) == 1, f"{DOCS} must have one section {HEADING!r}"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip().strip("|").split("|")]
    return header, lines[2:]


def _rows() -> list[Row]:
    return [_parse_row(line) for line in _table_lines()[1]]


ROWS = _rows()


def test_the_table_has_the_documented_columns() -> None:
    assert _table_lines()[0] == COLUMNS


def test_the_table_has_one_row_per_outcome_in_order() -> None:
    assert [row.outcome for row in ROWS] == list(Outcome)
    assert set(RULES) == set(Outcome)


# --- every row against decide() -----------------------------------------------------------


def _limits() -> list[Limits]:
    return [
        Limits(on_divergence=mode, **sizes)  # type: ignore[arg-type]
        for mode in MODES
        for sizes in (
            {},
            {"poison_after": 3, "missing_attempts": 2},
            {"poison_after": 1},
            {"poison_after": 40, "missing_attempts": 40},  # naks long enough to reach the caps
        )
    ]


def _backoff_range(attempt: int, cap: float) -> tuple[float, float]:
    base = min(DEFAULT_POLICY.max_delay, DEFAULT_POLICY.backoff * 2 ** (attempt - 1))
    low, high = base * (1 - DEFAULT_POLICY.jitter), base * (1 + DEFAULT_POLICY.jitter)
    return min(cap, low), min(cap, high, DEFAULT_POLICY.max_delay)


@pytest.mark.parametrize("row", ROWS, ids=[row.outcome.name for row in ROWS])
def test_each_documented_row_is_what_decide_does(row: Row) -> None:
    terminated = False
    for limits in _limits():
        mode = limits.on_divergence
        limit = getattr(limits, row.term_from) if row.term_from else 0
        for attempt in range(1, max(limit, 12) + 3):
            got = decide(
                row.outcome,
                attempt,
                limits,
                error=ERROR,
                first_error=FIRST,
                delay=DELAY,
                crashes=CRASHES,
            )
            where = f"{row.outcome.name} attempt {attempt} under {limits}"
            expected = Action.TERM if row.term_from and attempt >= limit else row.action
            assert got.action is expected, where
            assert got.poison is row.poison, where
            assert got.evict is row.evict, where
            if got.action is Action.TERM:
                terminated = True
                template = row.reasons[mode]
                assert template is not None, f"{where}: terminated, but no reason documented"
                assert got.reason == template.format(
                    attempt=attempt, error=ERROR, first_error=FIRST, crashes=CRASHES
                ), where
                assert got.tell_caller is row.told[mode], where
                assert got.delay == 0.0, where
            else:
                assert got.tell_caller is False, f"{where}: only a terminated message tells"
                assert not row.told[mode] or row.term_from, f"{where}: documented as told"
            if got.action is Action.ACK:
                assert row.delay == "none" and got.delay == 0.0 and got.reason == "", where
            if got.action is Action.NAK:
                assert got.reason == ERROR, f"{where}: a nak carries the error for the log"
                if row.delay == "zero":
                    assert got.delay == 0.0, where
                elif row.delay == "given":
                    assert got.delay == DELAY, where
                else:
                    assert row.delay == "backoff", f"{where}: a nak needs a delay"
                    low, high = _backoff_range(attempt, row.cap)
                    assert low <= got.delay <= high, f"{where}: {got.delay}"
    if row.action is Action.TERM or row.term_from:
        assert terminated
    else:
        assert row.reasons == {"park": None, "fail": None}, "a reason for what never terms"
        assert row.delay != "none" or row.action is Action.ACK


@pytest.mark.parametrize("row", ROWS, ids=[row.outcome.name for row in ROWS])
def test_each_documented_example_classifies_to_its_row(row: Row) -> None:
    namespace = {**vars(builtins), **vars(_errors), **vars(_disposition)}
    named = [namespace.get(name) for name in re.findall(r"`(\w+)`", row.example)]
    kinds = [k for k in named if isinstance(k, type) and issubclass(k, BaseException)]
    if row.outcome is Outcome.DONE:
        assert kinds == []  # nothing raised
        return
    assert kinds, f"the example of {row.outcome.name} names no exception class"
    for kind in kinds:
        assert classify(kind.__new__(kind)) is row.outcome, kind


# --- classify -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "outcome"), CLASSIFICATION, ids=[k.__name__ for k, _ in CLASSIFICATION]
)
def test_classify_each_row_and_its_subclasses(kind: type[BaseException], outcome: Outcome) -> None:
    assert classify(kind.__new__(kind)) is outcome
    sub = type(f"Custom{kind.__name__}", (kind,), {})
    assert classify(sub.__new__(sub)) is outcome


def test_every_row_of_the_classification_is_reachable() -> None:
    kinds = [kind for kind, _ in CLASSIFICATION]
    for i, earlier in enumerate(kinds):
        for later in kinds[i + 1 :]:
            assert not issubclass(later, earlier), f"{later} is shadowed by {earlier}"
    assert kinds[-1] is BaseException


def test_every_outcome_but_done_is_classified() -> None:
    assert {outcome for _, outcome in CLASSIFICATION} == set(Outcome) - {Outcome.DONE}


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (RoutineMissing("reply for 'r' of S, which does not exist"), Outcome.ROUTINE_MISSING),
        (Refused("service B may not reply for Payments"), Outcome.REFUSED),
        (MalformedMessage("not JSON"), Outcome.MALFORMED),
        (TooLarge("S.m", 5, 4), Outcome.TOO_LARGE),
        (InvalidArguments("x"), Outcome.FAILED),  # only an oversized payload is refused
        (JournalConflict("behind"), Outcome.CONFLICT),
        (TransportError("down"), Outcome.INFRASTRUCTURE),
        (TimeoutError(), Outcome.INFRASTRUCTURE),
        (ConnectionResetError(), Outcome.INFRASTRUCTURE),
        (EvictedDuringStep("r"), Outcome.CONFLICT),
        (NonDeterminismError("r", 1, "call a", "call b"), Outcome.DIVERGED),
        (Postponed(1.0), Outcome.POSTPONED),
        (ClaimedElsewhere("r"), Outcome.CLAIMED_ELSEWHERE),
        (Crashed(3), Outcome.CRASHED),
        (SystemExit(1), Outcome.FAILED),
        (KeyboardInterrupt(), Outcome.FAILED),
        (GeneratorExit(), Outcome.FAILED),
        (type("Custom", (BaseException,), {})(), Outcome.FAILED),
        (RuntimeError("bug"), Outcome.FAILED),
        (BaseExceptionGroup("g", [JournalConflict("x")]), Outcome.FAILED),  # not looked into
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_classify(exc: BaseException, outcome: Outcome) -> None:
    assert classify(exc) is outcome


@pytest.mark.parametrize("exc", [CancelledError(), type("Sub", (CancelledError,), {})()])
def test_cancellation_is_not_an_outcome(exc: BaseException) -> None:
    with pytest.raises(ValueError, match="re-raises"):
        classify(exc)
    with pytest.raises(ValueError):
        dispose(exc, 1, Limits())


def test_classify_takes_an_exception() -> None:
    with pytest.raises(TypeError):
        classify("boom")  # type: ignore[arg-type]


# --- boundaries ---------------------------------------------------------------------------


@pytest.mark.parametrize("poison_after", [1, 2, 10])
def test_failed_naks_until_poison_after_then_terms_naming_both_errors(poison_after: int) -> None:
    limits = Limits(poison_after=poison_after)
    if poison_after > 1:
        before = decide(Outcome.FAILED, poison_after - 1, limits, error=ERROR, first_error=FIRST)
        assert before.action is Action.NAK and before.poison and before.evict
        assert not before.tell_caller and 0 < before.delay <= 30.0
    at = decide(Outcome.FAILED, poison_after, limits, error=ERROR, first_error=FIRST)
    assert at == Disposition(
        Action.TERM,
        reason=f"poison message: failed {poison_after} attempts; "
        f"first error: {FIRST}; last error: {ERROR}",
        tell_caller=True,
        evict=True,
        poison=True,
    )


def test_poison_reason_without_a_recorded_first_error_names_the_last() -> None:
    got = decide(Outcome.FAILED, 10, Limits(), error=ERROR)
    assert (
        got.reason
        == f"poison message: failed 10 attempts; first error: {ERROR}; last error: {ERROR}"
    )


def test_routine_missing_terms_at_missing_attempts_without_telling() -> None:
    limits = Limits()
    error = "RoutineMissing: timer for routine 'r' of S, which does not exist"
    for attempt in range(1, limits.missing_attempts):
        got = decide(Outcome.ROUTINE_MISSING, attempt, limits, error=error)
        assert got.action is Action.NAK and 0 < got.delay <= 5.0
    got = decide(Outcome.ROUTINE_MISSING, limits.missing_attempts, limits, error=error)
    assert got.action is Action.TERM and not got.tell_caller and not got.poison
    assert got.reason == f"{error} (still missing after 8 deliveries)"


def test_diverged_parks_or_fails() -> None:
    error = describe(NonDeterminismError("r", 2, "call a", "call b"))
    park = decide(Outcome.DIVERGED, 1, Limits(on_divergence="park"), error=error)
    assert park.action is Action.TERM and park.evict and not park.tell_caller
    assert park.reason == f"parked: non-determinism: {error}"
    fail = decide(Outcome.DIVERGED, 1, Limits(on_divergence="fail"), error=error)
    assert fail.action is Action.TERM and fail.evict and fail.tell_caller
    assert fail.reason == f"non-determinism: {error}"
    assert not park.poison and not fail.poison  # never retried into a chance match


def test_infrastructure_is_never_poison() -> None:
    for attempt in (1, 10, 1000):
        got = decide(Outcome.INFRASTRUCTURE, attempt, Limits(poison_after=1), error=ERROR)
        assert got.action is Action.NAK and not got.poison and got.evict
        assert 0 < got.delay <= 30.0


def test_conflict_naks_at_once_and_postponed_waits_what_it_was_told() -> None:
    assert decide(Outcome.CONFLICT, 5, Limits()).delay == 0.0
    assert decide(Outcome.POSTPONED, 5, Limits(), delay=7.5).delay == 7.5
    assert decide(Outcome.POSTPONED, 1, Limits(), delay=-1.0).delay == 0.0


def test_crashed_needs_its_count() -> None:
    got = decide(Outcome.CRASHED, 1, Limits(), crashes=4)
    assert got.action is Action.TERM and got.tell_caller
    assert got.reason == "worker crashed 4 times processing it"
    with pytest.raises(ValueError, match="crashes"):
        decide(Outcome.CRASHED, 1, Limits())


def test_terminations_without_an_error_text_still_say_so() -> None:
    assert decide(Outcome.MALFORMED, 1, Limits()).reason == "(no error text)"


def test_attempts_start_at_one() -> None:
    with pytest.raises(ValueError, match="attempt"):
        decide(Outcome.FAILED, 0, Limits())


@pytest.mark.parametrize(
    "bad", [{"on_divergence": "ignore"}, {"poison_after": 0}, {"missing_attempts": 0}]
)
def test_limits_are_checked(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Limits(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("cap", [0.5, 1.0, 5.0, 30.0])
def test_backoff_is_capped(cap: float) -> None:
    for attempt in range(1, 80):
        assert 0.0 <= backoff(attempt, cap) <= cap
    assert backoff(60, cap) >= min(cap, 30.0 * (1 - DEFAULT_POLICY.jitter))
    assert backoff(60) <= 30.0


def test_backoff_is_the_default_policy_capped() -> None:
    for attempt in (1, 3, 8, 20):
        random.seed(attempt)
        ours = backoff(attempt, 2.0)
        random.seed(attempt)
        assert ours == min(2.0, DEFAULT_POLICY.delay(attempt, random.random))


# --- dispose, describe and the signals ----------------------------------------------------


def test_dispose_reads_the_signals() -> None:
    assert dispose(Postponed(2.5), 1, Limits()) == Disposition(
        Action.NAK, 2.5, "Postponed: the routine waits out a retry backoff of 2.500 s"
    )
    crashed = dispose(Crashed(3), 1, Limits())
    assert crashed.reason == "worker crashed 3 times processing it" and crashed.tell_caller
    poison = dispose(RuntimeError("again"), 10, Limits(), first_error=FIRST)
    assert poison.reason == (
        f"poison message: failed 10 attempts; first error: {FIRST}; last error: RuntimeError: again"
    )
    refused = dispose(Refused("service B may not cancel 'r' of A"), 1, Limits())
    assert refused == Disposition(Action.TERM, reason="Refused: service B may not cancel 'r' of A")


def test_describe() -> None:
    assert describe(RuntimeError("x")) == "RuntimeError: x"
    assert describe(KeyboardInterrupt()) == "KeyboardInterrupt"


def test_signals_carry_their_facts() -> None:
    assert Postponed(1.5).delay == 1.5
    assert Crashed(2).crashes == 2 and str(Crashed(2)) == "worker crashed 2 times processing it"
    large = TooLarge("Svc.m", 2000, 1000)
    assert isinstance(large, InvalidArguments)
    assert str(large) == "Svc.m: payload of 2000 bytes is over the limit of 1000 bytes"
    assert isinstance(RoutineMissing("x"), MalformedMessage)
    assert isinstance(Refused("x"), MalformedMessage)


@pytest.mark.parametrize(
    "exc",
    [Postponed(1.5), Crashed(2), TooLarge("Svc.m", 2000, 1000), Refused("x"), RoutineMissing("y")],
    ids=lambda exc: type(exc).__name__,
)
def test_signals_survive_pickle_and_the_failure_codec(exc: BaseException) -> None:
    for copy in (pickle.loads(pickle.dumps(exc)), decode_failure(encode_failure(exc))):
        assert type(copy) is type(exc) and str(copy) == str(exc)


# --- the table itself ---------------------------------------------------------------------


def test_rules_name_real_limits_and_modes() -> None:
    fields = {f.name: f.type for f in dataclasses.fields(Limits)}
    for outcome, rule in RULES.items():
        if rule.term_from:
            assert fields.get(rule.term_from) == "int", (outcome, rule.term_from)
            assert rule.action is Action.NAK and rule.reason
        if rule.on_divergence:
            assert outcome is Outcome.DIVERGED
            assert [mode for mode, _ in rule.on_divergence] == list(MODES)


def test_the_module_stays_pure() -> None:
    """No I/O, no logging, no event loop: only ``CancelledError`` comes from asyncio."""
    tree = ast.parse(Path(_disposition.__file__).read_text(encoding="utf-8"))
    allowed = {"__future__", "enum", "collections.abc", "dataclasses", "types", "asyncio"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert {alias.name for alias in node.names} <= allowed - {"asyncio"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            assert node.module in allowed, node.module
            if node.module == "asyncio":
                assert [alias.name for alias in node.names] == ["CancelledError"]
    assert not any(isinstance(node, ast.AsyncFunctionDef | ast.Await) for node in ast.walk(tree))
