"""Generated permissions: each process runs under its own NATS user, locked to its lanes.

``dasync nats-permissions`` produces the users; the server runs with exactly that
output as its ``authorization`` block. Each service runs in its own runtime
under its own user, with the inbox prefix and client identity printed for it:
the whole workflow (call, reply, timer, event, client start and result) completes
with no request refused, and each user is refused what its role does not need.
The forgeries a user may still attempt within its rights are in test_forgery.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import dasync
from dasync import TransportError
from dasync._runtime._module import load_module
from dasync._runtime._retention import purge
from dasync._topology import analyze_files
from dasync.cli._permissions import add_parser
from dasync.transports import Message
from dasync.transports.nats import naming
from dasync.transports.nats._connection import ApiError, Connection, PermissionDenied
from dasync.transports.nats._permissions import (
    CLIENT_USER,
    OPERATOR_USER,
    PROVISIONER_USER,
    combine,
    identity_for,
    permissions,
    provision,
    service_users,
)
from dasync.transports.nats._provision import Provisioner

from ._deploy import SHOP, VAULT, WAIT, forge, options_for, password, wait_for

pytestmark = pytest.mark.timeout(90)

LANE = "0123456789abcdef"
"""A worker lane of some other worker."""


def cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    parser = argparse.ArgumentParser(prog="dasync")
    add_parser(parser.add_subparsers(), [])
    args = parser.parse_args(["nats-permissions", *argv])
    capsys.readouterr()
    assert args.handler(args) == 0
    return capsys.readouterr().out


def denials(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the server refused this test's connections (dasync logs every refusal)."""
    return [r.getMessage() for r in caplog.records if "NATS denied" in r.getMessage()]


# --- the rules themselves -------------------------------------------------------------------


