"""Nobody speaks for another: forged replies, cancels, starts and timers are refused.

Each test holds a real call open (``Guard.check`` waits on a gate), forges a message
as some sender would — the transport is told who sends, as the NATS subject would
tell it — and checks that the forgery became a dead letter naming the sender, and
that the real call still completes with the real result. Both transports: on NATS
without permissions anyone may publish on any lane, which is exactly the power of
"someone with publish rights on one subject" (``docs/security.md``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from typing import Protocol

import pytest

import dasync
from dasync._engine import Cancel, child_id
from dasync._failures import encode_failure
from dasync._runtime import _wire
from dasync.transports import Message, Origin
from tests.semantics._helpers import dead_letters, publish_raw, settled, steps, wait_until

GATE: dict[str, asyncio.Event] = {}


class Hold(Protocol):
    async def until_released(self, who: str) -> None: ...


class Guard(Protocol):
    async def check(self, who: str) -> str: ...


class Vault(Protocol):
    async def open(self, who: str) -> str: ...


class HoldService(Hold):
    async def until_released(self, who: str) -> None:
        gate = GATE.setdefault(who, asyncio.Event())
        await dasync.io(gate.wait())


class GuardService(Guard):
    """Suspended (not running) while it waits: its inputs are not queued behind a step."""

    def __init__(self, hold: Hold) -> None:
        self.hold = hold

    async def check(self, who: str) -> str:
        await self.hold.until_released(who)
        return "DENIED" if who == "bob" else "OPENED"


class VaultService(Vault):
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    async def open(self, who: str) -> str:
        return f"vault says {await self.guard.check(who)}"


@pytest.fixture(autouse=True)
def _gates():
    GATE.clear()
    yield
    GATE.clear()


def _reply(routine: str, seq: int, callee: str, payload: bytes, ok: bool = True) -> Message:
    """A reply as ``reply_message`` makes it, under an id of its own (no dedupe between
    the forgeries of one test)."""
    done = dasync._engine.Complete(0, ok, payload)
    message = _wire.reply_message(routine, seq, callee, done, b"")
    return dataclasses.replace(message, msg_id=f"forged-{next(_IDS)}")


_IDS = itertools.count()


async def _refused(rt: dasync.Runtime, queue: str, *words: str) -> str:
    async def found() -> bool:
        return any(all(w in r for w in words) for _, r in await dead_letters(rt, queue))

    await wait_until(found, within=10)
    return next(r for _, r in await dead_letters(rt, queue) if all(w in r for w in words))


async def _guard_running(rt: dasync.Runtime, who: str) -> None:
    await wait_until(lambda: who in GATE, within=10)


VAULT_CALL = child_id("r1", "Vault", "open", 1)
"""The routine id of Vault's call to Guard from routine r1: ``r1/Vault.open.1``."""


async def test_a_reply_from_a_service_that_was_not_called_is_refused(make_runtime):
    async with make_runtime([HoldService, GuardService, VaultService]) as rt:
        handle = await rt.client.start(Vault.open, "bob", routine_id="r1")
        await _guard_running(rt, "bob")
        forged = _reply("r1", 1, VAULT_CALL, b'"OPENED"')
        await publish_raw(rt, "Vault", forged, Origin.service("Intruder"))
        reason = await _refused(rt, "Vault", "Intruder", "which called Guard")
        assert "Refused" in reason
        # the right sender but another callee id: refused too
        other = _reply("r1", 1, "r1/Vault.open.9", b'"OPENED"')
        await publish_raw(rt, "Vault", other, Origin.service("Guard"))
        await _refused(rt, "Vault", "r1/Vault.open.9")
        # a client's "reply": refused
        await publish_raw(
            rt, "Vault", dataclasses.replace(forged, msg_id="c"), Origin.client("someone")
        )
        await _refused(rt, "Vault", "client someone")
        GATE["bob"].set()
        assert await handle.result(timeout=10) == "vault says DENIED"


async def test_a_forged_failure_reply_is_refused_before_it_is_decoded(make_runtime):
    async with make_runtime([HoldService, GuardService, VaultService]) as rt:
        handle = await rt.client.start(Vault.open, "bob", routine_id="r1")
        await _guard_running(rt, "bob")
        failure = encode_failure(SystemExit(7))
        forged = _reply("r1", 1, VAULT_CALL, failure, ok=False)
        await publish_raw(rt, "Vault", forged, Origin.service("Intruder"))
        await _refused(rt, "Vault", "Intruder")
        GATE["bob"].set()
        assert await handle.result(timeout=10) == "vault says DENIED"


