"""``@dasync.service`` and finding the services a module defines."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar, overload

from ._codec import check_method_types
from ._contract import ServiceSpec, contract_of, implementation_spec, is_contract, mark_service
from ._errors import ContractError

__all__ = ["is_service_class", "service", "services_in_module", "validate_service"]

C = TypeVar("C", bound=type)


@overload
def service(cls: C, /) -> C: ...
@overload
def service(*, name: str | None = None, version: int = 1) -> Callable[[C], C]: ...


def service(cls: Any = None, /, *, name: str | None = None, version: int = 1) -> Any:
    """Declare a class as a service that is its own contract.

    Use it when no separate Protocol exists; its public ``async def`` methods
    are the routines it offers. ``name`` overrides the service name (default:
    the class name); ``version`` is its contract's version (as
    ``@dasync.contract(version=...)``: ``Name-v2`` on the wire from version 2).
    """

    def decorate(klass: C) -> C:
        if not isinstance(klass, type):
            raise ContractError(f"@dasync.service decorates classes, not {klass!r}")
        if getattr(klass, "_is_protocol", False):
            raise ContractError(
                f"{klass.__qualname__} is a Protocol: implement it in a class instead "
                f"(class My{klass.__name__}({klass.__name__}): ...)"
            )
        mark_service(klass, name, version)
        return klass

    return decorate(cls) if cls is not None else decorate


def is_service_class(obj: object) -> bool:
    """A concrete class that implements a contract or is decorated ``@dasync.service``."""
    if not isinstance(obj, type) or getattr(obj, "_is_protocol", False):
        return False
    if is_contract(obj):
        return True
    return any(is_contract(b) and getattr(b, "_is_protocol", False) for b in obj.__mro__[1:])


_VALIDATED = "__dasync_validated__"
"""Where a class keeps its validated spec, with the members it was built from."""


def validate_service(cls: type) -> ServiceSpec:
    """The implementation spec of ``cls``, with every problem reported at once.

    Kept on the class while its members stay the same objects: every ``Runtime`` of the
    same services builds the same spec (resolving every method's type hints), and tests
    build many; a method replaced or added afterwards makes it build anew."""
    members = _members(cls)
    kept = cls.__dict__.get(_VALIDATED)
    if kept is not None and _same(kept[0], members):
        spec: ServiceSpec = kept[1]
        return spec
    spec = _validate(cls)
    try:  # the members as validation left them (it caches the contract's spec on it)
        setattr(cls, _VALIDATED, (_members(cls), spec))
    except (AttributeError, TypeError):  # a class that takes no attributes: not kept
        pass
    return spec


def _members(cls: type) -> tuple[object, ...]:
    return tuple(
        value
        for klass in cls.__mro__
        for name, value in vars(klass).items()
        if name != _VALIDATED
    )


def _same(kept: tuple[object, ...], now: tuple[object, ...]) -> bool:
    return len(kept) == len(now) and all(a is b for a, b in zip(kept, now, strict=True))


def _validate(cls: type) -> ServiceSpec:
    spec = implementation_spec(cls)
    problems: list[str] = []
    contract = contract_of(cls)
    for name in spec.methods:
        impl = getattr(cls, name, None)
        if impl is None or not inspect.iscoroutinefunction(impl):
            problems.append(f"{cls.__qualname__}.{name}: must be implemented as 'async def'")
        elif contract is not cls and impl is getattr(contract, name, None):
            problems.append(f"{cls.__qualname__}.{name}: contract method is not implemented")
    for method in spec.methods.values():
        problems.extend(check_method_types(method))
    if problems:
        raise ContractError(f"service {cls.__qualname__} is invalid:\n  " + "\n  ".join(problems))
    return spec


def services_in_module(module: ModuleType) -> list[type]:
    """Service classes defined in ``module`` itself (not ones it merely imports)."""
    found = []
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if obj.__module__ == module.__name__ and is_service_class(obj):
            found.append(obj)
    return found
