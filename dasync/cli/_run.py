"""``dasync run FILE``: host every service a file defines, and run its ``main()`` if it has one."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import os
import signal
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .._codec import decode_failure
from .._errors import DasyncError
from .._runtime import Runtime
from .._runtime._module import discover, load_module
from ..transports import JournalStore, MemoryBroker, MemoryStore, MemoryTransport, Transport
from ..transports.memory import default_broker
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    describe_exception,
    err,
    out,
    trim_traceback,
)

__all__ = ["Backend", "add_parser", "run_command"]

MAIN_SERVICE = "main"
"""The service name ``main()`` is hosted under."""

DESCRIPTION = """\
Run the services defined in FILE.

Every service class the file itself defines is hosted (classes it imports are
not: they belong to the file that defines them). A service is a class that
subclasses its Protocol contract, or a class decorated @dasync.service.
Constructor parameters annotated with a contract receive a proxy; other
parameters come by name from the container (see --container).

If FILE defines 'async def main(...)', it runs as a durable routine once the
services are up (its parameters are injected the same way); its result is
printed and dasync exits with status 0, or 1 if main() raised. Without main,
the services run until Ctrl-C or SIGTERM.

Messages and journals currently live in memory, in this process only.
"""

EPILOG = """\
examples:
  dasync run examples/coffee/service.py
  dasync run service.py --container app.containers:Container

exit status:
  0    main() returned, or stopped by Ctrl-C/SIGTERM when there is no main()
  1    the file did not import, a service is invalid, or main() raised
  2    the command line is wrong
  130  interrupted while main() was still running
"""


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "run",
        help="run the services (and main) defined in a Python file",
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=parents,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="Python file that defines the services")
    parser.add_argument(
        "--container",
        metavar="MODULE:ATTR",
        help=(
            "a dependency_injector container (class or instance) or a mapping of "
            "parameter name to value, providing constructor parameters that are not "
            "contracts; MODULE may be a file next to FILE "
            "(default: FILE's module-level 'container', if any)"
        ),
    )
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Entry point of ``dasync run``: the synchronous shell around ``_run``."""
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        # Only reached where signal handlers cannot be installed (e.g. Windows).
        out("dasync: interrupted")
        return EXIT_OK


# --- the backend: the one place where `dasync run` chooses its transport ------------------


@dataclass(frozen=True)
class Backend:
    """Where a runtime keeps its messages and journals."""

    description: str
    transport: Transport
    store: JournalStore
    broker: MemoryBroker | None = None


@asynccontextmanager
async def _open_backend(args: argparse.Namespace) -> AsyncIterator[Backend]:
    """The transport and store for ``dasync run``.

    The single place where the command picks a backend: a ``--nats URL`` option
    (and the embedded nats-server started when it is absent) belongs here, and
    nothing else in this module needs to change. The runtime closes the
    transport and store; this context only owns what it starts itself.
    """
    broker = default_broker()  # shared with dasync.connect("memory://") in this process
    yield Backend(
        "in-memory transport (this process only)",
        MemoryTransport(broker),
        MemoryStore(broker),
        broker,
    )


# --- running -------------------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> int:
    try:
        module = load_module(args.file)
        services, main = discover(module)
        container = _load_container(args.container, module)
    except CliError as exc:
        err(f"error: {exc}")
        return exc.code
    except DasyncError as exc:
        err(f"error: {exc}")
        return EXIT_FAILED

    async with _open_backend(args) as backend:
        try:
            rt = Runtime(
                services,
                container=container,
                transport=backend.transport,
                store=backend.store,
                broker=backend.broker,
            )
            if main is not None:
                rt.host_main(main, MAIN_SERVICE)
        except DasyncError as exc:
            err(f"error: {exc}")
            return EXIT_FAILED
        except Exception as exc:  # a user constructor raised: show where
            _print_traceback(exc)
            err(f"error: cannot create the services: {describe_exception(exc)}")
            return EXIT_FAILED

        _print_plan(args.file, backend, rt, services, main)
        stop = _StopSignal()
        stop.install()  # before start, and kept until closed: no Ctrl-C traceback anywhere
        try:
            async with rt:
                if main is None:
                    out("dasync: ready, serving until Ctrl-C")
                    signame = await stop.wait()
                    out(f"dasync: {signame} received, stopping")
                    return EXIT_OK
                out("dasync: ready, running main()")
                return await _run_main(rt, stop, verbose=args.log_level == "debug")
        finally:
            stop.uninstall()


