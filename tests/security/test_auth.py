"""Authentication: user/password, token, NKey and credentials files against a real nats-server.

Each test starts its own server from a configuration file, runs a small
workflow over an authenticated connection, and checks that a client without
the right credentials is refused at once with a ``TransportError`` that says
so (no endless reconnect loop: a refusal cannot heal by retrying).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dasync import TransportError
from dasync.transports.nats import NatsOptions, NatsServer

from ._workflow import run_workflow
from .conftest import Connector

USERS = """
authorization {
  users = [
    { user: "worker", password: "s3cret-worker" }
    { user: "other", password: "other-pw" }
  ]
}
"""


async def assert_refused(connect: Connector, url: str, **options: Any) -> TransportError:
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        await connect(url, **options)
    assert time.monotonic() - started < 2.0, "a refusal must fail fast, not retry"
    assert "refused" in str(caught.value)
    return caught.value


async def test_user_password_end_to_end(
    secured_server: Callable[[str], NatsServer], connect: Connector
) -> None:
    server = secured_server(USERS)
    transport, store = await connect(server.url, user="worker", password="s3cret-worker")
    assert await run_workflow(transport, store) == "HELLO ADA!"


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"user": "worker", "password": "wrong"},
        {"user": "nobody", "password": "s3cret-worker"},
        {"token": "s3cret-worker"},
    ],
    ids=["none", "wrong-password", "unknown-user", "token-instead"],
)
async def test_bad_credentials_are_refused(
    secured_server: Callable[[str], NatsServer], connect: Connector, credentials: dict[str, str]
) -> None:
    server = secured_server(USERS)
    error = await assert_refused(connect, server.url, **credentials)
    assert "authorization violation" in str(error)
    assert "s3cret" not in str(error)


async def test_credentials_from_the_environment(
    secured_server: Callable[[str], NatsServer], connect: Connector
) -> None:
    server = secured_server(USERS)
    env = {
        "DASYNC_NATS_URL": server.url,
        "DASYNC_NATS_USER": "worker",
        "DASYNC_NATS_PASSWORD": "s3cret-worker",
    }
    options = NatsOptions.from_env(env)
    assert (options.user, options.password) == ("worker", "s3cret-worker")
    transport, store = await connect(server.url, user=options.user, password=options.password)
    assert await run_workflow(transport, store, "env") == "HELLO ENV!"


async def test_token(secured_server: Callable[[str], NatsServer], connect: Connector) -> None:
    server = secured_server('authorization { token: "t0ken-abc" }\n')
    transport, store = await connect(server.url, token="t0ken-abc")
    assert await run_workflow(transport, store) == "HELLO ADA!"
    await assert_refused(connect, server.url, token="t0ken-xyz")
    await assert_refused(connect, server.url)


async def test_nkey(
    secured_server: Callable[[str], NatsServer], connect: Connector, tmp_path: Path
) -> None:
    pytest.importorskip("nkeys")
    from ._nkeys import user_identity

    user, stranger = user_identity(), user_identity()
    server = secured_server(f'authorization {{ users = [ {{ nkey: "{user.public}" }} ] }}\n')
    (tmp_path / "user.nk").write_bytes(user.seed)
    (tmp_path / "stranger.nk").write_bytes(stranger.seed)
    transport, store = await connect(server.url, nkey_seed=str(tmp_path / "user.nk"))
    assert await run_workflow(transport, store) == "HELLO ADA!"
    await assert_refused(connect, server.url, nkey_seed=str(tmp_path / "stranger.nk"))
    await assert_refused(connect, server.url)


async def test_credentials_file(
    secured_server: Callable[[str], NatsServer], connect: Connector, tmp_path: Path
) -> None:
    """Operator mode (JWTs): the ``.creds`` file an operator hands out with ``nsc``."""
    pytest.importorskip("nkeys")
    from ._nkeys import make_operator, user_identity

    operator = make_operator()
    server = secured_server(operator.config)
    creds = operator.user_creds(tmp_path, "worker")
    forged = operator.user_creds(tmp_path, "forged", signer=user_identity())
    transport, store = await connect(server.url, creds=str(creds))
    assert await run_workflow(transport, store) == "HELLO ADA!"
    await assert_refused(connect, server.url, creds=str(forged))
    await assert_refused(connect, server.url)
