"""Contracts: a Protocol (or ``@service`` class) turned into a frozen ``ServiceSpec``.

The spec is built once, validated eagerly with every problem reported together,
and then shared by the runtime, the proxies and codegen.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ._errors import ContractError
from ._event import Event, EventSpec, ExternalEvent
from .transports._contract import check_name

__all__ = [
    "MethodSpec",
    "contract",
    "versioned_name",
    "ParamSpec",
    "ServiceSpec",
    "contract_of",
    "implementation_spec",
    "is_contract",
    "method_of_function",
    "own_doc",
    "plain_def_methods",
    "raises",
    "spec_of",
]

_SPEC_ATTR = "__dasync_spec__"
_BY_FUNCTION: dict[Any, MethodSpec] = {}
"""Contract function -> its MethodSpec, so that ``client.start(Contract.method)`` works."""
_NAME_ATTR = "__dasync_service_name__"
_DECLARED_ATTR = "__dasync_contract__"
"""``(name or None, version)`` a contract declares for itself (``@dasync.contract``,
``@dasync.service``), read from the class's own ``__dict__``: never inherited."""
_RAISES_ATTR = "__dasync_raises__"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ParamSpec:
    name: str
    annotation: Any
    has_default: bool
    default: Any = field(compare=False)
    kind: inspect._ParameterKind = field(
        compare=False, default=inspect.Parameter.POSITIONAL_OR_KEYWORD
    )


@dataclass(frozen=True)
class MethodSpec:
    """One public ``async def`` of a contract: a routine that can be called durably."""

    service: str
    name: str
    params: tuple[ParamSpec, ...]
    returns: Any
    signature: inspect.Signature = field(repr=False, compare=False)
    doc: str | None = None
    raises: tuple[type[BaseException], ...] = field(default=(), compare=False)
    """The error types the contract declares with ``@dasync.raises`` (for specs)."""

    @property
    def qualname(self) -> str:
        return f"{self.service}.{self.name}"


@dataclass(frozen=True, eq=False)
class ServiceSpec:
    """What a service offers: its name, contract class and methods."""

    name: str
    """The service's name on the wire: queues, subjects, streams, routine ids
    (``Orders``; ``Orders-v2`` for version 2 of the contract named ``Orders``)."""
    contract: type
    methods: dict[str, MethodSpec]
    doc: str | None = None
    events: dict[str, EventSpec] = field(default_factory=dict)
    version: int = 1
    """The contract's version (``@dasync.contract(version=...)``)."""
    family: str = ""
    """The contract's name without its version (``Orders`` for ``Orders-v2``)."""

    def method(self, name: str) -> MethodSpec | None:
        return self.methods.get(name)


def versioned_name(name: str, version: int) -> str:
    """The wire name of version ``version`` of contract ``name``: version 1 is the plain
    name, so that versioning a contract later changes nothing for its first version."""
    return name if version == 1 else f"{name}-v{version}"


def contract(
    cls: type | None = None, /, *, name: str | None = None, version: int = 1
) -> Any:
    """Name or version a Protocol contract::

        @dasync.contract(name="Orders", version=2)
        class OrdersV2(Protocol): ...

    Each version is a service of its own on the wire (``Orders-v2``: its own queue,
    journals and subjects), so a new version can run beside the old one while the
    old one's routines finish and its callers move over. Version 1 is the plain name.
    """
    _check_version(version)

    def decorate(klass: type) -> type:
        if not (isinstance(klass, type) and getattr(klass, "_is_protocol", False)):
            raise ContractError(
                f"@dasync.contract names and versions a Protocol, not {klass!r}; a class "
                "that is its own contract takes @dasync.service(name=..., version=...)"
            )
        setattr(klass, _DECLARED_ATTR, (name, version))
        if _SPEC_ATTR in klass.__dict__:
            delattr(klass, _SPEC_ATTR)  # built before the declaration: build it again
        return klass

    return decorate(cls) if cls is not None else decorate


def _check_version(version: object) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ContractError(f"a contract version is a whole number of at least 1, not {version!r}")


def _declared(cls: type) -> tuple[str, int]:
    """The base name and version ``cls`` declares (class name and 1 by default)."""
    name, version = cls.__dict__.get(_DECLARED_ATTR, (None, 1))
    return name or getattr(cls, _NAME_ATTR, None) or cls.__name__, version


def raises(*errors: type[BaseException]) -> Callable[[F], F]:
    """Declare the exceptions a contract method may raise, for its callers and its specs::

        @dasync.raises(OutOfStock, PaymentDeclined)
        async def place_order(self, order: Order) -> Receipt: ...

    Nothing changes at run time (any exception still reaches the caller); the
    declaration is what ``dasync codegen`` publishes: each type's schema in the
    specs, an HTTP 422 problem of its own, a change the compatibility check sees.
    """
    for error in errors:
        if not (isinstance(error, type) and issubclass(error, BaseException)):
            raise TypeError(f"dasync.raises takes exception classes, not {error!r}")

    def decorate(fn: F) -> F:
        declared = (*getattr(fn, _RAISES_ATTR, ()), *errors)
        setattr(fn, _RAISES_ATTR, tuple(dict.fromkeys(declared)))
        return fn

    return decorate


