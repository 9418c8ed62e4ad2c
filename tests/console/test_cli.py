"""``dasync console FILE`` as a user runs it: a subprocess in front of ``dasync run`` of
the shop example on the session's nats-server; and ``--console`` on the gateway
commands."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from dasync.cli import build_parser
from dasync.cli._common import CliError
from dasync.cli._gateway import http_settings
from tests.conftest import delete_namespace
from tests.gateway.test_shop import ROOT, SHOP, Command


def test_console_flag_needs_http_and_console_always_serves_it() -> None:
    parser = build_parser()
    args = parser.parse_args(["run", "x.py", "--console"])
    with pytest.raises(CliError, match="--console needs --http"):
        http_settings(args)
    settings = http_settings(parser.parse_args(["run", "x.py", "--http", ":0", "--console"]))
    assert settings is not None and settings.console
    gateway = http_settings(parser.parse_args(["gateway", "x.py"]))
    assert gateway is not None and not gateway.console  # off unless asked for
    console = http_settings(parser.parse_args(["console", "x.py"]))
    assert (
        console is not None
        and console.console
        and (console.host, console.port)
        == (
            "127.0.0.1",
            8000,
        )
    )


def test_dasync_console_serves_the_routines_of_a_running_example(
    nats_session_server: Any, tmp_path: Path
) -> None:
    import asyncio

    namespace = f"c{uuid.uuid4().hex[:12]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASYNC_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    nats = ["--nats", nats_session_server.url, "--nats-namespace", namespace]
    run = Command(["run", str(SHOP), "--serve", *nats], tmp_path, env)
    commands = [run]
    try:
        run.expect("ready, serving")
        console = Command(["console", str(SHOP), "--http", "127.0.0.1:0", *nats], tmp_path, env)
        commands.append(console)
        url = console.expect(r"web console at (\S+)")[1]
        console.expect("ready, serving")
        api = url.replace("/console/", "")
        for customer, item in (("Ada", "book"), ("Bob", "unicorn")):  # through its gateway
            order = httpx.post(
                f"{api}/Shop/place_order",
                json={"customer": customer, "item": item, "qty": 1},
                headers={"Prefer": "wait=20"},
                timeout=30,
            )
            assert order.status_code == 200, order.text
        deadline = time.monotonic() + 20
        while True:  # the index lists both orders
            page = httpx.get(f"{url}?service=Shop&method=place_order", timeout=10)
            assert page.status_code == 200, page.text
            if page.text.count("<td>place_order</td>") == 2:
                break
            assert time.monotonic() < deadline, page.text
            time.sleep(0.1)
        for command in reversed(commands):
            assert command.stop() == 0, command.seen
    finally:
        for command in commands:
            command.stop()
        asyncio.run(delete_namespace(nats_session_server.url, namespace))
