"""Generated permissions: each service runs under its own NATS user, locked to its subjects.

``dasync nats-permissions shop_services.py`` produces the users; the server
runs with exactly that output as its ``authorization`` block. Orders and
Billing each run in their own runtime under their own user: the workflow
(call, reply, timer, event) completes, and Billing's user cannot touch
Orders' journal, another service's queue, or Orders' inbox traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import dasync
from dasync import TransportError
from dasync._permissions import (
    analyze_files,
    combine,
    password_variable,
    permissions,
)
from dasync._runtime._module import load_module
from dasync.cli._permissions import add_parser
from dasync.transports import Message
from dasync.transports.nats import NatsOptions, NatsServer, naming
from dasync.transports.nats._connection import Connection, PermissionDenied

from ..nats._helpers import wait_until
from .conftest import Connector

SERVICES = Path(__file__).with_name("shop_services.py")


def cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    parser = argparse.ArgumentParser(prog="dasync")
    add_parser(parser.add_subparsers(), [])
    args = parser.parse_args(["nats-permissions", *argv])
    capsys.readouterr()
    assert args.handler(args) == 0
    return capsys.readouterr().out


def server_config(generated: str, users: list[dict[str, Any]]) -> str:
    """The generated block plus the password variables it refers to."""
    defs = "".join(f'{password_variable(u["user"])}: "pw-{u["user"]}"\n' for u in users)
    return defs + generated


def options(url: str, user: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return dict(
        user=user["user"],
        password=f"pw-{user['user']}",
        inbox_prefix=user["inbox_prefix"],
        request_timeout=1.0,
        **extra,
    )


# --- the rules themselves -------------------------------------------------------------------


def test_rules_follow_the_calls_and_events() -> None:
    users = {u.user: u for u in permissions(analyze_files([SERVICES]))}
    orders, billing, client = users["Orders"], users["Billing"], users["dasync-client"]

    assert "dasync.Billing.work" in orders.publish_allow  # Orders calls Billing
    assert "dasync.Orders.journal.*" in orders.publish_allow
    assert "$JS.API.CONSUMER.MSG.NEXT.DASYNC_Billing_EVENTS.Orders__on_charged__charged" in (
        orders.publish_allow
    )
    assert "dasync.Billing.event.charged" not in orders.publish_allow  # not its event

    assert "dasync.Billing.event.charged" in billing.publish_allow
    assert "dasync.Orders.work" in billing.publish_allow  # replies go to the caller's queue
    assert [s for s in billing.publish_allow if "Orders" in s] == [
        "dasync.Orders.work",
        "$JS.API.STREAM.INFO.DASYNC_Orders_WORK",
    ]
    assert "dasync.Orders.journal.*" not in billing.publish_allow

    assert {"dasync.Orders.work", "dasync.Billing.work"} <= set(client.publish_allow)
    assert not [s for s in client.publish_allow if ".journal." in s or ".event." in s]

    for user in users.values():
        assert user.subscribe_allow == [f"{user.inbox_prefix}.>"]
        assert not [s for s in user.publish_allow if s in (">", "$JS.API.>", "dasync.>")]
    assert len({u.inbox_prefix for u in users.values()}) == len(users)


def test_namespace_shared_inbox_and_combined() -> None:
    uses = analyze_files([SERVICES])
    users = permissions(uses, namespace="prod", shared_inbox=True)
    billing = next(u for u in users if u.user == "prod/Billing")
    assert "dasync-prod.Orders.work" in billing.publish_allow
    assert "$JS.API.STREAM.CREATE.DASYNC-prod_Billing_WORK" in billing.publish_allow
    assert billing.subscribe_allow == ["_INBOX.>"]

    per_service = permissions(uses, clients=False)
    process = combine(per_service, "dasync-run-shop")
    assert set(process.publish_allow) == {s for u in per_service for s in u.publish_allow}
    assert process.services == ("Billing", "Orders")
    assert process.subscribe_allow == ["_INBOX_dasync-run-shop.>"]


def test_json_format(capsys: pytest.CaptureFixture[str]) -> None:
    users = json.loads(cli(str(SERVICES), "--format", "json", capsys=capsys))
    assert [u["user"] for u in users] == ["Billing", "Orders", "dasync-client"]
    orders = users[1]
    assert orders["inbox_prefix"] == "_INBOX_Orders"
    assert "dasync.Billing.work" in orders["permissions"]["publish"]["allow"]
    assert orders["permissions"]["subscribe"]["allow"] == ["_INBOX_Orders.>"]


# --- against a server configured with the generated users ------------------------------------


async def test_services_locked_to_their_own_subjects(
    secured_server: Callable[[str], NatsServer],
    connect: Connector,
    capsys: pytest.CaptureFixture[str],
) -> None:
    users = {
        u["user"]: u for u in json.loads(cli(str(SERVICES), "--format", "json", capsys=capsys))
    }
    generated = cli(str(SERVICES), capsys=capsys)
    assert "authorization {" in generated and "_INBOX_Billing.>" in generated
    server = secured_server(server_config(generated, list(users.values())))
    url = server.url
    module = load_module(SERVICES)

    tb, sb = await connect(url, **options(url, users["Billing"]))
    to, so = await connect(url, **options(url, users["Orders"]))
    billing = dasync.Runtime([module.BillingService], transport=tb, store=sb)
    orders = dasync.Runtime([module.OrderService], transport=to, store=so)
    async with billing, orders:
        # the whole workflow: call, reply to the caller's queue, timer, event
        result = await asyncio.wait_for(orders.client.proxy(module.Orders).place("o1", 5), 20)
        assert result == "receipt-o1"
        handler = orders.instance_of(module.OrderService)
        await wait_until(lambda: "o1:5" in handler.charges)

        # a client under the client user
        tc, sc = await connect(url, **options(url, users["dasync-client"]))
        async with dasync.connect(transport=tc, store=sc) as client:
            assert await asyncio.wait_for(client.proxy(module.Orders).place("o2", 7), 20) == (
                "receipt-o2"
            )

        # Billing's user cannot write Orders' journal ...
        with pytest.raises(PermissionDenied, match="permissions violation"):
            await tb.conn.publish(naming.journal_subject("Orders", "o1"), b"forged")
        with pytest.raises(PermissionDenied):
            await sb.append("Orders", "forged-routine", b"{}", 0)
        # ... nor send work to a service it has no business with ...
        with pytest.raises(PermissionDenied, match="dasync.Shipping.work"):
            await tb.send("Shipping", Message("m-1", {}, b"{}"))
        # ... nor pull Orders' messages ...
        with pytest.raises(PermissionDenied):
            await tb.conn.request(
                "$JS.API.CONSUMER.MSG.NEXT.DASYNC_Orders_WORK.workers", b'{"batch": 1}'
            )
        # ... nor listen to Orders' inbox (where Orders' pulled messages arrive)
        spy = await Connection.open(NatsOptions(servers=(url,), **options(url, users["Billing"])))
        try:
            await spy.subscribe(f"{users['Orders']['inbox_prefix']}.>")
            await wait_until(lambda: spy.denial(None) is not None, 5)
        finally:
            await spy.close()

        # and the client user cannot fire Billing's event
        with pytest.raises(PermissionDenied):
            await tc.conn.publish("dasync.Billing.event.charged", b'"forged"')


async def test_wrong_inbox_prefix_is_explained(
    secured_server: Callable[[str], NatsServer],
    connect: Connector,
    capsys: pytest.CaptureFixture[str],
) -> None:
    users = {
        u["user"]: u for u in json.loads(cli(str(SERVICES), "--format", "json", capsys=capsys))
    }
    server = secured_server(server_config(cli(str(SERVICES), capsys=capsys), list(users.values())))
    settings = options(server.url, users["Billing"])
    settings["inbox_prefix"] = "_INBOX"
    transport, _ = await connect(server.url, **settings)
    with pytest.raises(TransportError, match="inbox_prefix '_INBOX'"):
        await transport.declare("Billing")


async def test_combined_user_runs_the_whole_file(
    secured_server: Callable[[str], NatsServer],
    connect: Connector,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--combined``: one user for ``dasync run shop_services.py`` (both services)."""
    users = json.loads(cli(str(SERVICES), "--combined", "--format", "json", capsys=capsys))
    assert [u["user"] for u in users] == ["dasync-run-security-shop_services", "dasync-client"]
    generated = cli(str(SERVICES), "--combined", capsys=capsys)
    server = secured_server(server_config(generated, users))
    module = load_module(SERVICES)
    transport, store = await connect(server.url, **options(server.url, users[0]))
    async with dasync.Runtime(
        [module.BillingService, module.OrderService], transport=transport, store=store
    ) as rt:
        assert await asyncio.wait_for(rt.client.proxy(module.Orders).place("o3", 1), 20) == (
            "receipt-o3"
        )
