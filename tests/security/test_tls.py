"""TLS: a CA and server/client certificates made by the test (``cryptography``).

The server presents a certificate for 127.0.0.1 signed by the test's CA; a
client that trusts that CA (``tls_ca``) connects over ``tls://`` and runs a
workflow; a plain client, or one trusting another CA, is refused. With
``verify: true`` the server also requires a client certificate (mutual TLS).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dasync import TransportError
from dasync.transports.nats import NatsServer

from ._workflow import run_workflow
from .conftest import Connector

pytest.importorskip("cryptography")

from ._certs import Pki, make_pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def tls_config(pki: Pki, *, verify: bool, auth: str = "") -> str:
    return (
        "tls {\n"
        f'  cert_file: "{pki.server_cert}"\n'
        f'  key_file: "{pki.server_key}"\n'
        f'  ca_file: "{pki.ca}"\n'
        f"  verify: {'true' if verify else 'false'}\n"
        "  timeout: 2\n"
        "}\n" + auth
    )


def tls_url(server: NatsServer) -> str:
    return f"tls://127.0.0.1:{server.port}"


async def assert_refused(connect: Connector, url: str, why: str, **options: Any) -> None:
    started = time.monotonic()
    with pytest.raises(TransportError, match="refused") as caught:
        await connect(url, **options)
    assert time.monotonic() - started < 2.0
    assert why in str(caught.value)


async def test_tls_with_password_end_to_end(
    secured_server: Callable[[str], NatsServer], connect: Connector, pki: Pki
) -> None:
    users = 'authorization { users = [ { user: "worker", password: "pw" } ] }\n'
    server = secured_server(tls_config(pki, verify=False, auth=users))
    transport, store = await connect(
        tls_url(server), tls_ca=str(pki.ca), user="worker", password="pw"
    )
    assert await run_workflow(transport, store) == "HELLO ADA!"
    # TLS without the credentials is still refused by authorization
    await assert_refused(connect, tls_url(server), "authorization violation", tls_ca=str(pki.ca))


async def test_clients_that_cannot_verify_the_server_are_refused(
    secured_server: Callable[[str], NatsServer], connect: Connector, pki: Pki
) -> None:
    server = secured_server(tls_config(pki, verify=False))
    transport, store = await connect(tls_url(server), tls_ca=str(pki.ca))
    assert await run_workflow(transport, store) == "HELLO ADA!"
    # a plain nats:// client: the server requires TLS; the system CAs do not know ours
    await assert_refused(connect, server.url, "certificate verification failed")
    await assert_refused(connect, tls_url(server), "certificate verification failed")
    await assert_refused(
        connect, tls_url(server), "certificate verification failed", tls_ca=str(pki.other_ca)
    )


async def test_mutual_tls(
    secured_server: Callable[[str], NatsServer], connect: Connector, pki: Pki
) -> None:
    server = secured_server(tls_config(pki, verify=True))
    transport, store = await connect(
        tls_url(server),
        tls_ca=str(pki.ca),
        tls_cert=str(pki.client_cert),
        tls_key=str(pki.client_key),
    )
    assert await run_workflow(transport, store) == "HELLO ADA!"
    await assert_refused(connect, tls_url(server), "TLS", tls_ca=str(pki.ca))
