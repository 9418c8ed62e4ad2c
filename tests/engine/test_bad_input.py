"""Bad input gets a clear error (or a dead letter) and the worker keeps serving."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import pytest

import dasync
from dasync._codec import decode_failure
from dasync.transports import Message

from ..semantics._helpers import dead_letters, publish_raw, steps, wait_until


class Calc(Protocol):
    async def add(self, a: int, b: int) -> int: ...
    async def wrong_result(self) -> int: ...


class CalcImpl(Calc):
    async def add(self, a: int, b: int) -> int:
        return a + b

    async def wrong_result(self) -> int:
        return "not a number"  # type: ignore[return-value]


class Nowhere(Protocol):
    """A contract whose service is deployed only later in a test (or never)."""

    async def ping(self) -> str: ...


class NowhereImpl(Nowhere):
    async def ping(self) -> str:
        return "pong"


class Caller(Protocol):
    async def call_nowhere(self) -> str: ...


class CallerImpl(Caller):
    def __init__(self, nowhere: Nowhere, calc: Calc) -> None:
        self.nowhere = nowhere
        self.calc = calc

    async def call_nowhere(self) -> str:
        pong = await self.nowhere.ping()
        return f"{pong}, then {await self.calc.add(1, 1)}"


SERVICES = [CalcImpl, CallerImpl]


async def _still_serves(rt: dasync.Runtime) -> None:
    assert await rt.client.proxy(Calc).add(20, 22) == 42


async def test_a_start_by_name_of_a_service_nobody_defines_is_unknown(make_runtime):
    """Only a raw start (``dasync call`` names a service) can name a service that no
    contract defines; it is refused at once, naming it."""
    async with make_runtime(SERVICES) as rt:
        with pytest.raises(dasync.UnknownService, match="Nowhere"):
            await rt.client.call_raw("Nowhere", "ping", b"{}")
        await _still_serves(rt)


async def test_calls_wait_for_a_service_that_starts_later(make_runtime):
    """Services start in any order: a client's call and a routine's call to a service
    whose workers have not started are kept, and complete once they do."""
    async with make_runtime(SERVICES) as rt:
        from_client = asyncio.ensure_future(rt.client.proxy(Nowhere).ping())
        from_routine = await rt.client.start(Caller.call_nowhere)

        async def queued() -> bool:
            records = await steps(rt, "Caller", from_routine.routine_id)
            return any(c.service == "Nowhere" for r in records for c in _calls(r))

        await wait_until(queued)
        assert not from_client.done()
        async with make_runtime([NowhereImpl]):
            assert await asyncio.wait_for(from_client, 10) == "pong"
            assert await from_routine.result(timeout=10) == "pong, then 2"
        await _still_serves(rt)


def _calls(record: Any) -> list[Any]:
    from dasync._engine import Call

    return [c for c in record.commands if isinstance(c, Call)]


async def test_unknown_method(make_runtime):
    async with make_runtime(SERVICES) as rt:
        ok, payload = await rt.client.call_raw("Calc", "nope", b"{}")
        assert not ok
        err = decode_failure(payload)
        assert isinstance(err, dasync.UnknownMethod)
        assert "'nope'" in str(err) and "add" in str(err)  # says what exists
        await _still_serves(rt)


async def test_client_side_argument_errors(make_runtime):
    async with make_runtime(SERVICES) as rt:
        calc = rt.client.proxy(Calc)
        with pytest.raises(dasync.InvalidArguments, match="'b'") as info:
            await calc.add(1, "two")  # type: ignore[arg-type]
        assert "Calc.add" in str(info.value) and "'two'" in str(info.value)
        with pytest.raises(dasync.InvalidArguments, match="'b'"):
            await calc.add(1)  # type: ignore[call-arg]
        with pytest.raises(dasync.InvalidArguments, match="'c'"):
            await calc.add(1, 2, c=3)  # type: ignore[call-arg]
        with pytest.raises(dasync.InvalidArguments):
            await calc.add(1, 2, 3)  # type: ignore[call-arg]
        with pytest.raises(dasync.InvalidArguments):
            await rt.client.start(Calc.add, 1, b=[])
        assert isinstance(dasync.InvalidArguments("x"), TypeError)
        await _still_serves(rt)


@pytest.mark.parametrize(
    ("payload", "names"),
    [
        (b'{"a": 1, "b": "two"}', ["argument 'b'"]),
        (b'{"a": "x", "b": "y"}', ["argument 'a'", "argument 'b'"]),
        (b'{"a": 1}', ["missing argument 'b'"]),
        (b'{"a": 1, "b": 2, "c": 3}', ["unexpected argument 'c'"]),
        (b"[1, 2]", ["Calc.add"]),
    ],
)
async def test_raw_payload_with_wrong_arguments(make_runtime, payload, names):
    async with make_runtime(SERVICES) as rt:
        ok, body = await rt.client.call_raw("Calc", "add", payload)
        assert not ok
        err = decode_failure(body)
        assert isinstance(err, dasync.InvalidArguments)
        for name in names:
            assert name in str(err)
        await _still_serves(rt)


@pytest.mark.parametrize("payload", [b"not json", b"", b'{"a": 1,', b"\xff\xfe"])
async def test_undecodable_payload(make_runtime, payload):
    async with make_runtime(SERVICES) as rt:
        ok, body = await rt.client.call_raw("Calc", "add", payload)
        assert not ok
        err = decode_failure(body)
        assert isinstance(err, dasync.MalformedMessage), err
        assert "Calc.add" in str(err)
        await _still_serves(rt)


async def test_result_that_does_not_match_the_contract(make_runtime):
    async with make_runtime(SERVICES) as rt:
        with pytest.raises(dasync.ContractError, match="wrong_result"):
            await rt.client.proxy(Calc).wrong_result()
        await _still_serves(rt)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"dasync-kind": "start"},
        {"dasync-routine": "r1"},
        {"dasync-kind": "explode", "dasync-routine": "r1"},
        {"dasync-kind": "reply", "dasync-routine": "r1", "dasync-seq": "one"},
        {"dasync-kind": "reply", "dasync-routine": "no-such-routine", "dasync-seq": "1"},
        {"dasync-kind": "timer", "dasync-routine": "no-such-routine", "dasync-seq": "1"},
    ],
)
@pytest.mark.parametrize("replay_mode", ["cached"])  # no routine runs: replay is irrelevant
async def test_message_with_bad_headers_is_dead_lettered(make_runtime, headers):
    async with make_runtime(SERVICES) as rt:
        await publish_raw(rt, "Calc", Message("garbage-1", headers, b"{}"))

        async def one_dead() -> bool:
            return len(await dead_letters(rt, "Calc")) == 1

        await wait_until(one_dead, within=20)
        [(message, reason)] = await dead_letters(rt, "Calc")
        assert message.msg_id == "garbage-1"
        assert reason
        assert len(rt.worker.stats.rejected) == 1
        assert "garbage-1" in rt.worker.stats.rejected[0]
        assert _one_line(reason) in _one_line(rt.worker.stats.rejected[0])
        await _still_serves(rt)
        assert len(await dead_letters(rt, "Calc")) == 1  # nothing else was rejected


async def test_many_bad_inputs_interleaved_with_good_calls(make_runtime):
    async with make_runtime(SERVICES) as rt:
        for i in range(20):
            await publish_raw(rt, "Calc", Message(f"junk-{i}", {"x": "y"}, b"\x00"))
        results = [await rt.client.call_raw("Calc", "add", b"not json") for _ in range(5)]
        assert all(not ok for ok, _ in results)
        assert [await rt.client.proxy(Calc).add(i, i) for i in range(5)] == [0, 2, 4, 6, 8]

        async def all_dead() -> bool:
            return len(await dead_letters(rt, "Calc")) == 20

        await wait_until(all_dead)
        assert {m.msg_id for m, _ in await dead_letters(rt, "Calc")} == {
            f"junk-{i}" for i in range(20)
        }


def _one_line(text: str) -> str:
    """Dead-letter reasons travel in a header on NATS: whitespace becomes single spaces."""
    return " ".join(text.split())