async def _run_main(rt: Runtime, stop: _StopSignal, *, verbose: bool) -> int:
    """Run main() as a routine; its reply is raw JSON, printed as it came."""
    call = asyncio.ensure_future(rt.client.call_raw(MAIN_SERVICE, "main", b"{}"))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({call, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not call.done():
        call.cancel()
        out(f"dasync: {stop.name} received, main() did not finish; stopping")
        return EXIT_INTERRUPTED
    ok, payload = call.result()
    if ok:
        out(f"dasync: main() returned {payload.decode('utf-8', 'replace')}")
        return EXIT_OK
    exc = decode_failure(payload)
    for note in getattr(exc, "__notes__", ()):
        err(note.rstrip() if verbose else trim_traceback(note.rstrip()))
    err(f"error: main() raised {describe_exception(exc)}")
    return EXIT_FAILED


def _print_plan(
    file: str,
    backend: Backend,
    rt: Runtime,
    services: list[type],
    main: Callable[..., Any] | None,
) -> None:
    out(f"dasync: running {file} on the {backend.description}")
    for hosted in rt.hosted:
        cls = type(hosted.instance)
        if cls not in services:
            continue
        label = hosted.spec.name
        if cls.__name__ != label:
            label += f" ({cls.__name__})"
        out(f"  service {label}: " + ", ".join(sorted(hosted.spec.methods)))
    if main is not None:
        params = ", ".join(inspect.signature(main).parameters)
        out(f"  main({params})")


def _print_traceback(exc: BaseException) -> None:
    err("".join(traceback.format_exception(exc)).rstrip())


# --- the container -------------------------------------------------------------------------


def _load_container(option: str | None, module: ModuleType) -> Any:
    """The user's container: ``--container MODULE:ATTR``, else the module's ``container``."""
    if option is None:
        found = getattr(module, "container", None)
        return None if found is None else _as_container(found, f"{module.__name__}.container")
    module_name, _, attr = option.partition(":")
    if not module_name or not attr:
        raise CliError(
            f"--container {option!r}: expected MODULE:ATTR, e.g. containers:Container",
            EXIT_USAGE,
        )
    try:
        source = importlib.import_module(module_name)
    except Exception as exc:
        raise CliError(f"--container {option}: cannot import {module_name!r}: {exc}") from None
    obj: Any = source
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CliError(f"--container {option}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return _as_container(obj, option)


def _as_container(obj: Any, where: str) -> Any:
    """Accept what the injector accepts; instantiate a DeclarativeContainer class.

    Duck-typed on ``providers`` so that only ``dasync._injection`` imports
    dependency_injector.
    """
    if isinstance(obj, Mapping):
        return obj
    if isinstance(obj, type) and isinstance(getattr(obj, "providers", None), Mapping):
        return obj()
    if isinstance(getattr(obj, "providers", None), Mapping):
        return obj
    raise CliError(
        f"{where} is a {type(obj).__name__}: expected a dependency_injector container "
        "(class or instance) or a mapping of parameter name to value"
    )


# --- signals -------------------------------------------------------------------------------


class _StopSignal:
    """Ctrl-C and SIGTERM as an awaitable, so that stopping is a clean shutdown.

    A second signal while stopping exits at once: a stuck shutdown must not
    make the user reach for ``kill -9``.
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._name = ""
        self._installed: list[signal.Signals] = []

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._SIGNALS:
            try:
                loop.add_signal_handler(sig, self._received, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # no loop signal support here: Ctrl-C raises KeyboardInterrupt
            self._installed.append(sig)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed.clear()

    def _received(self, sig: signal.Signals) -> None:
        if self._event.is_set():
            err(f"dasync: second {sig.name}, exiting without a clean stop")
            os._exit(EXIT_INTERRUPTED)
        self._name = sig.name
        self._event.set()

    @property
    def name(self) -> str:
        """The signal received (``SIGINT``...), or empty while none was."""
        return self._name

    async def wait(self) -> str:
        """Wait for the first signal and return its name."""
        await self._event.wait()
        return self._name


if sys.platform == "win32":  # pragma: no cover - SIGTERM cannot be handled there
    _StopSignal._SIGNALS = (signal.SIGINT,)
