"""A deployment under generated NATS users, and the tools to forge messages in it.

``Deployment`` holds a nats-server configured with exactly the users that
``transports.nats._permissions`` generates (plus the password variables they
refer to), and opens runtimes, clients and raw connections *as* one of those
users, so that every test speaks with the rights its role would have. Nothing
here bypasses the server's permissions: a forgery is published by a user over
its own connection, and either the server refuses it or the receiver must.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import dasync
from dasync._engine import Call, StepRecord, decode_step
from dasync._runtime import Client
from dasync._runtime._wire import callee_of
from dasync.transports import JournalStore, Message
from dasync.transports.nats import NatsOptions, NatsServer, NatsStore, NatsTransport
from dasync.transports.nats._connection import Connection, PubAck
from dasync.transports.nats._permissions import UserPermissions, password_variable, render_conf

HERE = Path(__file__).parent
SHOP = HERE / "shop_services.py"
VAULT = HERE / "vault_services.py"

WAIT = 20.0
"""Bound of every wait on a condition in these tests."""


def password(user: str) -> str:
    return f"pw-{user}"


User = UserPermissions | dict[str, Any]
"""A generated user, as the Python API gives it or as ``--format json`` prints it."""


def as_json(user: User) -> dict[str, Any]:
    return user.to_json() if isinstance(user, UserPermissions) else user


def server_config(users: Sequence[User], generated: str | None = None) -> str:
    """The generated ``authorization`` block (``render_conf`` of ``users``, or the text
    ``generated`` verbatim) plus the password variables it refers to."""
    names = [as_json(u)["user"] for u in users]
    defs = "".join(f'{password_variable(n)}: "{password(n)}"\n' for n in names)
    if generated is None:
        generated = render_conf([u for u in users if isinstance(u, UserPermissions)])
    return defs + generated


def options_for(url: str, user: User, **extra: Any) -> NatsOptions:
    """How ``user``'s process connects: its credentials, inbox prefix and client identity."""
    info = as_json(user)
    settings: dict[str, Any] = dict(
        servers=(url,),
        user=info["user"],
        password=password(info["user"]),
        inbox_prefix=info["inbox_prefix"],
        identity=info["identity"],
        connect_timeout=2.0,
        reconnect_wait=0.1,
        request_timeout=2.0,
    )
    settings.update(extra)
    return NatsOptions(**settings)


class Deployment:
    """Runtimes, clients and raw connections of one server, each as a generated user."""

    def __init__(self, server: NatsServer, users: Sequence[User], **settings: Any):
        self.server = server
        self.users = {as_json(u)["user"]: as_json(u) for u in users}
        """Each user as ``--format json`` prints it."""
        self.settings = settings
        self._stack = AsyncExitStack()
        self.runtimes: dict[str, dasync.Runtime] = {}

    @property
    def url(self) -> str:
        return self.server.url

    def options(self, user: str, **extra: Any) -> NatsOptions:
        return options_for(self.url, self.users[user], **{**self.settings, **extra})

    async def backend(self, user: str, **extra: Any) -> tuple[NatsTransport, NatsStore]:
        from dasync.transports.nats import connect_nats

        transport, store = await connect_nats(self.options(user, **extra))
        self._stack.push_async_callback(store.close)
        self._stack.push_async_callback(transport.close)
        return transport, store

    async def runtime(self, user: str, *classes: type, **extra: Any) -> dasync.Runtime:
        """A started ``Runtime`` hosting ``classes`` as ``user``."""
        transport, store = await self.backend(user)
        rt = dasync.Runtime(list(classes), transport=transport, store=store, **extra)
        await rt.start()
        self._stack.push_async_callback(rt.close)
        self.runtimes[user] = rt
        return rt

    async def client(self, user: str) -> Client:
        """An open client (``dasync.connect``) as ``user``."""
        transport, store = await self.backend(user)
        return await self._stack.enter_async_context(
            dasync.connect(transport=transport, store=store)
        )

    async def raw(self, user: str, **extra: Any) -> Connection:
        """A bare connection as ``user``, to publish forged messages and API requests."""
        extra.setdefault("request_timeout", 1.0)
        conn = await Connection.open(self.options(user, **extra))
        self._stack.push_async_callback(conn.close)
        return conn

    async def aclose(self) -> None:
        await self._stack.aclose()


async def forge(conn: Connection, subject: str, message: Message, **headers: str) -> PubAck:
    """Publish ``message`` on ``subject`` over ``conn``, as dasync's transport would (its id
    as ``Nats-Msg-Id``), plus any extra NATS ``headers`` (``Nats_Schedule=...``)."""
    sent = dict(message.headers)
    sent["Nats-Msg-Id"] = message.msg_id
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    return await conn.publish(subject, message.body, sent)


async def api(conn: Connection, endpoint: str, payload: dict[str, Any] | None = None) -> Any:
    """A JetStream API request as ``conn``'s user (raises what the server answers)."""
    return await conn.api(endpoint, payload)


async def records(store: JournalStore, service: str, routine_id: str) -> list[StepRecord]:
    return [decode_step(e) for e in await store.load(service, routine_id)]


async def wait_for(
    condition: Callable[[], Any], what: str, within: float = WAIT, every: float = 0.02
) -> Any:
    """Wait until ``condition()`` (sync or async) is truthy and return it; fail after
    ``within`` seconds naming ``what``."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}")
        await asyncio.sleep(every)


async def pending_call(store: JournalStore, service: str, routine_id: str) -> tuple[int, str]:
    """``(seq, callee id)`` of the first call routine ``routine_id`` of ``service`` made,
    once its journal shows it."""

    async def found() -> tuple[int, str] | None:
        for record in await records(store, service, routine_id):
            for command in record.commands:
                if isinstance(command, Call):
                    return command.seq, callee_of(routine_id, command)
        return None

    result: tuple[int, str] = await wait_for(found, f"{service} {routine_id} made a call")
    return result


def rejected(rt: dasync.Runtime, *words: str) -> list[str]:
    """The messages ``rt``'s worker refused whose reason mentions every one of ``words``."""
    return [r for r in rt.worker.stats.rejected if all(w in r for w in words)]


def body(value: Any) -> bytes:
    return json.dumps(value).encode()
