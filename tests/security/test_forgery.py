"""Forgeries within a user's rights: the server or the receiver refuses every one.

A real nats-server runs with the users ``dasync nats-permissions`` generates for
``vault_services.py`` (plus ``--operator``); Guard, Vault and Mallory each run in
their own runtime under their own user, and a client runs under the client user.
Mallory is allowed to call Guard, as Vault is; it then uses everything its user
may publish to pass for Vault. Each forgery is published by a user over its own
connection, raw (``_deploy.forge``); it is refused by the server's permissions
(``PermissionDenied``) or by the worker or client that receives it, which says
why (``worker.stats.rejected``, the dead letters, the client's log), and the
legitimate call it targets completes with its real result.

A schedule may target any subject of its stream, so the transport takes a fired
message's sender from ``Nats-Scheduler`` (the subject the schedule was published
on, set by the server); two tests show a schedule cannot move a message onto
another lane. One documents what a user that may configure a stream can do,
which ``--provisioned`` takes away (test_permissions.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

import dasync
from dasync._engine import Complete, Start, child_id
from dasync._runtime import Client
from dasync._runtime._module import load_module
from dasync._runtime._wire import CANCEL_ID, call_message, cancel_message, reply_message
from dasync._topology import analyze_files
from dasync.transports import Message
from dasync.transports.nats import naming
from dasync.transports.nats._connection import ApiError, Connection, PermissionDenied
from dasync.transports.nats._dead import list_dead_letters, retry_dead_letter
from dasync.transports.nats._envelope import at_spec
from dasync.transports.nats._permissions import CLIENT_USER, OPERATOR_USER, permissions

from ._deploy import (
    VAULT,
    WAIT,
    Deployment,
    body,
    forge,
    password,
    pending_call,
    records,
    rejected,
    wait_for,
)

pytestmark = pytest.mark.timeout(90)


@dataclass
class Vaults:
    d: Deployment
    m: ModuleType
    guard: dasync.Runtime
    vault: dasync.Runtime
    mallory: dasync.Runtime
    client: Client
    as_mallory: Connection
    as_client: Connection
    as_guard: Connection

    async def start(self, routine_id: str, delay: float) -> Any:
        """Start Vault.open(routine_id, delay) as the client; Guard answers after ``delay``."""
        return await self.client.start(self.m.Vault.open, routine_id, delay, routine_id=routine_id)

    async def guard_runs(self, callee: str) -> None:
        await wait_for(lambda: records(self.guard.store, "Guard", callee), f"Guard runs {callee}")

    async def call_seq(self) -> int:
        """The sequence number of Vault.open's call to Guard (from a first, real run)."""
        handle = await self.start("warm", 0)
        assert await handle.result(WAIT) == "vault:checked warm"
        seq, callee = await pending_call(self.vault.store, "Vault", "warm")
        assert callee == child_id("warm", "Vault", "open", seq)
        return seq


@pytest.fixture
async def v(deploy: Any) -> Vaults:
    """Guard, Vault, Mallory and a client, each as its generated user (default mode:
    processes may declare their streams, only a provisioner may change one)."""
    return await _vaults(deploy, provisioned=True)


async def _vaults(deploy: Any, *, provisioned: bool) -> Vaults:
    users = permissions(analyze_files([VAULT]), operator=True, provisioned=provisioned)
    d: Deployment = deploy(users)
    m = load_module(VAULT)
    guard = await d.runtime("Guard", m.GuardService)
    vault = await d.runtime("Vault", m.VaultService)
    mallory = await d.runtime("Mallory", m.MalloryService)
    client = await d.client(CLIENT_USER)
    return Vaults(
        d,
        m,
        guard,
        vault,
        mallory,
        client,
        await d.raw("Mallory"),
        await d.raw(CLIENT_USER),
        await d.raw("Guard"),
    )


MALLORY_TO_GUARD = naming.call_subject("Guard", "Mallory")
CLIENT_TO_GUARD = naming.client_subject("Guard", CLIENT_USER)
CLIENT_TO_VAULT = naming.client_subject("Vault", CLIENT_USER)


