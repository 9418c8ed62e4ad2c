"""Loading a user's service file by path and finding what it runs (used by ``dasync run``).

A service file is imported under a stable module name (its file name, as
``import service`` would give) so that every worker running the same file
names its classes and exceptions identically: exceptions travel as
``module:qualname`` and are rebuilt by importing that name at the caller.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from .._contract import is_contract, plain_def_methods
from .._errors import DasyncError
from .._service import is_service_class, services_in_module

__all__ = ["DiscoveryError", "ModuleLoadError", "discover", "load_module", "module_name_for"]

SERVICE_RULE = (
    "a service is a class that subclasses its Protocol contract or is decorated @dasync.service"
)


class ModuleLoadError(DasyncError):
    """The file does not exist, cannot be named as a module, or raised while importing."""


class DiscoveryError(DasyncError):
    """The module imported fine but does not define what ``dasync run`` needs."""


def module_name_for(path: str | Path) -> str:
    """The module name a service file is imported under: its file name without ``.py``."""
    return Path(path).stem


def load_module(path: str | Path) -> ModuleType:
    """Import the Python file at ``path`` and return the module.

    The file's directory goes first on ``sys.path`` (as ``python file.py`` does)
    so that sibling imports such as ``from contracts import Order`` work, and
    the module is registered in ``sys.modules`` under its file name so that
    type hints, pickled names and exception types resolve to it.
    """
    file = Path(path).expanduser()
    if not file.exists():
        raise ModuleLoadError(f"{path}: no such file")
    if file.is_dir():
        raise ModuleLoadError(f"{path}: is a directory; give the .py file that defines services")
    if file.suffix != ".py":
        raise ModuleLoadError(f"{path}: not a Python file (expected a .py file)")
    file = file.resolve()
    name = module_name_for(file)
    if not name.isidentifier():
        raise ModuleLoadError(
            f"{path}: {name!r} is not a valid module name; rename the file "
            "(letters, digits and underscores, not starting with a digit)"
        )
    existing = sys.modules.get(name)
    if existing is not None:
        existing_file = getattr(existing, "__file__", None)
        if existing_file is not None and Path(existing_file).resolve() == file:
            return existing
        where = existing_file or "a built-in module"
        raise ModuleLoadError(
            f"{path}: the module name {name!r} is already taken by {where}; rename the file"
        )

    directory = str(file.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:  # pragma: no cover - only for odd loaders
        raise ModuleLoadError(f"{path}: cannot be imported as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        detail = _user_traceback(exc, str(file))
        if isinstance(exc, ImportError) and "relative import" in str(exc):
            detail += (
                f"\nhint: the file is imported as the top-level module {name!r}, with its "
                "folder on sys.path; import siblings absolutely (from contracts import ...)"
            )
        raise ModuleLoadError(
            f"{path}: importing it failed with {type(exc).__name__}: {exc}"
            + (f"\n{detail}" if detail else "")
        ) from exc
    return module


def discover(module: ModuleType) -> tuple[list[type], Callable[..., Any] | None]:
    """The service classes ``module`` defines and its ``async def main`` (or None).

    Only classes defined in the module are services to run; ones it imports
    belong to another file (and probably another deployment). A module with a
    ``main`` and no services is accepted: its main may call services that run
    elsewhere.
    """
    where = getattr(module, "__file__", None) or module.__name__
    services = services_in_module(module)
    main = _find_main(module, where)
    if services or main is not None:
        return services, main

    defined = [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if obj.__module__ == module.__name__
    ]
    _no_async_contract(where, defined)
    contracts = [c.__name__ for c in defined if is_contract(c) and _is_protocol(c)]
    others = [c.__name__ for c in defined if c.__name__ not in contracts]
    imported = sorted(
        f"{obj.__name__} (from {obj.__module__})"
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if obj.__module__ != module.__name__ and is_service_class(obj)
    )
    lines = [f"{where} defines no service and no 'async def main()': {SERVICE_RULE}."]
    lines.append("found classes: " + (", ".join(others) if others else "none"))
    if contracts:
        lines.append(
            "found contracts (Protocols) without an implementation here: "
            + ", ".join(contracts)
            + " -- run the file that implements them"
        )
    if imported:
        lines.append(
            "imported services are not run from here: "
            + ", ".join(imported)
            + " -- run the file that defines them"
        )
    raise DiscoveryError("\n".join(lines))


def _no_async_contract(where: str, defined: list[type]) -> None:
    """Raise if what stopped discovery is a contract written with plain ``def`` methods.

    Such a Protocol is no contract (``is_contract`` wants an ``async def`` or an
    event), so its implementations are no services and the module would look
    empty; the real problem is the missing ``async``. Considered: the Protocols
    the module defines, and the Protocols its classes implement (imported
    contracts included).
    """
    found: dict[type, list[str]] = {}  # protocol -> the module's classes implementing it
    for cls in defined:
        for klass in cls.__mro__:
            if plain_def_methods(klass):
                implementers = found.setdefault(klass, [])
                if klass is not cls and not _is_protocol(cls):
                    implementers.append(cls.__name__)
    if not found:
        return
    described = []
    for protocol, implementers in found.items():
        methods = ", ".join(f"{protocol.__name__}.{m}" for m in plain_def_methods(protocol))
        by = f" (implemented by {', '.join(implementers)})" if implementers else ""
        described.append(
            f"contract {protocol.__name__}{by} has only plain 'def' methods: {methods}"
        )
    example = plain_def_methods(next(iter(found)))[0]
    raise DiscoveryError(
        f"{where}: methods of a contract must be 'async def'; "
        + "; ".join(described)
        + f"\nhint: declare them 'async def {example}(self, ...) -> ...' in the contract and in "
        "its implementation (a call to a service is a durable message, awaited by the caller); "
        "a Protocol without any 'async def' method or dasync.Event is not a contract, so no "
        "service was found"
    )


def _find_main(module: ModuleType, where: str) -> Callable[..., Any] | None:
    main: Callable[..., Any] | None = getattr(module, "main", None)
    if main is None:
        return None
    if not callable(main):
        raise DiscoveryError(f"{where}: 'main' must be an 'async def main(...)' function")
    if not inspect.iscoroutinefunction(main):
        raise DiscoveryError(
            f"{where}: main() must be declared 'async def main(...)' to run as a routine, "
            f"found a plain {type(main).__name__}"
        )
    return main


def _is_protocol(cls: type) -> bool:
    return bool(getattr(cls, "_is_protocol", False))


def _user_traceback(exc: BaseException, file: str) -> str:
    """The traceback from the user's file on, without importlib's or dasync's frames."""
    if isinstance(exc, SyntaxError):  # no frame in the file: show the offending line
        return "".join(traceback.format_exception_only(exc)).rstrip()
    frames = traceback.extract_tb(exc.__traceback__)
    for i, frame in enumerate(frames):
        if frame.filename == file:
            kept = [f for f in frames[i:] if not f.filename.startswith("<frozen importlib")]
            text = "".join(traceback.StackSummary.from_list(kept).format())
            return ("Traceback (most recent call last):\n" + text).rstrip()
    return ""