def test_rules_follow_the_calls_events_and_lanes() -> None:
    users = {u.user: u for u in permissions(analyze_files([SHOP]), operator=True)}
    orders, billing = users["Orders"], users["Billing"]
    client, operator = users[CLIENT_USER], users[OPERATOR_USER]

    # Orders calls Billing on its own lane of Billing's queue and starts its calls on its own
    # subjects of Billing's starts stream, and nothing else of Billing's
    assert "dasync.Billing.in.svc.Orders" in orders.publish_allow
    assert "dasync.Billing.start.Orders.*" in orders.publish_allow
    assert "dasync.Orders.journal.*" in orders.publish_allow
    assert [s for s in orders.publish_allow if s.startswith("dasync.Billing.")] == [
        "dasync.Billing.in.svc.Orders",
        "dasync.Billing.start.Orders.*",
    ]
    assert "$JS.API.STREAM.INFO.DASYNC_Billing_STARTS" in orders.publish_allow
    assert not [s for s in orders.publish_allow if "DASYNC_Billing_STARTS" in s and "INFO" not in s]
    # its own starts stream: its calls through self, its workers' consumer, the retention
    assert {
        "dasync.Orders.start.Orders.*",
        "$JS.API.CONSUMER.MSG.NEXT.DASYNC_Orders_STARTS.workers",
        "$JS.ACK.DASYNC_Orders_STARTS.workers.>",
        "$JS.API.STREAM.PURGE.DASYNC_Orders_STARTS",
    } <= set(orders.publish_allow)
    assert not [s for s in billing.publish_allow if ".start." in s and ".Billing." not in s]
    # it handles Billing.charged: creates the stream if missing, never changes it
    assert "$JS.API.STREAM.CREATE.DASYNC_Billing_EVENTS" in orders.publish_allow
    assert "$JS.API.STREAM.UPDATE.DASYNC_Billing_EVENTS" not in orders.publish_allow
    assert "$JS.API.CONSUMER.MSG.NEXT.DASYNC_Billing_EVENTS.Orders__on_charged__charged" in (
        orders.publish_allow
    )
    # replies: Billing answers Orders on Orders' svc.Billing lane (shared, or the lane of
    # the worker of Orders that called), clients as itself
    assert [s for s in billing.publish_allow if "Orders" in s] == [
        "dasync.Orders.in.svc.Billing",
        "dasync.Orders.at.*.svc.Billing",
        "$JS.API.STREAM.INFO.DASYNC_Orders_WORK",
    ]
    # its own worker lanes: timers, a consumer per worker, presence; nobody else's
    assert {"dasync.Billing.at.*.work", "dasync.Billing.alive.*"} <= set(billing.publish_allow)
    assert not [s for s in orders.publish_allow if s.startswith("dasync.Billing.at.")]
    assert billing.subscribe_allow == ["_INBOX_Billing.>", "dasync.Billing.alive.*"]
    assert "dasync._inbox.*.*.Billing" in billing.publish_allow
    assert "dasync.Billing.event.charged" in billing.publish_allow
    # by default nobody but the provisioner changes a stream, its own included
    assert "$JS.API.STREAM.CREATE.DASYNC_Billing_EVENTS" in billing.publish_allow
    assert not any(".STREAM.UPDATE." in s for u in users.values() if u.role != "provisioner"
                   for s in u.publish_allow)  # fmt: skip
    provisioner = users["dasync-provisioner"]
    assert "$JS.API.STREAM.UPDATE.DASYNC_Billing_EVENTS" in provisioner.publish_allow
    own = {u.user: u for u in permissions(analyze_files([SHOP]), provisioned=False)}
    assert "$JS.API.STREAM.UPDATE.DASYNC_Billing_EVENTS" in own["Billing"].publish_allow
    # every user administers its own identity's inbox stream, no other (the provisioner
    # creates them all, and has no client of its own)
    for user in users.values():
        if user.role == "provisioner":
            continue
        inboxes = {t for s in user.publish_allow for t in s.split(".") if "__INBOX_" in t}
        assert inboxes == {f"DASYNC__INBOX_{user.identity}"}, user.user
        assert not [s for s in user.publish_allow if "STREAM.DELETE" in s]
        assert not [s for s in user.publish_allow if s in (">", "$JS.API.>", "dasync.>")]
        presence = [f"dasync.{name}.alive.*" for name in user.services]
        assert user.subscribe_allow == [f"{user.inbox_prefix}.>", *presence]
    # the client starts on its own lane, reads journals, never writes them nor fires events
    assert {"dasync.Orders.in.client.dasync-client", "dasync.Billing.in.client.dasync-client"} <= (
        set(client.publish_allow)
    )
    assert not [s for s in client.publish_allow if ".journal." in s or ".event." in s]
    assert not [s for s in client.publish_allow if "UPDATE" in s and "INBOX" not in s]
    # the operator: every lane of every service (documented), journals, dead letters, and
    # the starts of the routines it purges (but it starts nothing there)
    assert "dasync.Billing.in.>" in operator.publish_allow
    assert "$JS.API.STREAM.PURGE.DASYNC_Billing_STARTS" in operator.publish_allow
    assert not [s for u in (client, operator) for s in u.publish_allow if ".start." in s]
    assert "$JS.API.STREAM.MSG.DELETE.DASYNC_Billing_WORK" in operator.publish_allow
    assert not [s for s in operator.publish_allow if "STATE" in s or ".journal." in s]
    assert len({u.identity for u in users.values()}) == len(
        {u.inbox_prefix for u in users.values()}
    )
    assert len({u.inbox_prefix for u in users.values()}) == len(users)


def test_identities_are_valid_and_distinct() -> None:
    assert identity_for("Billing") == "Billing"
    assert identity_for("prod/dasync-client") == "dasync-client"
    for odd in ("_Private", "dasync-run-my folder-x", "-x", "a" * 80, "prod/ü"):
        identity = identity_for(odd)
        assert naming.token(identity) == identity and identity[0].isalnum(), odd
        assert len(identity) <= 64
    uses = analyze_files([SHOP])
    clash = [u.__class__(**{**u.__dict__, "name": CLIENT_USER}) for u in uses[:1]]
    with pytest.raises(ValueError, match="same user"):
        permissions(clash)