def forged_reply(routine_id: str, seq: int, callee: str) -> Message:
    return reply_message(routine_id, seq, callee, Complete(0, True, body("forged")), b"")


def guard_call(routine_id: str, reply_routine: str, seq: int) -> Message:
    args = body({"item": "forged", "delay": 0})
    return call_message(routine_id, "check", args, reply_routine, seq, msg_id=f"call:{routine_id}")


# --- a. a call under another caller's id ------------------------------------------------------


async def test_a_call_naming_another_callers_routine_is_refused(v: Vaults) -> None:
    seq = await v.call_seq()
    # Mallory calls Guard first under the id Vault's call of routine a1 will have
    target = child_id("a1", "Vault", "open", seq)
    await forge(v.as_mallory, MALLORY_TO_GUARD, guard_call(target, "a1", seq))
    await wait_for(lambda: rejected(v.guard, target, "service Mallory may start only"), "refusal")
    # the real call, made afterwards under that very id, runs and gets Guard's answer
    handle = await v.start("a1", 0)
    assert await handle.result(WAIT) == "vault:checked a1"
    first = (await records(v.guard.store, "Guard", target))[0].input
    assert isinstance(first, Start) and first.meta["caller"] == "service:Vault"
    assert b"a1" in first.args

    # the client user may start Guard's routines, but neither under a call's id nor with
    # the result sent to another identity's inbox
    taken = child_id("a3", "Vault", "open", seq)
    await forge(v.as_client, CLIENT_TO_GUARD, guard_call(taken, "", 0))
    elsewhere = call_message(
        "a4",
        "check",
        body({"item": "forged", "delay": 0}),
        "Vault/a4",
        0,
        msg_id="start:a4",
        reply_to=v.vault.client._inbox,
    )
    await forge(v.as_client, CLIENT_TO_GUARD, elsewhere)
    await wait_for(lambda: rejected(v.guard, "ids with '/' are those of calls"), "refusal")
    await wait_for(lambda: rejected(v.guard, "which is not one of its inboxes"), "refusal")
    assert await records(v.guard.store, "Guard", "a4") == []

    # reply headers naming Vault's pending routine do not send Guard's answer to Vault: a
    # call of Mallory's own is answered on Mallory's lane, whatever its headers say
    pending = await v.start("a2", 1.0)
    seq2, _ = await pending_call(v.vault.store, "Vault", "a2")
    own = child_id("m1", "Mallory", "probe", 1)
    await forge(v.as_mallory, MALLORY_TO_GUARD, guard_call(own, "a2", seq2))

    async def answered() -> Any:
        steps = await records(v.guard.store, "Guard", own)
        return steps if steps and steps[-1].completion is not None else None

    steps = await wait_for(answered, "Guard answered Mallory's own call")
    start = steps[0].input
    assert isinstance(start, Start)
    assert start.meta["reply_to"] == "Mallory" and start.meta["caller"] == "service:Mallory"
    assert await pending.result(WAIT) == "vault:checked a2"
    replies = [r for r in await records(v.vault.store, "Vault", "a2") if r.input.key != "start"]
    assert [r.input.key for r in replies] == [f"reply:{seq2}"]


# --- b. a cancel of a routine another service started ----------------------------------------


async def test_b_cancel_from_anyone_but_the_caller_is_refused(v: Vaults) -> None:
    handle = await v.start("b1", 2.0)
    _, callee = await pending_call(v.vault.store, "Vault", "b1")
    await v.guard_runs(callee)
    await forge(v.as_mallory, MALLORY_TO_GUARD, cancel_message(callee, "s9"))
    await forge(v.as_client, CLIENT_TO_GUARD, cancel_message(callee, "c-forged"))
    await wait_for(
        lambda: len(rejected(v.guard, callee, "may not cancel")) == 2, "both cancels refused"
    )
    assert await handle.result(WAIT) == "vault:checked b1"
    # dead letters, with their reasons, for the operator
    op = await v.d.raw(OPERATOR_USER)
    reasons = [letter.reason for letter in await list_dead_letters(op, "Guard")]
    assert any("service Mallory may not cancel" in r for r in reasons), reasons
    assert any("client dasync-client may not cancel" in r for r in reasons), reasons


