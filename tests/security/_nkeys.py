"""NKeys, JWTs and ``.creds`` files made on the spot (with the ``nkeys`` package).

A user nkey is enough for nkey authentication. For a credentials file the
server runs in operator mode: an operator signs an account JWT (with JetStream
limits), the account signs a user JWT, and the ``.creds`` file holds the user
JWT and the user's seed, as ``nsc`` would write them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys

__all__ = ["Identity", "OperatorSetup", "make_operator", "new_identity"]


@dataclass(frozen=True)
class Identity:
    seed: bytes
    public: str

    def sign(self, data: bytes) -> bytes:
        return bytes(nkeys.from_seed(self.seed).sign(data))


def new_identity(prefix: int) -> Identity:
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    return Identity(seed, nkeys.from_seed(seed).public_key.decode())


def user_identity() -> Identity:
    return new_identity(nkeys.PREFIX_BYTE_USER)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(issuer: Identity, subject: str, name: str, nats: dict[str, Any]) -> str:
    claims: dict[str, Any] = {
        "iat": int(time.time()) - 60,
        "iss": issuer.public,
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    claims["jti"] = (
        base64.b32encode(hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest())
        .decode()
        .rstrip("=")
    )
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = _b64(issuer.sign(f"{header}.{body}".encode()))
    return f"{header}.{body}.{signature}"


_UNLIMITED = {"subs": -1, "data": -1, "payload": -1}


@dataclass(frozen=True)
class OperatorSetup:
    """An operator and one account with JetStream; ``config`` is for nats-server."""

    operator: Identity
    account: Identity
    config: str

    def user_creds(self, directory: Path, name: str, signer: Identity | None = None) -> Path:
        """A ``.creds`` file of a new user of the account (or signed by another key)."""
        user = user_identity()
        jwt = _jwt(
            signer or self.account,
            user.public,
            name,
            {"type": "user", "pub": {}, "sub": {}, **_UNLIMITED},
        )
        path = directory / f"{name}.creds"
        path.write_text(
            "-----BEGIN NATS USER JWT-----\n"
            f"{jwt}\n"
            "------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{user.seed.decode()}\n"
            "------END USER NKEY SEED------\n"
        )
        path.chmod(0o600)
        return path


def make_operator() -> OperatorSetup:
    operator = new_identity(nkeys.PREFIX_BYTE_OPERATOR)
    account = new_identity(nkeys.PREFIX_BYTE_ACCOUNT)
    system = new_identity(nkeys.PREFIX_BYTE_ACCOUNT)
    operator_jwt = _jwt(
        operator,
        operator.public,
        "dasync-test-operator",
        {"type": "operator", "system_account": system.public},
    )
    limits = {
        **_UNLIMITED,
        "imports": -1,
        "exports": -1,
        "wildcards": True,
        "conn": -1,
        "leaf": -1,
        "mem_storage": -1,
        "disk_storage": -1,
        "streams": -1,
        "consumer": -1,
    }
    account_jwt = _jwt(operator, account.public, "app", {"type": "account", "limits": limits})
    system_jwt = _jwt(
        operator,
        system.public,
        "SYS",
        {
            "type": "account",
            "limits": {**limits, "mem_storage": 0, "disk_storage": 0, "streams": 0, "consumer": 0},
        },
    )
    config = (
        f'operator: "{operator_jwt}"\n'
        f'system_account: "{system.public}"\n'
        "resolver: MEMORY\n"
        "resolver_preload: {\n"
        f'  {account.public}: "{account_jwt}"\n'
        f'  {system.public}: "{system_jwt}"\n'
        "}\n"
    )
    return OperatorSetup(operator, account, config)
