"""What each service of a deployment does: whom it calls, what it publishes and handles.

Read from the service classes alone, with no transport in sight, so that any
transport can turn it into its own access rules (the NATS transport's
``dasync.transports.nats._permissions`` turns it into nats-server users):

* **calls**: the contracts its constructor takes (the services it calls); calls
  through ``self`` and timers are its own and not listed;
* **events**: the ``dasync.Event`` attributes of its contract (it publishes them);
* **subscriptions**: ``proxy.event += self.handler`` made in its constructor,
  known only by constructing it: the services are constructed in memory (an
  unstarted ``Runtime`` on the memory transport) as ``dasync run`` would;
* **callers** (``callers_of``): the services, among those analysed together,
  that call it.

``main()`` of a service file is hosted as a service of its own (role ``main``)
whose calls are its parameters' contracts.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from ._contract import is_contract, spec_of
from ._service import validate_service

__all__ = [
    "ROLE_MAIN",
    "ROLE_SERVICE",
    "ServiceUse",
    "analyze",
    "analyze_files",
    "callers_of",
]

ROLE_SERVICE = "service"
ROLE_MAIN = "main"


@dataclass(frozen=True)
class ServiceUse:
    """What one hosted service does, as far as access rules are concerned."""

    name: str
    calls: tuple[str, ...] = ()
    """Other services it calls (its constructor's contract parameters)."""
    events: tuple[str, ...] = ()
    """Topics (``Service.event``) it publishes: the events of its contract."""
    subscriptions: tuple[tuple[str, str], ...] = ()
    """``(topic, group)`` pairs: events it handles, group = ``Service.handler``."""
    role: str = ROLE_SERVICE
    """``service``, or ``main`` for a file's ``main()`` hosted as a service."""
    source: str = ""
    """The file that defines it, if known."""
    notes: tuple[str, ...] = ()
    """What could not be determined (shown to the operator)."""


def analyze(
    services: Sequence[type],
    *,
    container: Any = None,
    main: Callable[..., Any] | None = None,
    main_name: str = "main",
    source: str = "",
) -> list[ServiceUse]:
    """What each service class (and ``main``, hosted as ``main_name``) does.

    The classes are constructed (in memory, never started) to learn their
    event subscriptions; a class that cannot be constructed with ``container``
    is tried with placeholders for its non-contract parameters, else its
    subscriptions are reported as unknown in its notes.
    """
    uses: list[ServiceUse] = []
    for cls in services:
        spec = validate_service(cls)
        subscriptions, notes = _subscriptions(cls, container)
        init = cls.__init__  # type: ignore[misc]
        calls = [c for c in _contract_calls(init, skip_first=True) if c != spec.name]
        uses.append(
            ServiceUse(
                name=spec.name,
                calls=tuple(dict.fromkeys(calls)),
                events=tuple(e.topic for e in spec.events.values()),
                subscriptions=tuple(dict.fromkeys(subscriptions)),
                source=source,
                notes=tuple(notes),
            )
        )
    if main is not None:
        main_notes: tuple[str, ...] = ()
        if main_name != "main":
            main_notes = (
                f"main() is hosted as {main_name}, a name 'dasync run' derives from the file's "
                "absolute path: generate these permissions from the path it runs at",
            )
        uses.append(
            ServiceUse(
                name=main_name,
                calls=tuple(dict.fromkeys(_contract_calls(main))),
                role=ROLE_MAIN,
                source=source,
                notes=main_notes,
            )
        )
    return uses


def analyze_files(
    paths: Iterable[str | Path],
    *,
    container: Any = None,
    main_name: Callable[[Any], str] | None = None,
) -> list[ServiceUse]:
    """``analyze`` the services (and ``main``) defined in each service file, as ``dasync run``
    finds them. ``main_name(module)`` names the service ``main`` is hosted as."""
    from ._runtime._module import discover, load_module

    uses: list[ServiceUse] = []
    for path in paths:
        module = load_module(path)
        services, main = discover(module)
        name = main_name(module) if main_name is not None and main is not None else "main"
        uses.extend(
            analyze(services, container=container, main=main, main_name=name, source=str(path))
        )
    return uses


def callers_of(uses: Iterable[ServiceUse]) -> dict[str, list[str]]:
    """For each service in ``uses``, the services in ``uses`` that call it (in order)."""
    every = list(uses)
    callers: dict[str, list[str]] = {u.name: [] for u in every}
    for use in every:
        for callee in use.calls:
            if callee in callers and use.name not in callers[callee] and callee != use.name:
                callers[callee].append(use.name)
    return callers


def _contract_calls(fn: Any, *, skip_first: bool = False) -> list[str]:
    """Names of the services whose contracts annotate ``fn``'s parameters."""
    if fn is object.__init__ or not callable(fn):
        return []
    try:
        hints = typing.get_type_hints(fn)
        params = list(inspect.signature(fn).parameters.values())
    except Exception:  # unresolvable annotations: the injector reports them when run
        return []
    if skip_first:
        params = params[1:]
    found = []
    for p in params:
        annotation = hints.get(p.name)
        if annotation is not None and is_contract(annotation):
            found.append(spec_of(annotation).name)
    return found


def _subscriptions(cls: type, container: Any) -> tuple[list[tuple[str, str]], list[str]]:
    """The ``(topic, group)`` subscriptions ``cls`` makes when constructed, and notes."""
    from ._runtime import Runtime

    errors: list[str] = []
    attempts: list[Any] = [container]
    if container is None:
        contract_params = set(_contract_param_names(cls))
        attempts.append(_Placeholders(contract_params))
    for attempt in attempts:
        try:
            rt = Runtime([cls], container=attempt)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        spec = rt.hosted[0].spec
        return [(s.event.topic, f"{spec.name}.{s.handler}") for s in rt.events.subscriptions], []
    return [], [
        f"could not construct {cls.__qualname__} ({errors[0]}); event subscriptions made "
        "in its constructor are not included (give --container)"
    ]


def _contract_param_names(cls: type) -> list[str]:
    init = cls.__init__  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(init)
    except Exception:
        return []
    return [name for name, ann in hints.items() if name != "return" and is_contract(ann)]


class _Placeholders(Mapping[str, Any]):
    """A container that offers a do-anything placeholder for every non-contract parameter."""

    def __init__(self, excluded: set[str]) -> None:
        self._excluded = excluded

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name not in self._excluded

    def __getitem__(self, name: str) -> Any:
        if name in self._excluded:
            raise KeyError(name)
        return mock.MagicMock(name=name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0