# --- c. replies from the wrong sender ----------------------------------------------------------


async def test_c_replies_from_anyone_but_the_callee_are_refused(
    v: Vaults, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dasync.client")
    handle = await v.start("c1", 2.0)
    seq, callee = await pending_call(v.vault.store, "Vault", "c1")
    fake = forged_reply("c1", seq, callee)
    # the client user: on its own lane of Vault, Vault refuses; on Guard's, the server does
    await forge(v.as_client, CLIENT_TO_VAULT, fake)
    with pytest.raises(PermissionDenied):
        await forge(v.as_client, naming.call_subject("Vault", "Guard"), fake)
    await wait_for(lambda: rejected(v.vault, "client dasync-client sent a reply"), "refusal")

    # services answering the client for Vault's routine: the client refuses them
    inbox = v.client._inbox
    answer = reply_message("Vault/c1", 0, "c1", Complete(0, True, body("forged")), b"")

    def to_client(who: str) -> Message:
        return Message(f"forged-by-{who}", answer.headers, answer.body)

    await forge(v.as_guard, naming.inbox_subject(inbox, "Guard"), to_client("Guard"))
    await forge(v.as_mallory, naming.inbox_subject(inbox, "Mallory"), to_client("Mallory"))
    with pytest.raises(PermissionDenied):  # as Vault: only Vault may
        await forge(v.as_guard, naming.inbox_subject(inbox, "Vault"), to_client("Vault"))

    def refusals() -> list[str]:
        return [r.getMessage() for r in caplog.records if "refused a reply" in r.getMessage()]

    await wait_for(lambda: len(refusals()) == 2, "the client refused both")
    assert "service Guard may not answer for 'Vault/c1'" in refusals()[0] + refusals()[1]
    assert await handle.result(WAIT) == "vault:checked c1"


# --- d. administering streams one does not own -------------------------------------------------


async def test_d_nobody_administers_a_stream_it_does_not_own(v: Vaults) -> None:
    client_inbox = naming.inbox_stream(CLIENT_USER)
    client_consumer = naming.inbox_consumer(v.client._inbox)
    vault_inbox = naming.inbox_stream("Vault")
    vault_consumer = naming.inbox_consumer(v.vault.client._inbox)
    events = naming.event_stream("Guard")
    group = naming.group_consumer("Guard.checked", "Vault.on_checked")
    config = {"name": "x", "subjects": ["dasync.x.>"]}
    as_vault = await v.d.raw("Vault")
    attempts = [
        (v.as_mallory, f"STREAM.UPDATE.{client_inbox}"),
        (v.as_mallory, f"STREAM.DELETE.{client_inbox}"),
        (v.as_mallory, f"STREAM.PURGE.{client_inbox}"),
        (v.as_mallory, f"CONSUMER.DELETE.{client_inbox}.{client_consumer}"),
        (v.as_mallory, f"CONSUMER.CREATE.{client_inbox}.{client_consumer}"),
        (v.as_mallory, "STREAM.UPDATE.DASYNC_Guard_WORK"),
        (v.as_mallory, "STREAM.DELETE.DASYNC_Guard_WORK"),
        (v.as_mallory, "STREAM.PURGE.DASYNC_Guard_WORK"),
        (v.as_mallory, "CONSUMER.DELETE.DASYNC_Guard_WORK.workers"),
        (v.as_mallory, "STREAM.UPDATE.DASYNC_Guard_JOURNAL"),
        (v.as_mallory, f"STREAM.UPDATE.{events}"),
        (v.as_mallory, f"STREAM.DELETE.{events}"),
        (v.as_mallory, "STREAM.DELETE.DASYNC_Mallory_WORK"),  # its own: no deleting either
        (v.as_client, "STREAM.UPDATE.DASYNC_Vault_WORK"),
        (v.as_client, "STREAM.DELETE.DASYNC_Vault_JOURNAL"),
        (v.as_client, "CONSUMER.DELETE.DASYNC_Vault_WORK.workers"),
        (v.as_client, f"STREAM.UPDATE.{vault_inbox}"),
        (v.as_client, f"CONSUMER.DELETE.{vault_inbox}.{vault_consumer}"),
        (v.as_client, f"STREAM.DELETE.{client_inbox}"),  # its own
        (as_vault, f"STREAM.UPDATE.{events}"),  # a subscriber of Guard's events
        (as_vault, f"STREAM.DELETE.{events}"),
        (as_vault, f"CONSUMER.DELETE.{events}.{group}"),
    ]

    async def attempt(conn: Connection, endpoint: str) -> BaseException | None:
        try:
            await conn.api(endpoint, {"stream_name": "x", "config": config, **config})
        except Exception as exc:
            return exc
        return None

    outcomes = await asyncio.gather(*(attempt(c, e) for c, e in attempts))
    for (_, endpoint), outcome in zip(attempts, outcomes, strict=True):
        assert isinstance(outcome, PermissionDenied), (endpoint, outcome)
    # a subscriber may create the publisher's stream if missing, which cannot change it
    republish = {"src": "dasync.Guard.event.checked", "dest": "dasync.Vault.in.svc.Guard"}
    with pytest.raises(ApiError, match="already in use"):
        await as_vault.api(
            f"STREAM.CREATE.{events}",
            {"name": events, "subjects": ["dasync.Guard.>"], "republish": republish},
        )
    info = await as_vault.api(f"STREAM.INFO.{events}")
    assert info["config"]["subjects"] == ["dasync.Guard.event.*"]
    assert "republish" not in info["config"]

    # and every client and service keeps working: call, reply, event, the client's inbox
    handle = await v.start("d1", 0)
    assert await handle.result(WAIT) == "vault:checked d1"
    seen = v.vault.instance_of(v.m.VaultService).seen
    await wait_for(lambda: "d1" in seen, "Vault handled Guard.checked")


# --- e. message ids taken in advance ----------------------------------------------------------


async def test_e_message_ids_taken_in_advance_lose_nothing(v: Vaults) -> None:
    seq = await v.call_seq()
    callee = child_id("e1", "Vault", "open", seq)
    # Mallory takes, in Guard's stream, every id Guard's inputs for e1's call would have
    # without a key: the call, its start, the reply forms, Guard's timers and retries
    in_guard = [
        f"call:{callee}",
        "start:e1",
        f"start:{callee}",
        f"reply:{callee}",
        f"cancel:{callee}:s{seq}",
        f"retry:{callee}:1",
        *(f"timer:{callee}:{n}" for n in range(6)),
    ]
    # the client user takes, in Vault's stream, the id of Guard's reply to Vault
    in_vault = [f"reply:{callee}", f"call:{callee}", "start:e1"]
    acks = [await forge(v.as_mallory, MALLORY_TO_GUARD, Message(i, {}, b"junk")) for i in in_guard]
    acks += [await forge(v.as_client, CLIENT_TO_VAULT, Message(i, {}, b"junk")) for i in in_vault]
    assert not [a for a in acks if a.duplicate]
    # the ids are within the window: the same id again is dropped (what a key prevents)
    again = await forge(v.as_mallory, MALLORY_TO_GUARD, Message(in_guard[0], {}, b"junk"))
    assert again.duplicate

    handle = await v.start("e1", 0.3)  # Guard sleeps: a timer of its own
    assert await handle.result(WAIT) == "vault:checked e1"
    await wait_for(
        lambda: len(rejected(v.guard, "dasync-kind")) >= len(in_guard), "junk set aside (Guard)"
    )
    await wait_for(
        lambda: len(rejected(v.vault, "dasync-kind")) >= len(in_vault), "junk set aside (Vault)"
    )


# --- the sender of a scheduled message ---------------------------------------------------------
#
# A schedule published on a lane of a work stream may name any other lane of that stream as
# its target. While the service's workers consume, they take the schedule message itself
# (it is on a lane they read: refused as its publisher's) before it is due, and the work
# queue forgets it; while they are down (a deploy, a crash) or busy, it fires, and the
# message it produces arrives on the target lane with ``Nats-Scheduler`` naming the lane it
# was really published on (the server refuses that header from clients, and purges the
# schedule once fired). These tests stop the receiver, let the schedule fire (seen by the
# operator), start the receiver again, and expect the fired message refused as its
# publisher's and the real call answered.


async def _fired(op: Connection, stream: str, subject: str) -> bool:
    try:
        await op.api(f"STREAM.MSG.GET.{stream}", {"last_by_subj": subject})
    except ApiError:
        return False
    return True


async def test_a_schedule_cannot_move_a_cancel_onto_the_callers_lane(v: Vaults) -> None:
    op = await v.d.raw(OPERATOR_USER)
    handle = await v.start("s1", 3.0)
    _, callee = await pending_call(v.vault.store, "Vault", "s1")
    await v.guard_runs(callee)
    await v.guard.close()  # Guard's workers are down; its timer waits on the server
    target = naming.call_subject("Guard", "Vault")
    await forge(
        v.as_mallory,
        MALLORY_TO_GUARD,
        cancel_message(callee, "s77"),
        Nats_Schedule=at_spec(time.time() + 0.2),
        Nats_Schedule_Target=target,
    )
    await wait_for(lambda: _fired(op, "DASYNC_Guard_WORK", target), "the schedule fired")
    guard = await v.d.runtime("Guard", v.m.GuardService)
    try:
        result = await handle.result(WAIT)
    except asyncio.CancelledError:
        result = "cancelled by the forged cancel"
    assert result == "vault:checked s1"
    assert rejected(guard, callee, "Mallory may not cancel")  # as who published the schedule
    # and its dead letter keeps Mallory's lane, so that retrying it does not make it Vault's
    letters = [
        x for x in await list_dead_letters(op, "Guard") if x.message.headers.get(CANCEL_ID) == "s77"
    ]
    assert letters and {x.subject for x in letters} == {MALLORY_TO_GUARD}


async def test_a_schedule_cannot_move_a_reply_onto_the_callees_lane(v: Vaults) -> None:
    op = await v.d.raw(OPERATOR_USER)
    handle = await v.start("s2", 3.0)
    seq, callee = await pending_call(v.vault.store, "Vault", "s2")
    await v.vault.close()
    target = naming.call_subject("Vault", "Guard")
    await forge(
        v.as_client,
        CLIENT_TO_VAULT,
        forged_reply("s2", seq, callee),
        Nats_Schedule=at_spec(time.time() + 0.2),
        Nats_Schedule_Target=target,
    )
    await wait_for(lambda: _fired(op, "DASYNC_Vault_WORK", target), "the schedule fired")
    vault = await v.d.runtime("Vault", v.m.VaultService)
    assert await handle.result(WAIT) == "vault:checked s2"
    assert rejected(vault, "client dasync-client sent a reply")


# --- what a stream admin can do (self-provisioning mode) ---------------------------------------


async def test_by_default_no_service_may_configure_a_stream(v: Vaults) -> None:
    """The republish below needs a stream update: the default permissions refuse it."""
    state = naming.state_stream("Mallory")
    config = (await v.as_mallory.api(f"STREAM.INFO.{state}"))["config"]
    config["republish"] = {"src": "dasync.Mallory.state.forge", "dest": "dasync.Vault.in.>"}
    with pytest.raises(PermissionDenied):
        await v.as_mallory.api(f"STREAM.UPDATE.{state}", config)


async def test_a_user_that_may_configure_a_stream_can_republish_onto_any_lane(
    deploy: Any,
) -> None:
    """The limit of ``--self-provisioned``, as docs/security.md states it: a service may
    update its own streams, and a stream may republish what it stores onto any subject, so
    Mallory answers Vault as Guard. The default permissions take the right away (above)."""
    v = await _vaults(deploy, provisioned=False)
    handle = await v.start("r1", 2.0)
    seq, callee = await pending_call(v.vault.store, "Vault", "r1")
    state = naming.state_stream("Mallory")
    config = (await v.as_mallory.api(f"STREAM.INFO.{state}"))["config"]
    config["republish"] = {
        "src": "dasync.Mallory.state.forge",
        "dest": naming.call_subject("Vault", "Guard"),
    }
    await v.as_mallory.api(f"STREAM.UPDATE.{state}", config)
    await forge(v.as_mallory, "dasync.Mallory.state.forge", forged_reply("r1", seq, callee))
    assert await handle.result(WAIT) == "vault:forged"


async def test_a_push_consumer_cannot_deliver_onto_a_lane(v: Vaults) -> None:
    """A user may create consumers on its own inbox stream, and a consumer may push what
    its stream holds to any subject: the server delivers only where a subscription listens
    (as the control shows), which a stream is not, so nothing reaches Vault's lane."""
    handle = await v.start("p1", 2.0)
    seq, callee = await pending_call(v.vault.store, "Vault", "p1")
    stream = naming.inbox_stream("Mallory")
    listening = await v.as_mallory.subscribe(f"{v.d.users['Mallory']['inbox_prefix']}.push")
    for name, inbox, target in (
        ("lane", "x", naming.call_subject("Vault", "Guard")),
        ("control", "y", listening.subject),
    ):
        config = {
            "durable_name": name,
            "name": name,
            "deliver_subject": target,
            "ack_policy": "explicit",
            "filter_subject": f"dasync._inbox.Mallory.{inbox}.*",
        }
        await v.as_mallory.api(
            f"CONSUMER.CREATE.{stream}.{name}", {"stream_name": stream, "config": config}
        )
        # Mallory may write into its own inbox stream (as a service answering a client)
        fake = forged_reply("p1", seq, callee)
        subject = f"dasync._inbox.Mallory.{inbox}.Mallory"
        await forge(v.as_mallory, subject, Message(f"push-{name}", fake.headers, fake.body))
    pushed = await listening.get(WAIT)
    assert pushed is not None and b"forged" in getattr(pushed, "data", b"")
    assert await handle.result(WAIT) == "vault:checked p1"


# --- the operator --------------------------------------------------------------------------------


async def test_operator_cancels_and_manages_dead_letters(v: Vaults) -> None:
    op = await v.d.raw(OPERATOR_USER)
    target = "x/Vault.open.1"
    await forge(v.as_mallory, MALLORY_TO_GUARD, guard_call(target, "x", 1))
    await wait_for(lambda: rejected(v.guard, target), "Guard refused Mallory's call")

    async def letter() -> Any:
        found = [x for x in await list_dead_letters(op, "Guard") if target in str(x.message)]
        return found[0] if found else None

    dead = await wait_for(letter, "the dead letter")
    assert dead.subject == MALLORY_TO_GUARD and "may start only" in dead.reason
    # retried: back on the lane it came from, so it is Mallory's again, and refused again
    before = len(rejected(v.guard, target))
    await retry_dead_letter(op, "Guard", dead.id)
    await wait_for(lambda: len(rejected(v.guard, target)) > before, "refused again")

    # 'dasync dead-letters' as the operator lists them, with the reason
    user = v.d.users[OPERATOR_USER]
    env = {k: val for k, val in os.environ.items() if not k.startswith("DASYNC_NATS_")}
    env.update(user["environment"], DASYNC_NATS_PASSWORD=password(user["user"]))
    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "dasync", "dead-letters", "Guard", "--nats", v.d.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert target in listed.stdout and "may start only" in listed.stdout

    # an operator may cancel any routine (its own lane)
    handle = await v.start("o1", 5.0)
    _, callee = await pending_call(v.vault.store, "Vault", "o1")
    await v.guard_runs(callee)
    await forge(op, naming.operator_subject("Guard"), cancel_message(callee, "c-operator"))
    with pytest.raises(asyncio.CancelledError):
        await handle.result(WAIT)
