"""The HTTP gateway: a file's contracts over HTTP, on Starlette and uvicorn.

One idea per module: ``_app`` (the ASGI app and its routes, from the table in
``codegen._http``), ``_arguments`` (a body to a checked arguments payload),
``_prefer`` (RFC 7240 ``Prefer: wait``), ``_problems`` (RFC 9457 problem
details), ``_ids`` (public routine ids and ``Idempotency-Key``), ``_auth`` (the
user's authentication and authorization hooks) and ``_serve`` (uvicorn in a
process that owns its signals). ``docs/gateway.md`` tells how to run and secure it.

Starlette and uvicorn are the ``http`` extra (``pip install 'dasync[http]'``).
"""

from ._auth import Access as Access
from ._auth import Authenticate as Authenticate
from ._auth import Authorize as Authorize
from ._auth import TokenAuth as TokenAuth
from ._auth import api_key_auth as api_key_auth
from ._auth import bearer_auth as bearer_auth
from ._ids import SECRET_VAR as SECRET_VAR
from ._stack import INSTALL_HINT as INSTALL_HINT
from ._stack import require_http_stack as require_http_stack

require_http_stack()

from ._app import Gateway as Gateway  # noqa: E402
from ._app import gateway_app as gateway_app  # noqa: E402
from ._serve import parse_address as parse_address  # noqa: E402
from ._serve import serving as serving  # noqa: E402

__all__ = [
    "INSTALL_HINT",
    "SECRET_VAR",
    "Access",
    "Authenticate",
    "Authorize",
    "Gateway",
    "TokenAuth",
    "api_key_auth",
    "bearer_auth",
    "gateway_app",
    "parse_address",
    "require_http_stack",
    "serving",
]
