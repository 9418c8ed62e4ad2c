"""What a service file offers: the contracts it defines or imports, and who calls whom.

Every generator starts from ``Contracts``: the specs sorted by service name
(so documents do not depend on import order) and the topology that
``dasync._topology`` reads from the service classes (constructor contracts,
event subscriptions, ``main()``), which the AsyncAPI document needs for the
lanes services call each other on.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .._contract import MethodSpec, ServiceSpec, contract_of, is_contract, own_doc, spec_of
from .._errors import ContractError

__all__ = ["Contracts", "contracts_of", "contracts_of_module", "own_doc"]


@dataclass(frozen=True)
class Contracts:
    """The services specs are generated for, with what is known of their callers."""

    title: str
    """What the documents are named after (a file name)."""
    services: tuple[ServiceSpec, ...]
    description: str = ""
    callers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Service -> the services of the file's topology that call it."""
    main: str = ""
    """The service name the file's ``main()`` is hosted under, if it has one."""
    main_calls: tuple[str, ...] = ()
    subscribers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Event topic (``Service.event``) -> the handlers (``Service.method``) subscribed."""

    def service(self, name: str) -> ServiceSpec | None:
        return next((s for s in self.services if s.name == name), None)

    def service_doc(self, spec: ServiceSpec) -> str | None:
        """The contract's own docstring (never an inherited one: ``own_doc``)."""
        return spec.doc

    def method_doc(self, method: MethodSpec) -> str | None:
        """The contract method's own docstring."""
        return method.doc


def contracts_of(
    contracts: Iterable[type], *, title: str = "contracts", description: str = ""
) -> Contracts:
    """``Contracts`` of contract classes (or service classes), with no topology."""
    return Contracts(title, _sorted(spec_of(contract_of(c)) for c in contracts), description)


def contracts_of_module(
    module: ModuleType,
    *,
    container: Any = None,
    main_name: Callable[[ModuleType], str] | None = None,
) -> Contracts:
    """The contracts ``module`` (a loaded service file) defines or imports, the contracts
    of the services it defines, and their topology, found as ``dasync run`` finds them."""
    from .._runtime._module import DiscoveryError, discover
    from .._topology import ROLE_MAIN, analyze

    found = [obj for obj in vars(module).values() if is_contract(obj)]
    try:
        services, main = discover(module)
    except DiscoveryError:
        if not found:
            raise
        services, main = [], None
    hosted = main_name(module) if main is not None and main_name is not None else "main"
    uses = analyze(services, container=container, main=main, main_name=hosted)
    specs = _sorted([*(spec_of(c) for c in found), *(spec_of(contract_of(s)) for s in services)])
    if not specs:
        raise ContractError(f"{module.__name__}: defines and imports no contract")
    callers: dict[str, set[str]] = {}
    subscribers: dict[str, set[str]] = {}
    main_calls: tuple[str, ...] = ()
    for use in uses:
        if use.role == ROLE_MAIN:
            main_calls = tuple(sorted(set(use.calls)))
            continue
        for callee in use.calls:
            callers.setdefault(callee, set()).add(use.name)
        for topic, group in use.subscriptions:
            subscribers.setdefault(topic, set()).add(group)
    file = getattr(module, "__file__", None)
    return Contracts(
        title=Path(file).name if file else module.__name__,
        services=specs,
        description=_summary(module),
        callers={k: tuple(sorted(v)) for k, v in sorted(callers.items())},
        main=hosted if main is not None else "",
        main_calls=main_calls,
        subscribers={k: tuple(sorted(v)) for k, v in sorted(subscribers.items())},
    )


def _sorted(specs: Iterable[ServiceSpec]) -> tuple[ServiceSpec, ...]:
    by_name: dict[str, ServiceSpec] = {}
    for spec in specs:
        other = by_name.setdefault(spec.name, spec)
        if other.contract is not spec.contract:
            raise ContractError(
                f"two contracts are named {spec.name}: {other.contract.__module__}."
                f"{other.contract.__qualname__} and {spec.contract.__module__}."
                f"{spec.contract.__qualname__}"
            )
    return tuple(by_name[name] for name in sorted(by_name))


def _summary(module: ModuleType) -> str:
    """The first paragraph of the module's docstring."""
    doc = inspect.getdoc(module) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip()