def test_namespace_shared_inbox_combined_and_provisioned() -> None:
    uses = analyze_files([SHOP])
    users = permissions(uses, namespace="prod", shared_inbox=True)
    billing = next(u for u in users if u.user == "prod/Billing")
    assert billing.identity == "Billing"
    assert "dasync-prod.Orders.in.svc.Billing" in billing.publish_allow
    assert "dasync-prod._inbox.*.*.Billing" in billing.publish_allow
    assert "$JS.API.STREAM.CREATE.DASYNC-prod_Billing_WORK" in billing.publish_allow
    assert "$JS.API.STREAM.CREATE.DASYNC-prod__INBOX_Billing" in billing.publish_allow
    assert billing.subscribe_allow == ["_INBOX.>", "dasync-prod.Billing.alive.*"]

    per_service = service_users(uses)
    process = combine(per_service, "dasync-run-shop")
    assert process.services == ("Billing", "Orders")
    assert process.identity == "dasync-run-shop"
    assert process.subscribe_allow == [
        "_INBOX_dasync-run-shop.>", "dasync.Billing.alive.*", "dasync.Orders.alive.*"
    ]  # fmt: skip
    # the services' rules, with the process's own inbox stream instead of theirs
    own = {s for u in per_service for s in u.publish_allow if "INBOX_" not in s}
    assert own <= set(process.publish_allow)
    assert {s for s in process.publish_allow if "__INBOX_" in s} == {
        s.replace("DASYNC__INBOX_Billing", "DASYNC__INBOX_dasync-run-shop")
        for s in per_service[0].publish_allow
        if "__INBOX_" in s
    }

    hardened = {u.user: u for u in permissions(uses, provisioned=True)}
    for name, user in hardened.items():
        updates = [s for s in user.publish_allow if "STREAM.UPDATE" in s]
        assert (name == PROVISIONER_USER) == bool(updates), name
    assert all(r.startswith("$JS.API.STREAM.") for r in hardened[PROVISIONER_USER].publish_allow)
    assert set(hardened[PROVISIONER_USER].publish_allow) >= {
        f"$JS.API.STREAM.UPDATE.DASYNC__INBOX_{u.identity}"
        for u in hardened.values()
        if u.user != PROVISIONER_USER
    }


def test_json_format_names_prefix_and_identity(capsys: pytest.CaptureFixture[str]) -> None:
    users = json.loads(cli(str(SHOP), "--format", "json", "--operator", capsys=capsys))
    assert [u["user"] for u in users] == [
        "Billing", "Orders", CLIENT_USER, OPERATOR_USER, "dasync-provisioner"
    ]  # fmt: skip
    orders = users[1]
    assert orders["inbox_prefix"] == "_INBOX_Orders"
    assert orders["identity"] == "Orders"
    assert orders["environment"] == {
        "DASYNC_NATS_USER": "Orders",
        "DASYNC_NATS_INBOX_PREFIX": "_INBOX_Orders",
        "DASYNC_NATS_IDENTITY": "Orders",
    }
    assert "dasync.Billing.in.svc.Orders" in orders["permissions"]["publish"]["allow"]
    assert orders["permissions"]["subscribe"]["allow"] == [
        "_INBOX_Orders.>", "dasync.Orders.alive.*"
    ]  # fmt: skip
    text = cli(str(SHOP), capsys=capsys)
    assert "# client identity: Orders" in text
    assert "DASYNC_NATS_IDENTITY=dasync-client" in text
    assert "dasync-operator" not in text  # only with --operator


# --- against a server configured with the generated users ------------------------------------


