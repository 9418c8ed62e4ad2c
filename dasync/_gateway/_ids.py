"""The routine ids the gateway hands out: ``{Service}.{method}.{routine id}.{tag}``.

``GET /routines/{id}`` must find a routine from its id alone, and a routine
lives in its service's journal, so the public id names the service and the
method (service names are one NATS subject token and method names Python
identifiers: neither has a ``.``). The routine id inside is one a client may
choose (no ``/``):

* ``h<32 hex>``: 128 random bits, for a POST without ``Idempotency-Key``;
* ``k<32 hex>``: a plain SHA-256 of the key and its scope (the principal, the
  service and the method), so every gateway process, restarted or not, derives
  the same routine from the same key with no shared state.

The ``tag`` (16 hex) is an HMAC of the rest under the gateway's secret. It is
what lets a gateway vouch for a routine no worker has taken yet (its journal is
still empty, so nothing else tells a queued start from an id nobody used):
with a tag that verifies, an empty journal reads as ``running``; without one,
only a journal makes the id known. Gateways that share a secret
(``DASYNC_GATEWAY_SECRET``) hand out the same ids and vouch for each other's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass

__all__ = ["SECRET_VAR", "PublicId", "RoutineIds"]

SECRET_VAR = "DASYNC_GATEWAY_SECRET"
"""The environment variable the command line reads the gateway's secret from."""

_TAG = 16
_TAGGED = re.compile(rf"(?s)(.+)\.([0-9a-f]{{{_TAG}}})")
_SCOPE = b"dasync-gateway-idempotency-1"


@dataclass(frozen=True)
class PublicId:
    """A parsed public id; ``vouched``: its tag verifies (this gateway family made it)."""

    service: str
    method: str
    routine_id: str
    vouched: bool


class RoutineIds:
    """Makes and reads public ids under one secret (random per process if not given)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret else secrets.token_bytes(32)

    def fresh(self) -> str:
        """A routine id for a POST without ``Idempotency-Key``."""
        return "h" + uuid.uuid4().hex

    def keyed(self, scope: str, service: str, method: str, key: str) -> str:
        """The routine id an ``Idempotency-Key`` stands for, within its scope (the
        principal); the same on every gateway, with or without a shared secret."""
        parts = (_SCOPE, scope.encode(), service.encode(), method.encode(), key.encode())
        digest = hashlib.sha256(b"\0".join(len(p).to_bytes(4, "big") + p for p in parts))
        return "k" + digest.hexdigest()[:32]

    def public(self, service: str, method: str, routine_id: str) -> str:
        base = f"{service}.{method}.{routine_id}"
        return f"{base}.{self._tag(base)}"

    def parse(self, public_id: str) -> PublicId | None:
        """The parts of ``public_id``, or ``None`` if it cannot name a routine."""
        service, _, rest = public_id.partition(".")
        method, _, tail = rest.partition(".")
        if not service or not method.isidentifier() or not tail or "/" in tail:
            return None
        tagged = _TAGGED.fullmatch(tail)
        if tagged is not None:
            routine_id, tag = tagged.group(1), tagged.group(2)
            vouched = hmac.compare_digest(tag, self._tag(f"{service}.{method}.{routine_id}"))
            return PublicId(service, method, routine_id, vouched)
        return PublicId(service, method, tail, False)

    def _tag(self, base: str) -> str:
        return hmac.new(self._secret, base.encode(), hashlib.sha256).hexdigest()[:_TAG]