async def test_a_caller_cannot_direct_a_result_to_another_routine(make_runtime):
    """Intruder calls Guard under the id of Vault's pending call, naming Vault's routine:
    refused, since an id ending in ``/Vault...`` is Vault's to use."""
    async with make_runtime([HoldService, GuardService, VaultService]) as rt:
        handle = await rt.client.start(Vault.open, "bob", routine_id="r1")
        await _guard_running(rt, "bob")
        forged = _wire.call_message(
            VAULT_CALL, "check", b'{"who":"alice"}', "r1", 1, msg_id="call:intruder-1"
        )
        await publish_raw(rt, "Guard", forged, Origin.service("Intruder"))
        reason = await _refused(rt, "Guard", "Intruder may start only the routines of its own")
        assert VAULT_CALL in reason
        # a client may not use a derived id either
        await publish_raw(
            rt, "Guard", dataclasses.replace(forged, msg_id="w"), Origin.client("web")
        )
        await _refused(rt, "Guard", "client web may not start")
        GATE["bob"].set()
        assert await handle.result(timeout=10) == "vault says DENIED"
        # the caller's own ids still work as always
        own = child_id("x1", "Intruder", "run", 1)
        call = _wire.call_message(own, "check", b'{"who":"eve"}', "x1", 1, msg_id="call:x1")
        GATE["eve"] = asyncio.Event()
        GATE["eve"].set()
        await publish_raw(rt, "Guard", call, Origin.service("Intruder"))
        await wait_until(lambda: _journal_done(rt, "Guard", own), within=10)


async def _journal_done(rt: dasync.Runtime, service: str, routine_id: str) -> bool:
    records = await steps(rt, service, routine_id)
    return bool(records) and records[-1].completion is not None


async def test_only_the_caller_or_an_operator_may_cancel(make_runtime):
    async with make_runtime([HoldService, GuardService, VaultService]) as rt:
        handle = await rt.client.start(Vault.open, "bob", routine_id="r1")
        await _guard_running(rt, "bob")
        cancel = _wire.cancel_message(VAULT_CALL, "forged-1")
        await publish_raw(rt, "Guard", cancel, Origin.service("Intruder"))
        reason = await _refused(rt, "Guard", "may not cancel", "started by service Vault")
        assert "Intruder" in reason
        again = _wire.cancel_message(VAULT_CALL, "forged-2")
        await publish_raw(rt, "Guard", again, Origin.client(rt.client.identity))
        await _refused(rt, "Guard", "may not cancel", f"client {rt.client.identity}")
        GATE["bob"].set()
        assert await handle.result(timeout=10) == "vault says DENIED"

        # an operator may cancel anything: its cancel is taken (journaled), not refused
        second = await rt.client.start(Vault.open, "carol", routine_id="r2")
        await _guard_running(rt, "carol")
        carol = child_id("r2", "Vault", "open", 1)
        await publish_raw(rt, "Guard", _wire.cancel_message(carol, "op-1"), Origin(Origin.OPERATOR))

        async def cancel_taken() -> bool:
            return any(
                isinstance(r.input, Cancel) and r.input.id == "op-1"
                for r in await steps(rt, "Guard", carol)
            )

        await wait_until(cancel_taken, within=10)
        GATE["carol"].set()
        # Hold finished before the cancel reached it, so Guard's await returns its result
        # (as with plain asyncio tasks: a cancel that the awaited task ignores is not raised)
        assert await second.result(timeout=10) == "vault says OPENED"
        assert not any("op-1" in r for _, r in await dead_letters(rt, "Guard"))


async def test_a_client_cannot_name_another_clients_inbox(make_runtime):
    async with make_runtime([HoldService, GuardService]) as rt:
        GATE["dave"] = asyncio.Event()
        GATE["dave"].set()
        start = _wire.call_message(
            "s1", "check", b'{"who":"dave"}', "Guard/s1", 0, msg_id="s1",
            reply_to="_inbox.victim.0123",
        )  # fmt: skip
        await publish_raw(rt, "Guard", start, Origin.client("attacker"))
        reason = await _refused(rt, "Guard", "not one of its inboxes")
        assert "_inbox.victim.0123" in reason
        assert not await rt.store.load("Guard", "s1")  # nothing ran


async def test_timers_and_retries_come_only_from_the_service_itself(make_runtime):
    async with make_runtime([HoldService, GuardService, VaultService]) as rt:
        handle = await rt.client.start(Vault.open, "bob", routine_id="r1")
        await _guard_running(rt, "bob")
        timer = Message(
            "timer:forged",
            {_wire.VERSION: _wire.WIRE_VERSION, _wire.KIND: "timer", _wire.ROUTINE: "r1",
             _wire.SEQ: "1"},
        )  # fmt: skip
        await publish_raw(rt, "Vault", timer, Origin.service("Guard"))
        await _refused(rt, "Vault", "sent a timer", "only Vault itself")
        GATE["bob"].set()
        assert await handle.result(timeout=10) == "vault says DENIED"