def is_contract(obj: object) -> bool:
    """True for a Protocol contract or an ``@dasync.service`` class."""
    if not isinstance(obj, type):
        return False
    if getattr(obj, _NAME_ATTR, None) is not None and _SPEC_ATTR in obj.__dict__:
        return True
    return (
        bool(getattr(obj, "_is_protocol", False))
        and obj is not typing.Protocol
        and (
            any(
                inspect.iscoroutinefunction(v)
                for k, v in vars(obj).items()
                if not k.startswith("_")
            )
            or any(_is_event(a) for a in vars(obj).get("__annotations__", {}).values())
        )
    )


def plain_def_methods(cls: type) -> list[str]:
    """The public plain-``def`` methods of a user Protocol that is no contract for want of any.

    A Protocol whose methods are all plain ``def`` (and that declares no event)
    is not a contract: ``is_contract`` must leave ordinary typing Protocols of a
    service file alone. It is still most likely a contract written without
    ``async``, so discovery names these methods rather than finding no service.
    Empty for a contract, a class that is not a Protocol, or a standard-library
    Protocol (``typing.SupportsInt``...).
    """
    if not _is_user_protocol(cls) or is_contract(cls):
        return []
    names: set[str] = set()
    for klass in cls.__mro__:
        if not _is_user_protocol(klass):
            continue
        for attr, value in vars(klass).items():
            if attr.startswith("_") or isinstance(
                value, (type, staticmethod, classmethod, property)
            ):
                continue
            if callable(value) and not inspect.iscoroutinefunction(value):
                names.add(attr)
    return sorted(names)


def _is_user_protocol(cls: object) -> bool:
    if not isinstance(cls, type) or cls in (typing.Protocol, typing.Generic, object):
        return False
    if not getattr(cls, "_is_protocol", False):
        return False
    package = cls.__module__.partition(".")[0]
    return package not in sys.stdlib_module_names and package != "typing_extensions"


def contract_of(cls: type) -> type:
    """The contract a service class implements: its nearest Protocol base, or itself."""
    if is_contract(cls) and not getattr(cls, "_is_protocol", False):
        return cls  # @dasync.service class: its own contract
    for base in cls.__mro__[1:]:
        if is_contract(base) and getattr(base, "_is_protocol", False):
            return base
    if is_contract(cls):
        return cls
    raise ContractError(
        f"{cls.__qualname__} is not a dasync service: subclass its contract "
        f"(class {cls.__name__}(MyContract): ...) or decorate it with @dasync.service"
    )


def spec_of(contract: type) -> ServiceSpec:
    """The (cached) spec of a contract, built and validated on first use."""
    cached = contract.__dict__.get(_SPEC_ATTR)
    if isinstance(cached, ServiceSpec):
        return cached
    spec = _build_spec(contract, *_declared(contract))
    setattr(contract, _SPEC_ATTR, spec)
    return spec


def method_of_function(fn: Any) -> MethodSpec | None:
    """The MethodSpec of a contract's function object, if its spec was built."""
    try:
        return _BY_FUNCTION.get(fn)
    except TypeError:
        return None


def mark_service(cls: type, name: str | None, version: int = 1) -> None:
    """Record that ``cls`` is its own contract (``@dasync.service``)."""
    _check_version(version)
    setattr(cls, _NAME_ATTR, name or cls.__name__)
    setattr(cls, _DECLARED_ATTR, (name, version))
    setattr(cls, _SPEC_ATTR, None)
    setattr(cls, _SPEC_ATTR, _build_spec(cls, name or cls.__name__, version))


def implementation_spec(cls: type) -> ServiceSpec:
    """The contract's spec extended with the implementation's own public ``async def``s.

    Those extra methods are not part of the published contract, but calling them
    through ``self`` inside a routine is still a durable sub-routine call.
    """
    contract = contract_of(cls)
    spec = spec_of(contract)
    if cls is contract:
        return spec
    full = _build_spec(cls, spec.family, spec.version, include_implementation=True)
    methods = dict(full.methods)
    methods.update(spec.methods)  # the contract's signatures win
    return dataclasses.replace(spec, methods=methods)


