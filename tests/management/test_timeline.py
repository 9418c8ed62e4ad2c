"""The timeline of a journal with every kind of step (synthetic, no store): timers,
retries, events, cancels and a child, as text and as a Mermaid diagram."""

from __future__ import annotations

from dasync._engine import (
    Call,
    Cancel,
    CancelCall,
    Complete,
    Emit,
    FireTimer,
    Postpone,
    Resolve,
    Start,
    StartTimer,
    StepRecord,
)
from dasync._failures import encode_failure
from dasync._runtime._timeline import build_timeline, mermaid, render_text

from ._mermaid import check_grammar

META = {"method": "ship", "caller": "client:ops"}
JOURNAL = [
    StepRecord(
        Start(b'{"order":"o1"}', 100.0, META),
        (Call(1, "Stock", "reserve", b'{"item":"book"}', callee="o1/Orders.ship.1"),),
    ),
    StepRecord(Resolve(1, True, b"true", 100.25), (StartTimer(2, 101.75),)),
    StepRecord(FireTimer(2, 101.75), (Postpone(1, 102.0, "ConnectionError: down"),)),
    StepRecord(
        FireTimer(2, 102.0),
        (
            Emit(3, "shipped", b'{"order":"o1"}'),
            Call(4, "Mail", "send", b"{}", callee="o1/Orders.ship.4"),
        ),
    ),  # fmt: skip
    StepRecord(Cancel(103.0, "c1"), (CancelCall(5, 4, "Mail", "o1/Orders.ship.4"),)),
    StepRecord(
        Resolve(4, False, encode_failure(TimeoutError("smtp")), 103.5),
        (Complete(6, False, encode_failure(KeyError("gone"))),),
    ),
]
CHILD = [
    StepRecord(
        Start(
            b'{"item":"book"}',
            100.05,
            {"method": "reserve", "caller": "service:Orders", "reply_routine": "o1"},
        ),
        (Complete(1, True, b"true"),),
    ),  # fmt: skip
]


def test_every_kind_of_step_reads_as_a_line() -> None:
    child = build_timeline("Stock", "o1/Orders.ship.1", CHILD)
    timeline = build_timeline("Orders", "o1", JOURNAL, {child.key: child})
    assert timeline.status == "failed" and timeline.outcome == "KeyError: 'gone'"
    assert child.parent == "Orders/o1"
    lines = render_text(timeline)
    text = "\n".join(lines)
    assert lines[0] == "Orders/o1  ship(order=\"o1\")  failed: KeyError: 'gone'"
    for expected in (
        '+   0.000s  step 0   #1 call Stock.reserve(item="book") as o1/Orders.ship.1',
        '      Stock/o1/Orders.ship.1  reserve(item="book")  completed: true',
        "+   0.250s  step 1   #1 Stock.reserve returned true after 250 ms",
        "+   0.250s  step 1   #2 timer for 1500 ms",
        "+   1.750s  step 2   timer #2 fired",
        "+   1.750s  step 2   attempt 1 failed (ConnectionError: down); retry in 250 ms",
        '+   2.000s  step 3   #3 fired event shipped({"order":"o1"})',
        "+   3.000s  step 4   cancel requested",
        "+   3.000s  step 4   #5 cancel call #4 (Mail)",
        "+   3.500s  step 5   #4 Mail.send raised TimeoutError: smtp after 1500 ms",
        "+   3.500s  step 5   failed: raised KeyError: 'gone' after 3500 ms",
    ):
        assert expected in text, f"{expected!r} not in\n{text}"
    [reserve, send] = timeline.calls
    assert (reserve.duration, reserve.ok, send.cancelled, send.ok) == (0.25, True, True, False)


def test_the_diagram_shows_timers_retries_and_failures() -> None:
    child = build_timeline("Stock", "o1/Orders.ship.1", CHILD)
    diagram = mermaid(build_timeline("Orders", "o1", JOURNAL, {child.key: child}))
    check_grammar(diagram)
    lines = [line.strip() for line in diagram.splitlines()]
    assert lines[1:5] == [
        "participant P1 as client ops",
        "participant P2 as Orders",
        "participant P3 as Stock",
        "participant P4 as Mail",
    ]
    assert "Note over P2: timer for 1500 ms" in lines
    assert "Note over P2: attempt 1 failed (ConnectionError  down)  retry in 250 ms" in lines
    assert "P4--xP2: TimeoutError  smtp" in lines
    assert lines[-1] == "P2--xP1: failed KeyError  'gone'"