async def test_a_client_accepts_a_result_only_from_the_service_it_called(make_runtime, caplog):
    caplog.set_level(logging.WARNING, logger="dasync.client")
    async with make_runtime([HoldService, GuardService, VaultService]) as rt:
        handle = await rt.client.start(Guard.check, "bob", routine_id="g1")
        await _guard_running(rt, "bob")
        forged = _reply("Guard/g1", 0, "g1", b'"OPENED"')
        inbox = rt.client._inbox
        await rt.transport.send(inbox, forged, Origin.service("Vault"))
        # right service, wrong routine: refused as well
        await rt.transport.send(
            inbox, _reply("Guard/g1", 0, "g2", b'"OPENED"'), Origin.service("Guard")
        )
        for _ in range(500):  # both forgeries refused (not taken) before the real reply
            if sum("refused a reply" in r.getMessage() for r in caplog.records) >= 2:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the client did not refuse both forged replies")
        GATE["bob"].set()
        assert await handle.result(timeout=10) == "DENIED"


async def test_a_message_of_another_wire_version_is_refused_with_the_reason(make_runtime):
    async with make_runtime([HoldService, GuardService]) as rt:
        headers = {_wire.VERSION: "1", _wire.KIND: "start", _wire.ROUTINE: "old-1"}
        await publish_raw(rt, "Guard", Message("old-1", headers, b"{}"), Origin.client("web"))
        reason = await _refused(rt, "Guard", "wire format version 1")
        assert "reads version 2" in reason


async def test_a_predictable_message_id_cannot_swallow_a_real_call(make_runtime):
    """Junk published first under every id a caller's message could have had without a key
    (``call:<id>``, the client's ``start:<id>``) does not make the real call a duplicate."""
    async with make_runtime([HoldService, GuardService, VaultService]) as rt:
        GATE["frank"] = asyncio.Event()
        GATE["frank"].set()
        junk_ids = [f"call:{VAULT_CALL}", f"call:{child_id('r9', 'Vault', 'open', 1)}"]
        junk_ids += [f"reply:{child_id('r9', 'Vault', 'open', 1)}", "start:r9", "call:r9"]
        for junk_id in junk_ids:
            junk = Message(junk_id, {"x": "junk"}, b"\x00")
            await publish_raw(rt, "Guard", junk, Origin.client("attacker"))
            await publish_raw(rt, "Vault", junk, Origin.client("attacker"))
        assert await rt.client.proxy(Vault).open("frank") == "vault says OPENED"
        handle = await rt.client.start(Vault.open, "frank", routine_id="r9")
        assert await handle.result(timeout=10) == "vault says OPENED"
        await settled(rt)


def test_ids_of_calls_name_the_service_that_made_them():
    from dasync._engine import owner_of
    from dasync._engine._ids import MAX_ID_LENGTH

    assert owner_of("order-7") is None
    assert owner_of(child_id("order-7", "Shop", "place", 3)) == "Shop"
    deep = "x" * 150
    for _ in range(5):
        deep = child_id(deep, "Shop", "place", 12)
        assert len(deep) <= MAX_ID_LENGTH
        assert owner_of(deep) == "Shop" and deep.endswith("/Shop.place.12")
    long_method = child_id("r", "Shop", "m" * 300, 1)
    assert len(long_method) <= MAX_ID_LENGTH and owner_of(long_method) == "Shop"
    assert child_id(deep, "Shop", "a", 1) != child_id(deep + "y", "Shop", "a", 1)


def test_message_ids_carry_the_senders_key():
    a = _wire.message_id("call:r/Shop.place.1", b"k" * 32)
    b = _wire.message_id("call:r/Shop.place.1", b"j" * 32)
    assert a.startswith("call:r/Shop.place.1#") and a != b
    assert a == _wire.message_id("call:r/Shop.place.1", b"k" * 32)  # stable for re-sends
    assert _wire.client_start_id("r") != _wire.client_start_id("r")


async def test_a_call_naming_a_malformed_worker_lane_is_refused_with_the_reason(make_runtime):
    """``dasync-reply-at`` only routes a reply; a value that cannot be a lane is refused
    (named in the reason) and the worker goes on serving."""
    async with make_runtime([HoldService, GuardService, VaultService]) as rt:
        headers = {
            _wire.VERSION: _wire.WIRE_VERSION,
            _wire.KIND: "start",
            _wire.ROUTINE: "lane-1",
            _wire.METHOD: "check",
            _wire.REPLY_ROUTINE: "r1",
            _wire.REPLY_SEQ: "1",
            _wire.REPLY_AT: "../../other",
        }
        call = Message("lane-1", headers, b'["eve"]')
        await publish_raw(rt, "Guard", call, Origin.service("Vault"))
        reason = await _refused(rt, "Guard", "worker lane", "../../other")
        assert "lane-1" in reason
        GATE["gina"] = asyncio.Event()
        GATE["gina"].set()
        assert await rt.client.proxy(Vault).open("gina") == "vault says OPENED"