@pytest.mark.parametrize("namespace", ["", "prod"])
async def test_workflow_completes_under_the_generated_users(
    deploy: Any,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    namespace: str,
) -> None:
    """The CLI's output, verbatim, as the server's users: call, reply, timer, event, client."""
    caplog.set_level(logging.ERROR, logger="dasync.nats")
    ns = ["--namespace", namespace] if namespace else []
    generated = cli(str(SHOP), *ns, capsys=capsys)
    users = permissions(analyze_files([SHOP]), namespace=namespace)
    assert [u.to_json() for u in users] == json.loads(
        cli(str(SHOP), *ns, "--format", "json", capsys=capsys)
    )
    d = deploy(users, generated, namespace=namespace)
    module = load_module(SHOP)
    billing = await d.runtime(
        f"{namespace}/Billing" if namespace else "Billing", module.BillingService
    )
    orders = await d.runtime(f"{namespace}/Orders" if namespace else "Orders", module.OrderService)
    client = await d.client(f"{namespace}/{CLIENT_USER}" if namespace else CLIENT_USER)
    assert client.identity == CLIENT_USER

    result = await client.proxy(module.Orders).place("o1", 5)
    assert result == "receipt-o1"
    handler = orders.instance_of(module.OrderService)
    await wait_for(lambda: "o1:5" in handler.charges, "Orders handled Billing.charged")
    # a routine started elsewhere: the client reads its result from the journal
    handle = await client.start(module.Orders.place, "o2", 7, routine_id="order-o2")
    other = client.handle(module.Orders.place, "order-o2")
    assert await asyncio.wait_for(other.result(), WAIT) == "receipt-o2"
    assert await handle.result(WAIT) == "receipt-o2"
    assert billing.worker.stats.rejected == [] and orders.worker.stats.rejected == []
    assert denials(caplog) == []  # no request of any process was refused
    # Orders' calls were started in Billing's starts stream (not on its lane, as a caller
    # whose permissions lack the starts stream would)
    as_billing = await d.raw(f"{namespace}/Billing" if namespace else "Billing")
    info = await as_billing.api(f"STREAM.INFO.{naming.starts_stream('Billing', namespace)}")
    assert info["state"]["messages"] == 2, info["state"]


