"""Who is calling, and may they: the user's hooks, since the gateway is the system's edge.

Two hooks, either plain or ``async``:

* **authenticate** ``(headers) -> principal``: the request's headers (a
  case-insensitive mapping) to whoever sent it; ``None`` or an exception means
  no valid credential (``401``). The principal is anything the authorize hook
  understands; its ``str()`` scopes ``Idempotency-Key`` (two principals' keys
  never meet), so return a user id or an object whose ``str()`` is one.
* **authorize** ``(principal, service, method, action) -> bool``: ``action`` is
  the table's route name, ``call``, ``fire``, ``status`` or ``cancel``; false or
  an exception means ``403``. For ``fire`` the method is the event's name; for
  ``status`` and ``cancel`` the service and method are those of the routine's id.

Both fail closed: a hook that raises refuses (and is logged, since that is a bug
to fix, not a credential to reject). ``bearer_auth`` and ``api_key_auth`` build
an authenticate hook from a token check and carry their scheme, which the served
OpenAPI document then declares.
"""

from __future__ import annotations

import hmac
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from ..codegen import _http as http
from ._problems import HttpProblem

__all__ = [
    "Access",
    "Authenticate",
    "Authorize",
    "TokenAuth",
    "api_key_auth",
    "bearer_auth",
]

_log = logging.getLogger("dasync.gateway")

Authenticate: TypeAlias = Callable[[Mapping[str, str]], Any]
"""``(headers) -> principal | None`` (or an awaitable of it)."""
Authorize: TypeAlias = Callable[[Any, str, str, str], "bool | Awaitable[bool]"]
"""``(principal, service, method, action) -> bool`` (or an awaitable of it)."""
TokenCheck: TypeAlias = "Callable[[str], Any] | Mapping[str, Any]"
"""A token's principal (``None``: no such token), or a mapping of token to principal."""


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class TokenAuth:
    """An authenticate hook reading one credential header; ``scheme`` names it among the
    table's ``SECURITY_SCHEMES`` (``bearer``: ``Authorization: Bearer <token>``,
    ``api-key``: the ``X-API-Key`` header)."""

    def __init__(self, scheme: Literal["bearer", "api-key"], check: TokenCheck) -> None:
        if scheme not in http.SECURITY_SCHEMES:
            raise ValueError(f"unknown security scheme {scheme!r}")
        self.scheme = scheme
        self._check = check

    def token(self, headers: Mapping[str, str]) -> str | None:
        if self.scheme == "api-key":
            return headers.get(http.API_KEY_HEADER) or None
        kind, _, token = (headers.get("authorization") or "").partition(" ")
        return token.strip() or None if kind.lower() == "bearer" else None

    async def __call__(self, headers: Mapping[str, str]) -> Any:
        token = self.token(headers)
        if token is None:
            return None
        check = self._check
        if isinstance(check, Mapping):
            # compare with every known token in constant time: no timing tells how close
            found = None
            for known, principal in check.items():
                if hmac.compare_digest(known.encode(), token.encode()):
                    found = principal
            return found
        return await _resolve(check(token))


def bearer_auth(check: TokenCheck) -> TokenAuth:
    """Authenticate ``Authorization: Bearer <token>`` with ``check`` (a function of the
    token, plain or async, or a mapping of token to principal)."""
    return TokenAuth("bearer", check)


def api_key_auth(check: TokenCheck) -> TokenAuth:
    """Authenticate an ``X-API-Key`` header with ``check`` (as ``bearer_auth``)."""
    return TokenAuth("api-key", check)


@dataclass(frozen=True)
class Access:
    """The configured hooks, applied in the order a request needs them."""

    authenticate: Authenticate | None = None
    authorize: Authorize | None = None

    @property
    def challenge(self) -> dict[str, str]:
        """The ``WWW-Authenticate`` header of a ``401`` (RFC 9110 asks for one)."""
        scheme = getattr(self.authenticate, "scheme", None)
        return {"WWW-Authenticate": 'Bearer realm="dasync"'} if scheme == "bearer" else {}

    async def principal(self, headers: Mapping[str, str]) -> Any:
        """The request's principal (``None`` when nothing authenticates); ``401`` if the
        hook finds no valid credential."""
        if self.authenticate is None:
            return None
        try:
            principal = await _resolve(self.authenticate(headers))
        except Exception:
            _log.warning("the authenticate hook raised; refusing the request", exc_info=True)
            principal = None
        if principal is None:
            raise HttpProblem(
                "unauthorized", "no valid credential in the request", headers=self.challenge
            )
        return principal

    async def check(self, principal: Any, service: str, method: str, action: str) -> None:
        """``403`` unless the authorize hook (if any) allows ``action`` on the method."""
        if self.authorize is None:
            return
        try:
            allowed = await _resolve(self.authorize(principal, service, method, action))
        except Exception:
            _log.warning("the authorize hook raised; refusing the request", exc_info=True)
            allowed = False
        if allowed is not True:
            raise HttpProblem("forbidden", f"not allowed to {action} {service}.{method}")
