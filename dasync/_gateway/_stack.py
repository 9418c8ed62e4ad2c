"""Whether the HTTP stack (Starlette, uvicorn) is installed, and what to do if not.

They are an extra, not dependencies: most deployments of dasync never serve
HTTP. Everything that needs them asks here first, so the error says what to
install instead of naming a module deep in an import chain.
"""

from __future__ import annotations

import importlib.util

__all__ = ["INSTALL_HINT", "MissingHttpStack", "require_http_stack"]

INSTALL_HINT = "pip install 'dasync[http]'"
_MODULES = ("starlette", "uvicorn")


class MissingHttpStack(ModuleNotFoundError):
    """Starlette or uvicorn is not installed."""


def require_http_stack() -> None:
    """``MissingHttpStack`` (a ``ModuleNotFoundError``) naming the install command if the
    gateway's stack is missing."""
    missing = [name for name in _MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingHttpStack(
            f"the HTTP gateway needs {' and '.join(missing)}: {INSTALL_HINT}",
            name=missing[0],
        )
