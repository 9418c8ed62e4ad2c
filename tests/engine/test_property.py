"""Kitchen sink: random programs run live, then with forced replay, then replayed cold.

One data-driven routine interprets a list of actions (calls, gathers, nested
sub-routines, caught callee exceptions, durable timers, ``dasync.uuid4()``,
concurrent local tasks). Hypothesis generates the programs; each one must give
the same result and the same journals with and without forced replay, and its
live journals must replay into fresh instances without a NonDeterminismError.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import Any, Protocol

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dasync
from dasync._codec import encode_failure
from dasync._engine import (
    Call,
    CancelCall,
    Complete,
    FireTimer,
    Record,
    Resolve,
    RoutineInstance,
    Start,
    StartTimer,
    StepRecord,
    decode_step,
)
from dasync._runtime._worker import _body
from dasync.testing import runtime

from ..semantics._helpers import wait_until


@dataclasses.dataclass
class Action:
    kind: str
    value: int = 0
    children: list[Action] = dataclasses.field(default_factory=list)


class LeafError(Exception):
    pass


class Leaf(Protocol):
    async def value(self, x: int) -> int: ...
    async def fail(self, x: int) -> int: ...


class LeafImpl(Leaf):
    async def value(self, x: int) -> int:
        return x * 3 + 1

    async def fail(self, x: int) -> int:
        raise LeafError(f"no {x}")


class Sink(Protocol):
    async def run(self, actions: list[Action]) -> list[str]: ...


class SinkImpl(Sink):
    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def run(self, actions: list[Action]) -> list[str]:
        out: list[str] = []
        for action in actions:
            out.extend(await self._do(action))
        return out

    async def _do(self, a: Action) -> list[str]:
        if a.kind == "call":
            return [f"call {await self.leaf.value(a.value)}"]
        if a.kind == "gather":
            results = await asyncio.gather(*(self.leaf.value(a.value + i) for i in range(3)))
            return [f"gather {list(results)}"]
        if a.kind == "raise":
            try:
                await self.leaf.fail(a.value)
            except LeafError as exc:
                return [f"caught {exc}"]
            return ["not raised"]
        if a.kind == "timer":
            before = dasync.now()
            await asyncio.sleep(a.value)
            return [f"slept {(dasync.now() - before).total_seconds() >= a.value}"]
        if a.kind == "uuid":
            return [f"uuid {dasync.uuid4()}"]
        if a.kind == "sub":  # a durable sub-routine with its own journal
            return [f"sub {await self.run(a.children)}"]
        if a.kind == "parallel":  # local tasks of this routine, interleaved
            parts = await asyncio.gather(*(self._do(c) for c in a.children))
            return [f"parallel {parts}"]
        raise ValueError(a.kind)


SERVICES = [LeafImpl, SinkImpl]

leaves = st.one_of(
    st.builds(Action, kind=st.just("call"), value=st.integers(0, 99)),
    st.builds(Action, kind=st.just("gather"), value=st.integers(0, 99)),
    st.builds(Action, kind=st.just("raise"), value=st.integers(0, 99)),
    st.builds(Action, kind=st.just("timer"), value=st.sampled_from([1, 30, 3600, 86_400])),
    st.builds(Action, kind=st.just("uuid")),
)
actions = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(Action, kind=st.just("sub"), children=st.lists(inner, max_size=3)),
        st.builds(
            Action, kind=st.just("parallel"), children=st.lists(inner, min_size=1, max_size=3)
        ),
    ),
    max_leaves=16,
)
programs = st.lists(actions, max_size=8)


# --- normalising away what legitimately differs between two runs --------------------------

_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")


def uuid_labels(journals: dict[tuple[str, str], list[StepRecord]]) -> dict[str, str]:
    """Each recorded uuid, named by where it was recorded (same in both runs)."""
    labels = {}
    for (_, rid), steps in journals.items():
        for step in steps:
            for c in step.commands:
                if isinstance(c, Record) and c.kind == "uuid4":
                    labels[c.value.replace("-", "")] = f"<uuid {rid}#{c.seq}>"
    return labels


def relabel(text: str, labels: dict[str, str]) -> str:
    return _UUID.sub(lambda m: labels.get(m.group(0).replace("-", ""), "<unknown uuid>"), text)


def normal_journals(
    journals: dict[tuple[str, str], list[StepRecord]], labels: dict[str, str]
) -> dict[tuple[str, str], list[Any]]:
    """Inputs and commands without timestamps, with uuids replaced by their labels."""

    def p(payload: bytes) -> str:
        return relabel(payload.decode(), labels)

    def inp(i: Any) -> tuple[Any, ...]:
        if isinstance(i, Start):
            return ("start", p(i.args), i.meta.get("method"), i.meta.get("reply_seq"))
        if isinstance(i, Resolve):
            return ("reply", i.seq, i.ok, p(i.payload))
        if isinstance(i, FireTimer):
            return ("timer", i.seq)
        return ("cancel",)

    def cmd(c: Any) -> tuple[Any, ...]:
        if isinstance(c, Call):
            return ("call", c.seq, c.service, c.method, p(c.args))
        if isinstance(c, CancelCall):
            return ("cancel", c.seq, c.target)
        if isinstance(c, StartTimer):
            return ("timer", c.seq)
        if isinstance(c, Record):
            return ("record", c.seq, c.kind, relabel(str(c.value), labels))
        assert isinstance(c, Complete)
        return ("done", c.seq, c.ok, p(c.payload))

    return {
        key: [(inp(s.input), [cmd(c) for c in s.commands]) for s in steps]
        for key, steps in sorted(journals.items())
    }


async def run_program(program: list[Action], force_replay: bool) -> tuple[list[str], Any]:
    async with runtime(SERVICES, force_replay=force_replay) as rt:
        handle = await rt.client.start(Sink.run, program, routine_id="ks")
        result: list[str] = await handle.result(timeout=30)
        assert rt.broker is not None
        broker = rt.broker
        # late timers of finished routines still fire
        await wait_until(lambda: not broker.busy() and broker.next_scheduled() is None)
        journals = {
            key: [decode_step(e) for e in entries] for key, entries in broker.journals.items()
        }
        if not force_replay:
            await replay_cold(rt, journals)
    return result, journals


async def replay_cold(
    rt: dasync.Runtime, journals: dict[tuple[str, str], list[StepRecord]]
) -> None:
    """Every live journal replays into a fresh instance, to the same completion."""
    for (service, rid), steps in journals.items():
        start = steps[0].input
        assert isinstance(start, Start)
        method = start.meta["method"]
        hosted = rt.worker.services[service]
        inst = RoutineInstance(
            rid, service, method, _body(hosted, method), encode_failure, dict(start.meta)
        )
        await inst.replay(steps)  # raises NonDeterminismError if replay diverges
        assert inst.done
        assert inst.completion == next(
            c for s in steps for c in s.commands if isinstance(c, Complete)
        )
        inst.evict()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(programs)
def test_replay_equivalence(program: list[Action]) -> None:
    live, live_journals = asyncio.run(run_program(program, force_replay=False))
    forced, forced_journals = asyncio.run(run_program(program, force_replay=True))

    live_labels, forced_labels = uuid_labels(live_journals), uuid_labels(forced_journals)
    assert relabel(repr(live), live_labels) == relabel(repr(forced), forced_labels)
    assert "<unknown uuid>" not in relabel(repr(live), live_labels)
    assert normal_journals(live_journals, live_labels) == normal_journals(
        forced_journals, forced_labels
    )
    assert len(live) == sum(1 for _ in program)


def test_a_fixed_kitchen_sink_program() -> None:
    """One hand-written program with every action, checked for its exact result."""
    program = [
        Action("call", 1),
        Action("gather", 10),
        Action("raise", 7),
        Action("timer", 3600),
        Action("uuid"),
        Action("sub", children=[Action("call", 2), Action("sub", children=[Action("uuid")])]),
        Action("parallel", children=[Action("timer", 30), Action("call", 3), Action("raise", 1)]),
    ]
    live, journals = asyncio.run(run_program(program, force_replay=False))
    labels = uuid_labels(journals)
    assert [relabel(x, labels) for x in live] == [
        "call 4",
        "gather [31, 34, 37]",
        "caught no 7",
        "slept True",
        "uuid <uuid ks#9>",  # seq 6 and 8 are the timer's dasync.now(), 7 the timer
        "sub ['call 7', \"sub ['uuid <uuid ks/Sink.run.10/Sink.run.2#1>']\"]",
        "parallel [['slept True'], ['call 10'], ['caught no 1']]",
    ]
    forced, _ = asyncio.run(run_program(program, force_replay=True))
    assert len(forced) == len(live)
