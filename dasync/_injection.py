"""Constructor injection: contracts become proxies, everything else comes from the user's container.

The only module that imports dependency_injector. Parameters annotated with a
contract get a proxy; other parameters are looked up by name in the user's
``dependency_injector`` container (or a plain mapping); parameters with
defaults may be left out. Every parameter that cannot be satisfied is
reported at once.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from dependency_injector import containers, providers

from ._contract import is_contract
from ._errors import ContractError

__all__ = ["Container", "Injector"]

Container = containers.Container | Mapping[str, Any]
"""A dependency_injector container, or a mapping of parameter name to value."""


class Injector:
    """Resolves the parameters of service constructors and ``main()`` functions."""

    def __init__(self, proxy_for: Callable[[type], object], container: Container | None) -> None:
        self._proxy_for = proxy_for
        self._user = container
        self._own = containers.DynamicContainer()

    def construct(self, cls: type) -> object:
        """Build a service instance with its constructor parameters injected."""
        init = cls.__init__  # type: ignore[misc]
        kwargs = self.resolve(init, where=f"{cls.__qualname__}.__init__", skip_first=True)
        name = f"service_{cls.__module__}_{cls.__qualname__}".replace(".", "_")
        provider = providers.Singleton(cls, **{k: providers.Object(v) for k, v in kwargs.items()})
        setattr(self._own, name, provider)
        return provider()

    def resolve(
        self, fn: Callable[..., Any], *, where: str, skip_first: bool = False
    ) -> dict[str, Any]:
        """Keyword arguments for ``fn``; raises ContractError listing every unmet parameter."""
        if fn is object.__init__:
            return {}
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:
            raise ContractError(f"{where}: cannot resolve type hints ({exc})") from None
        params = list(inspect.signature(fn).parameters.values())
        if skip_first and params:
            params = params[1:]
        kwargs: dict[str, Any] = {}
        problems: list[str] = []
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            annotation = hints.get(p.name)
            found, value = self._from_user(p.name)
            if found:
                kwargs[p.name] = value
            elif annotation is not None and is_contract(annotation):
                kwargs[p.name] = self._proxy_for(annotation)
            elif p.default is p.empty:
                problems.append(
                    f"parameter {p.name!r}"
                    + (f" ({_name(annotation)})" if annotation is not None else "")
                    + " is not a contract and the container has no provider of that name"
                )
        if problems:
            raise ContractError(f"cannot inject {where}: " + "; ".join(problems))
        return kwargs

    def _from_user(self, name: str) -> tuple[bool, Any]:
        user = self._user
        if user is None:
            return False, None
        if isinstance(user, Mapping):
            return (True, user[name]) if name in user else (False, None)
        provider = user.providers.get(name)
        if provider is None:
            return False, None
        return True, provider()


def _name(annotation: Any) -> str:
    return getattr(annotation, "__qualname__", None) or repr(annotation)