def _build_spec(
    contract: type, family: str, version: int = 1, include_implementation: bool = False
) -> ServiceSpec:
    problems: list[str] = []
    name = versioned_name(family, version)
    try:
        check_name("service name", name)
    except ValueError as exc:
        problems.append(f"{exc} (it names the service's queues and NATS subjects)")
    methods: dict[str, MethodSpec] = {}
    declared_events: list[str] = []
    for attr, value in _public_members(contract, include_implementation):
        if isinstance(value, Event):  # ``name: dasync.Event[T] = dasync.Event()``
            declared_events.append(attr)
            continue
        if not inspect.iscoroutinefunction(value):
            if not include_implementation and callable(value) and not isinstance(value, type):
                problems.append(f"{name}.{attr}: public methods of a contract must be 'async def'")
            continue
        method = _method_spec(name, attr, value, problems)
        if method is not None:
            methods[attr] = method
            if not include_implementation:
                _BY_FUNCTION[value] = method
    events = _events(contract, name, problems)
    for attr in declared_events:
        if attr not in events and not attr.startswith("_"):
            problems.append(
                f"{name}.{attr}: annotate the event with its payload type, "
                f"{attr}: dasync.Event[Payload] = dasync.Event()"
            )
    if not methods and not events:
        problems.append(
            f"{name}: a contract needs at least one public 'async def' method or dasync.Event"
        )
    if problems:
        raise ContractError(
            f"contract {contract.__qualname__} is invalid:\n  " + "\n  ".join(problems)
        )
    return ServiceSpec(
        name, contract, methods, own_doc(contract), events, version=version, family=family
    )


_EVENT_ANNOTATION = re.compile(r"\s*((dasync\.)?(External)?Event\s*(\[.*)?|.*Event\[.*)")
"""A postponed (string) annotation that may be ``dasync.Event[...]``, resolved to be sure."""


def _is_event(annotation: Any) -> bool:
    if isinstance(annotation, str):  # postponed: resolve it if it may be dasync.Event
        return _EVENT_ANNOTATION.fullmatch(annotation) is not None
    return typing.get_origin(annotation) in _EVENT_KINDS or annotation in _EVENT_KINDS


_EVENT_KINDS = (Event, ExternalEvent)


def _events(contract: type, service: str, problems: list[str]) -> dict[str, EventSpec]:
    events: dict[str, EventSpec] = {}
    for klass in reversed(contract.__mro__):
        if klass in (object, typing.Protocol, typing.Generic) or not is_contract(klass):
            continue
        raw = vars(klass).get("__annotations__", {})
        if not any(_is_event(a) for a in raw.values()):
            continue
        try:
            hints = typing.get_type_hints(klass)
        except Exception as exc:
            problems.append(f"{service}: cannot resolve event annotations ({exc})")
            continue
        for attr in raw:
            annotation = hints.get(attr)
            if not _is_event(annotation):
                continue
            if attr.startswith("_"):
                problems.append(f"{service}.{attr}: events must have public names")
                continue
            args = typing.get_args(annotation)
            if len(args) != 1:
                problems.append(f"{service}.{attr}: declare the payload type, Event[Payload]")
                continue
            external = typing.get_origin(annotation) is ExternalEvent
            events[attr] = EventSpec(service, attr, args[0], external)
    return events


def _public_members(contract: type, include_all: bool) -> list[tuple[str, Any]]:
    seen: dict[str, Any] = {}
    for klass in reversed(contract.__mro__):
        if klass in (object, typing.Protocol, typing.Generic):
            continue
        if not include_all and klass is not contract and not is_contract(klass):
            continue
        for attr, value in vars(klass).items():
            if attr.startswith("_") or isinstance(value, (staticmethod, classmethod, property)):
                continue
            seen[attr] = value
    return sorted(seen.items())


def _method_spec(service: str, attr: str, fn: Any, problems: list[str]) -> MethodSpec | None:
    where = f"{service}.{attr}"
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # unresolvable forward reference, typo in an annotation...
        problems.append(f"{where}: cannot resolve type hints ({exc})")
        return None
    sig = inspect.signature(fn)
    params: list[ParamSpec] = []
    for i, p in enumerate(sig.parameters.values()):
        if i == 0 and p.name == "self":
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            problems.append(f"{where}: *{p.name} parameters cannot be sent as messages")
            continue
        if p.name not in hints:
            problems.append(f"{where}: parameter {p.name!r} has no type annotation")
            continue
        params.append(ParamSpec(p.name, hints[p.name], p.default is not p.empty, p.default, p.kind))
    if "return" not in hints:
        problems.append(f"{where}: the return type is not annotated (use '-> None' if nothing)")
    returns = hints.get("return", Any)
    declared = tuple(getattr(fn, _RAISES_ATTR, ()))
    return MethodSpec(service, attr, tuple(params), returns, sig, own_doc(fn), declared)


def own_doc(obj: Any) -> str | None:
    """``obj``'s own docstring, cleaned, or None: ``inspect.getdoc`` would fall back on a
    base's (``Protocol``'s for an undocumented contract, ``ABCMeta.register``'s for a
    method named ``register``), which is no description of a contract."""
    doc = vars(obj).get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) and doc.strip() else None