async def test_external_events_are_fired_through_their_service_under_the_generated_users(
    deploy: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A client and another service may not publish Billing's events, but may ask Billing to
    fire its ExternalEvent; Billing publishes it and Orders handles it once per fire."""
    caplog.set_level(logging.ERROR, logger="dasync.nats")
    d = deploy(permissions(analyze_files([SHOP])))
    module = load_module(SHOP)
    billing = await d.runtime("Billing", module.BillingService)
    orders = await d.runtime("Orders", module.OrderService)
    client = await d.client(CLIENT_USER)
    await client.proxy(module.Billing).disputed("o1:by-client")
    assert await client.proxy(module.Orders).dispute("o2") == "o2"
    handler = orders.instance_of(module.OrderService)
    await wait_for(lambda: len(handler.disputes) == 2, "Orders handled both disputes")
    assert sorted(handler.disputes) == ["o1:by-client", "o2:by-orders"]
    assert billing.worker.stats.rejected == [] and orders.worker.stats.rejected == []
    assert denials(caplog) == []
    raw = await d.raw(CLIENT_USER)
    with pytest.raises(PermissionDenied):  # publishing the event itself stays refused
        await raw.publish(naming.event_subject("Billing.disputed"), b'"forged"',
                          {"Nats-Msg-Id": "forged-dispute"})  # fmt: skip


async def test_nats_provision_creates_every_stream_before_the_services_start(
    deploy: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """``dasync nats-provision`` as the provisioner (the generated users, verbatim), then
    the services start as their users, which may not change any stream, and run."""
    caplog.set_level(logging.ERROR, logger="dasync.nats")
    users = json.loads(cli(str(SHOP), "--format", "json", capsys=capsys))
    d = deploy(users, cli(str(SHOP), capsys=capsys))
    provisioner = await d.raw("dasync-provisioner")
    with pytest.raises(ApiError):  # nothing exists yet
        await provisioner.api("STREAM.INFO.DASYNC_Billing_WORK")
    as_user = {u["user"]: u["environment"] for u in users}  # as the generated conf says
    env = {
        **os.environ,
        **as_user["dasync-provisioner"],
        "DASYNC_NATS_URL": d.url,
        "DASYNC_NATS_PASSWORD": password("dasync-provisioner"),
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "dasync", "nats-provision", str(SHOP)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    made = set(done.stdout.split()) & {
        "DASYNC_Billing_WORK", "DASYNC_Orders_JOURNAL", "DASYNC_Billing_EVENTS",
        "DASYNC__INBOX_dasync-client", "DASYNC__INBOX_Orders", "DASYNC_Orders_STATE",
    }  # fmt: skip
    assert len(made) == 6, done.stdout
    module = load_module(SHOP)
    await d.runtime("Billing", module.BillingService)
    orders = await d.runtime("Orders", module.OrderService)
    client = await d.client(CLIENT_USER)
    assert await client.proxy(module.Orders).place("p1", 3) == "receipt-p1"
    assert orders.worker.stats.rejected == []
    assert denials(caplog) == []
    # as a wrong user it fails in one line
    env.update(as_user["Billing"], DASYNC_NATS_PASSWORD=password("Billing"))
    refused = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "dasync", "nats-provision", str(SHOP), "--self-provisioned"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 3, refused.stderr
    assert "Traceback" not in refused.stderr and "cannot provision" in refused.stderr


@pytest.mark.parametrize("provisioned", [True, False], ids=["provisioned", "self-provisioned"])
async def test_services_start_in_any_order_under_the_generated_users(
    deploy: Any, caplog: pytest.LogCaptureFixture, provisioned: bool
) -> None:
    """The client calls Orders before any worker runs, Orders calls Billing before Billing
    runs: both calls wait in their queues and complete once the workers start."""
    caplog.set_level(logging.ERROR, logger="dasync.nats")
    uses = analyze_files([SHOP])
    users = permissions(uses, provisioned=provisioned)
    d = deploy(users)
    if provisioned:
        identities = [u.identity for u in users if u.role != "provisioner"]
        await provision(d.options("dasync-provisioner"), uses, identities)
    module = load_module(SHOP)
    client = await d.client(CLIENT_USER)
    placed = asyncio.ensure_future(client.proxy(module.Orders).place("late-1", 4))
    as_client, as_orders = await d.raw(CLIENT_USER), await d.raw("Orders")

    def queued(conn: Any, stream: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            try:
                info = await conn.api(f"STREAM.INFO.{stream}")
            except ApiError:
                return False
            return int(info["state"]["messages"]) >= 1

        return check

    started = naming.work_stream("Orders")  # a client's start: on its lane
    await wait_for(queued(as_client, started), "the start waiting in Orders' queue")
    await d.runtime("Orders", module.OrderService)  # Billing is still not running
    called = naming.starts_stream("Billing")  # a service's call: in the callee's starts
    await wait_for(queued(as_orders, called), "Orders' call waiting in Billing's starts")
    assert not placed.done()
    await d.runtime("Billing", module.BillingService)
    assert await asyncio.wait_for(placed, WAIT) == "receipt-late-1"
    assert denials(caplog) == []


async def test_each_role_is_refused_what_it_does_not_need(deploy: Any) -> None:
    d = deploy(permissions(analyze_files([SHOP]), operator=True))
    module = load_module(SHOP)
    await d.runtime("Billing", module.BillingService)
    await d.runtime("Orders", module.OrderService)
    billing, client = await d.raw("Billing"), await d.raw(CLIENT_USER)
    operator = await d.raw(OPERATOR_USER)

    refused = [
        # Billing: Orders' journal, Orders' own lane, a service it does not talk to, Orders'
        # consumer, the operator lane, a client's start lane, Orders' events stream
        (billing, naming.journal_subject("Orders", "o1")),
        (billing, naming.work_subject("Orders")),
        (billing, naming.call_subject("Shipping", "Billing")),
        (billing, "$JS.API.CONSUMER.MSG.NEXT.DASYNC_Orders_WORK.workers"),
        (billing, naming.operator_subject("Orders")),
        (billing, naming.client_subject("Orders", "Billing")),
        (billing, "dasync._inbox.dasync-client.x.Orders"),  # answering as another service
        # ... nor on a worker lane of Orders: its own, as another sender, pulling one
        (billing, naming.lane_subject(naming.work_subject("Orders"), LANE)),
        (billing, naming.lane_subject(naming.call_subject("Orders", "Shipping"), LANE)),
        (billing, f"$JS.API.CONSUMER.MSG.NEXT.DASYNC_Orders_WORK.{naming.lane_consumer(LANE)}"),
        (billing, naming.alive_subject("Orders", LANE)),
        # the client: a service's lane, another client's lane, events, journals, state
        (client, naming.call_subject("Orders", "Billing")),
        (client, naming.client_subject("Orders", "someone-else")),
        (client, naming.lane_subject(naming.call_subject("Orders", "Billing"), LANE)),
        (client, "dasync.Billing.event.charged"),
        (client, naming.journal_subject("Orders", "o1")),
        (client, "$JS.API.DIRECT.GET.DASYNC_Orders_STATE.dasync.Orders.state.secret"),
        # the operator: journals, the services' keys, answering clients
        (operator, naming.journal_subject("Orders", "o1")),
        (operator, "$JS.API.DIRECT.GET.DASYNC_Orders_STATE.dasync.Orders.state.secret"),
        (operator, "dasync._inbox.dasync-client.x.Orders"),
    ]

    async def attempt(conn: Connection, subject: str) -> BaseException | None:
        try:
            await conn.publish(subject, b'"forged"', {"Nats-Msg-Id": f"forged-{subject}"})
        except TransportError as exc:
            return exc
        return None

    loop = asyncio.get_running_loop()
    began = loop.time()
    outcomes = await asyncio.gather(*(attempt(c, s) for c, s in refused))
    for (_, subject), outcome in zip(refused, outcomes, strict=True):
        assert isinstance(outcome, PermissionDenied), (subject, outcome)
    # refused as soon as the server says so, not when the request would time out
    assert loop.time() - began < billing.options.request_timeout / 2

    # nor listen to another user's inbox (where its pulled messages arrive), nor pretend to
    # be a worker of another service (so that its lane is never taken over)
    for subject in (f"{d.users['Orders']['inbox_prefix']}.>", naming.alive_subject("Orders", LANE)):
        spy = await d.raw("Billing")
        await spy.subscribe(subject)
        await wait_for(lambda s=spy: s.denial(None) is not None, f"the server refused {subject}")


async def test_only_the_caller_publishes_the_starts_of_its_calls(deploy: Any) -> None:
    """Vault calls Guard, so it may store the start of a call in Guard's starts stream,
    on its own subjects there only: not as Mallory (who calls Guard too), nor as Guard in
    its own stream; a client starts on its client lane, never in a starts stream."""
    d = deploy(permissions(analyze_files([VAULT])))
    provisioner = await d.raw(PROVISIONER_USER)
    await Provisioner(provisioner).starts("Guard")  # the one stream this test needs
    await Provisioner(provisioner).starts("Vault")
    vault, mallory, client = await d.raw("Vault"), await d.raw("Mallory"), await d.raw(CLIENT_USER)
    stream = naming.starts_stream("Guard")

    subject = naming.start_subject("Guard", "Vault", "x/Vault.m.1")
    ack = await forge(vault, subject, Message("start-vault-1", {}, b"[]"))
    assert (ack.stream, ack.duplicate) == (stream, False)

    refused = [
        (vault, naming.start_subject("Guard", "Mallory", "x/Mallory.m.1")),  # as another caller
        (mallory, naming.start_subject("Guard", "Vault", "x/Vault.m.2")),
        (vault, naming.start_subject("Vault", "Guard", "x/Guard.m.1")),  # as its callee
        *(
            (client, naming.start_subject(service, sender, routine))
            for service, sender, routine in (
                ("Guard", CLIENT_USER, "c1"),
                ("Guard", "Vault", "x/Vault.m.3"),
                ("Guard", "Guard", "x/Guard.m.2"),
                ("Vault", "Vault", "x/Vault.m.4"),
            )
        ),
    ]
    outcomes = await asyncio.gather(
        *(forge(c, s, Message(f"forged-{i}", {}, b"[]")) for i, (c, s) in enumerate(refused)),
        return_exceptions=True,
    )
    for (_, forged), outcome in zip(refused, outcomes, strict=True):
        assert isinstance(outcome, PermissionDenied), (forged, outcome)
    info = await provisioner.api(f"STREAM.INFO.{stream}")
    assert info["state"]["messages"] == 1  # Vault's start, and nothing of the refused ones


async def test_journal_retention_is_each_services_own_and_the_operators(deploy: Any) -> None:
    """A worker's retention pass and ``dasync purge`` as the operator run under the
    generated users; no other service or client may purge a journal or drop a note."""
    d = deploy(permissions(analyze_files([SHOP]), operator=True))
    module = load_module(SHOP)
    await d.runtime("Billing", module.BillingService, retention=None)
    orders = await d.runtime("Orders", module.OrderService, retention=None)
    client = await d.client(CLIENT_USER)
    assert await client.proxy(module.Orders).place("r1", 5) == "receipt-r1"

    async def removed() -> bool:
        return (await purge(orders.store, "Orders", 0.05)).purged >= 1

    await wait_for(removed, "Orders' own pass removes the finished order's journal")
    _, operator = await d.backend(OPERATOR_USER)
    report = await purge(operator, "Orders", 0.05)  # allowed (what is left may be recent)
    assert report.running == 0, report
    await operator.forget_failure("Orders", "r1")

    stream = naming.journal_stream("Orders")
    filtered = {"filter": naming.journal_subject("Orders", "r1")}
    for user in ("Billing", CLIENT_USER):
        conn = await d.raw(user)
        with pytest.raises(PermissionDenied):
            await conn.api(f"STREAM.PURGE.{stream}", filtered)


async def test_wrong_inbox_prefix_or_identity_is_explained(deploy: Any) -> None:
    users = permissions(analyze_files([SHOP]))
    d = deploy(users)
    module = load_module(SHOP)
    transport, _ = await d.backend("Billing", inbox_prefix="_INBOX")
    with pytest.raises(TransportError, match="inbox_prefix '_INBOX'"):
        await transport.declare("Billing")
    transport, store = await d.backend("Billing", identity="default")
    rt = dasync.Runtime([module.BillingService], transport=transport, store=store)
    with pytest.raises(PermissionDenied, match="DASYNC__INBOX_default"):
        await rt.start()
    await rt.worker.stop(0.1)


async def test_combined_user_runs_the_whole_file(
    deploy: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--combined``: one user for ``dasync run shop_services.py`` (both services)."""
    users = json.loads(cli(str(SHOP), "--combined", "--format", "json", capsys=capsys))
    assert [u["user"] for u in users] == [
        "dasync-run-security-shop_services", CLIENT_USER, "dasync-provisioner"
    ]  # fmt: skip
    generated = cli(str(SHOP), "--combined", capsys=capsys)
    d = deploy(users, generated)  # the CLI's configuration, verbatim
    module = load_module(SHOP)
    from dasync.transports.nats import connect_nats

    transport, store = await connect_nats(options_for(d.url, users[0]))
    async with dasync.Runtime(
        [module.BillingService, module.OrderService], transport=transport, store=store
    ) as rt:
        assert rt.client.identity == users[0]["identity"]
        tc, sc = await connect_nats(options_for(d.url, users[1]))
        async with dasync.connect(transport=tc, store=sc) as client:
            assert await client.proxy(module.Orders).place("o3", 1) == "receipt-o3"
        await tc.close()
        await sc.close()


MAIN_FILE = """
    from typing import Protocol


    class Echo(Protocol):
        async def echo(self, text: str) -> str: ...


    class EchoService(Echo):
        async def echo(self, text: str) -> str:
            return text.upper()


    async def main(echo: Echo) -> str:
        return await echo.echo("hello from main")
"""


async def test_dasync_run_with_main_under_its_combined_user(
    tmp_path: Path, deploy: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``dasync run FILE`` (a subprocess) under the user ``--combined`` prints for FILE:
    ``main()`` is started on its own client lane and calls the file's service."""
    app = tmp_path / "echo_app.py"
    app.write_text(textwrap.dedent(MAIN_FILE))
    users = json.loads(cli(str(app), "--combined", "--format", "json", capsys=capsys))
    generated = cli(str(app), "--combined", capsys=capsys)
    process = users[0]
    assert [r for r in process["permissions"]["publish"]["allow"] if ".in.client." in r] == [
        f"dasync.{process['services'][1]}.in.client.{process['identity']}"
    ]
    d = deploy(users, generated)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASYNC_NATS_")}
    env.update(process["environment"])
    env.update(DASYNC_NATS_URL=d.url, DASYNC_NATS_PASSWORD=password(process["user"]))
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "dasync", "run", str(app)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'main() returned "HELLO FROM MAIN"' in result.stdout
    assert "denied" not in result.stderr.lower(), result.stderr


# --- provisioned: nobody but the provisioner may configure a stream --------------------------


async def test_provisioned_deployment_runs_and_nobody_can_reconfigure_a_stream(
    deploy: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="dasync.nats")
    uses = analyze_files([SHOP])
    users = permissions(uses, provisioned=True, operator=True)
    d = deploy(users)
    prov = d.users[PROVISIONER_USER]
    identities = [u.identity for u in users if u.user != PROVISIONER_USER]
    streams = await provision(d.options(PROVISIONER_USER), uses, identities)
    assert "DASYNC__INBOX_dasync-client" in streams and "DASYNC_Billing_EVENTS" in streams
    assert {s.split(".")[-1] for s in prov["permissions"]["publish"]["allow"]} == set(streams)

    module = load_module(SHOP)
    await d.runtime("Billing", module.BillingService)
    orders = await d.runtime("Orders", module.OrderService)
    client = await d.client(CLIENT_USER)
    assert await client.proxy(module.Orders).place("p1", 2) == "receipt-p1"
    handler = orders.instance_of(module.OrderService)
    await wait_for(lambda: "p1:2" in handler.charges, "Orders handled Billing.charged")
    assert denials(caplog) == []

    # the configuration a stream admin could use to copy or republish anything
    billing = await d.raw("Billing")
    evil = {
        "name": "DASYNC_Billing_STATE",
        "subjects": ["dasync.Billing.state.*"],
        "republish": {"src": "dasync.Billing.state.x", "dest": "dasync.Orders.in.svc.Billing"},
    }
    with pytest.raises(PermissionDenied):
        await billing.api("STREAM.UPDATE.DASYNC_Billing_STATE", evil)
    with pytest.raises(ApiError, match="already in use"):  # create: only if missing
        await billing.api("STREAM.CREATE.DASYNC_Billing_STATE", evil)
    with pytest.raises(PermissionDenied):  # a stream of a name nobody provisioned
        await billing.api("STREAM.CREATE.DASYNC_Billing_EXTRA", {**evil, "name": "x"})
    info = await billing.api("STREAM.INFO.DASYNC_Billing_STATE")
    assert "republish" not in info["config"]


async def test_a_send_is_refused_on_a_lane_of_another_sender(deploy: Any) -> None:
    """The transport's own ``send`` as another origin: the server refuses the subject."""
    d = deploy(permissions(analyze_files([VAULT])))
    transport, _ = await d.backend("Mallory")
    with pytest.raises(PermissionDenied, match=r"dasync\.Guard\.in\.svc\.Vault"):
        await transport.send(
            "Guard", Message("m", {}, b""), dasync.transports.Origin.service("Vault")
        )
