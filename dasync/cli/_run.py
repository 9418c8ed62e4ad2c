"""``dasync run FILE``: host every service a file defines, and run its ``main()`` if it has one."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib
import inspect
import os
import re
import signal
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from .._codec import decode_failure
from .._collector import WORKER_GC_THRESHOLD, tune_collector
from .._engine import completion_of, decode_step
from .._errors import DasyncError, TransportError
from .._runtime import Runtime
from .._runtime._livelog import LiveLog
from .._runtime._module import discover, load_module
from .._runtime._observe import RoutineObserver
from ..transports import JournalStore, MemoryBroker, MemoryStore, MemoryTransport, Transport
from ..transports.memory import default_broker
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
    describe_exception,
    err,
    out,
    parse_duration,
    trim_traceback,
)
from ._gateway import add_http_arguments, contracts_of_file, http_settings, serve_http
from ._nats import (
    ENVIRONMENT_HELP,
    Target,
    add_nats_arguments,
    connect_options,
    live_users,
    resolve_target,
    start_embedded,
)

__all__ = ["Backend", "add_parser", "main_service_name", "max_crashes", "run_command"]

T = TypeVar("T")

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
the services run until Ctrl-C or SIGTERM, which stop fetching new work, let
the work in flight finish (or hand it back to other workers) and exit 0.

Messages and journals live in NATS JetStream. Without --nats (or
$DASYNC_NATS_URL), dasync starts a nats-server for this directory, listening
on 127.0.0.1 with its store in ./.dasync/nats/, or reuses the one another
'dasync run' in this directory started; the last dasync process to exit stops
it (the data stays for the next run). Run the same FILE in several processes,
or on several machines with --nats, to share the work.
"""

EPILOG = """\
examples:
  dasync run examples/coffee/service.py
  dasync run service.py --nats nats://nats.internal:4222 --nats-creds app.creds
  dasync run service.py --memory
  dasync run service.py --container app.containers:Container
  dasync run service.py --max-crashes 2
  dasync run service.py --trace console --quiet
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 dasync run service.py --trace otlp

exit status:
  0    main() returned, or stopped by Ctrl-C/SIGTERM when there is no main()
  1    the file did not import, a service is invalid, or main() raised
  2    the command line, a DASYNC_NATS_* variable, $DASYNC_MAX_CRASHES or
       $DASYNC_RETENTION is wrong
  3    NATS is unavailable: cannot connect, or the embedded server did not start
  130  interrupted while main() was still running
"""


MAX_CRASHES_VAR = "DASYNC_MAX_CRASHES"
DEFAULT_MAX_CRASHES = 3
"""``Runtime(max_crashes=...)``'s default: a message may kill two workers, not a third."""


RETENTION_VAR = "DASYNC_RETENTION"
DEFAULT_RETENTION_TEXT = "7d"

CODE_VERSION_VAR = "DASYNC_CODE_VERSION"

GC_THRESHOLD_VAR = "DASYNC_GC_THRESHOLD"

RUN_ENVIRONMENT = f"""\
  {MAX_CRASHES_VAR}: the default of --max-crashes ({DEFAULT_MAX_CRASHES} when unset).
  {RETENTION_VAR}: the default of --retention ({DEFAULT_RETENTION_TEXT} when unset).
  {CODE_VERSION_VAR}: the default of --code-version.
  {GC_THRESHOLD_VAR}: the default of --gc-threshold ({WORKER_GC_THRESHOLD} when unset).
"""


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "run",
        help="run the services (and main) defined in a Python file",
        description=DESCRIPTION,
        epilog=ENVIRONMENT_HELP + RUN_ENVIRONMENT + "\n" + EPILOG,
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
    parser.add_argument(
        "--max-crashes",
        metavar="N",
        type=_crash_limit,
        default=None,
        help=(
            "set a message aside as a dead letter (its caller gets CallFailed) once its "
            "processing killed the worker process N times, instead of letting it kill "
            f"every worker in turn (default: ${MAX_CRASHES_VAR}, else {DEFAULT_MAX_CRASHES})"
        ),
    )
    parser.add_argument(
        "--retention",
        metavar="DURATION",
        default=None,
        help=(
            "keep the journals of finished routines this long (7d, 12h, 30m, seconds; "
            "'forever' keeps them), then remove them: a start repeated with the same "
            "routine id after that runs again, and its result can no longer be read "
            f"(default: ${RETENTION_VAR}, else {DEFAULT_RETENTION_TEXT})"
        ),
    )
    parser.add_argument(
        "--code-version",
        metavar="VERSION",
        default=None,
        help=(
            "the version every journal entry names as the code that wrote it (a release "
            "or commit); routines parked by a divergence under another version are "
            f"retried when this one starts (default: ${CODE_VERSION_VAR}, else the "
            "contract's version and a digest of each service's file)"
        ),
    )
    parser.add_argument(
        "--gc-threshold",
        metavar="N",
        type=_gc_threshold,
        default=None,
        help=(
            "collect the youngest generation of Python's garbage collector after N "
            "allocations instead of Python's 700, which a worker crosses every few "
            "deliveries for nothing (0: leave the collector as Python sets it; default: "
            f"${GC_THRESHOLD_VAR}, else {WORKER_GC_THRESHOLD})"
        ),
    )
    parser.add_argument(
        "--trace",
        choices=("console", "otlp"),
        default=None,
        help=(
            "export OpenTelemetry traces: 'console' prints each span (the SDK's console "
            "exporter); 'otlp' sends spans and metrics over OTLP/HTTP to the endpoint of "
            "the OTEL_EXPORTER_OTLP_* variables (needs pip install 'dasync[otlp]'). "
            "Without it nothing is exported, unless the file sets a provider itself"
        ),
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no live log: no line per routine started, resumed, retried, parked, "
        "completed or failed",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="the live log as one JSON object per line (fields: time, event, service, "
        "method, routine, and the event's own)",
    )
    add_http_arguments(parser, run=True)
    parser.add_argument(
        "--serve",
        action="store_true",
        help="serve FILE's services without starting its main(): the worker still hosts "
        "main's routine, so a main() started elsewhere (and interrupted) can resume here",
    )
    add_nats_arguments(parser, memory=True)
    parser.set_defaults(handler=run_command)


def _gc_threshold(text: str) -> int:
    """``--gc-threshold N``: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of 0 or more, not {text!r}")
    return value


def gc_threshold(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """``--gc-threshold``, else ``$DASYNC_GC_THRESHOLD``, else the worker default."""
    flag = getattr(args, "gc_threshold", None)
    return _flag_or_env(flag, GC_THRESHOLD_VAR, _gc_threshold, WORKER_GC_THRESHOLD, env)


def _flag_or_env(
    flag: int | None,
    var: str,
    parse: Callable[[str], int],
    default: int,
    env: Mapping[str, str] | None,
) -> int:
    """A number option: the flag (parsed already), else the variable ``var`` (a bad value
    is a usage error naming it), else ``default``."""
    if flag is not None:
        return int(flag)
    text = (os.environ if env is None else env).get(var, "").strip()
    if not text:
        return default
    try:
        return parse(text)
    except argparse.ArgumentTypeError as exc:
        raise CliError(f"${var}: {exc}", EXIT_USAGE) from None


def _crash_limit(text: str) -> int:
    """``--max-crashes N``: a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def max_crashes(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """``--max-crashes``, else ``$DASYNC_MAX_CRASHES``, else the default; usage error if bad."""
    return _flag_or_env(args.max_crashes, MAX_CRASHES_VAR, _crash_limit, DEFAULT_MAX_CRASHES, env)


def retention(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> float | None:
    """``--retention``, else ``$DASYNC_RETENTION``, else 7 days; ``None`` for ``forever``."""
    text, source = args.retention, "--retention"
    if text is None:
        text = (os.environ if env is None else env).get(RETENTION_VAR, "").strip()
        source = f"${RETENTION_VAR}"
    if not text:
        text = DEFAULT_RETENTION_TEXT
    if text.strip().lower() == "forever":
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CliError(f"{source}: {exc} (or 'forever')", EXIT_USAGE) from None


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
    durable: bool = True
    """Whether routines outlive this process (not on the memory transport)."""


@asynccontextmanager
async def _open_backend(target: Target, stop: _StopSignal) -> AsyncIterator[Backend]:
    """The transport and store for ``dasync run``, and the embedded server if it is used.

    The runtime closes the transport and store when it ran; they are closed
    here too (a no-op then) for the paths where no runtime was made.
    """
    if target.kind == "memory":
        if target.ignored:
            err(f"dasync: note: {', '.join(target.ignored)} ignored: --memory uses no NATS")
        broker = default_broker()  # shared with dasync.connect("memory://") in this process
        yield Backend(
            "the in-memory transport (this process only)",
            MemoryTransport(broker),
            MemoryStore(broker),
            broker,
            durable=False,
        )
        return

    from ..transports.nats import NatsOptions, release_embedded

    embedded = None
    if target.kind == "embedded":
        if target.ignored:
            err(
                f"dasync: note: {', '.join(target.ignored)} ignored: the embedded server "
                "takes no credentials (set DASYNC_NATS_URL to use another server)"
            )
        embedded = await start_embedded()
        store_dir = f"./{embedded.directory}"
        if embedded.started:
            out(
                f"dasync: started the NATS server of this directory at {embedded.url} "
                f"(pid {embedded.pid}, store and log in {store_dir})"
            )
        else:
            out(
                f"dasync: reusing the NATS server of this directory at {embedded.url} "
                f"(pid {embedded.pid}, started by another dasync process; store in {store_dir})"
            )
        options = replace(target.options or NatsOptions(), servers=(embedded.url,))
        description = f"NATS at {embedded.url}"
    else:
        assert target.options is not None
        options = target.options
        description = f"NATS at {target.url}"
    try:
        transport, store = await stop.guard(connect_options(options))
        try:
            yield Backend(description, transport, store)
        finally:
            await _closing("the NATS transport", transport.close())
            await _closing("the NATS journal store", store.close())
    finally:
        if embedded is not None:
            if await asyncio.to_thread(release_embedded, embedded):
                out("dasync: stopped the NATS server of this directory (no dasync process uses it)")
            elif users := live_users(embedded.directory):
                pids = ", ".join(map(str, users))
                out(f"dasync: left the NATS server running for the dasync processes {pids}")
            else:
                out("dasync: the NATS server of this directory had stopped already")


# --- running -------------------------------------------------------------------------------


class _Stopped(Exception):
    """A stop signal came while starting up."""


async def _run(args: argparse.Namespace) -> int:
    stop = _StopSignal()
    stop.install()  # first, and kept until the end: no Ctrl-C traceback anywhere
    try:
        with _tracing_to(getattr(args, "trace", None), Path(args.file).stem):
            return await _run_file(args, stop)
    except CliError as exc:
        err(f"error: {exc}")
        return exc.code
    except _Stopped:
        out(f"dasync: {stop.name} received while starting, stopped")
        return EXIT_OK
    finally:
        stop.uninstall()


async def _run_file(args: argparse.Namespace, stop: _StopSignal) -> int:
    target = resolve_target(args, command="run")
    crash_limit = max_crashes(args)
    keep = retention(args)
    tune_collector(gc_threshold(args))  # this process is the workers' (dasync/_collector.py)
    try:
        module = load_module(args.file)
        services, main = discover(module)
        container = _load_container(args.container, module)
    except DasyncError as exc:
        raise CliError(str(exc)) from None
    main_name = main_service_name(module)
    http = http_settings(args)  # --http: the gateway too (dasync/cli/_gateway.py)
    contracts = contracts_of_file(module, container) if http else None
    observers: list[RoutineObserver] = []
    if not getattr(args, "quiet", False):  # the live log
        observers.append(LiveLog(json=bool(getattr(args, "json", False))))

    async with _open_backend(target, stop) as backend:
        try:
            rt = Runtime(
                services,
                container=container,
                transport=backend.transport,
                store=backend.store,
                broker=backend.broker,
                max_crashes=crash_limit,
                retention=keep,
                observers=observers,
                code_version=args.code_version or os.environ.get(CODE_VERSION_VAR) or None,
            )
            if main is not None:
                rt.host_main(main, main_name)
        except DasyncError as exc:
            raise CliError(str(exc)) from None
        except Exception as exc:  # a user constructor raised: show where
            _print_traceback(exc)
            raise CliError(f"cannot create the services: {describe_exception(exc)}") from None

        _print_plan(args.file, backend, rt, services, main)
        try:
            await _start(rt, stop, backend)
            async with serve_http(http, contracts, rt.client):
                if main is None or args.serve:
                    out("dasync: ready, serving until Ctrl-C")
                    signame = await stop.wait()
                    out(f"dasync: {signame} received, stopping")
                    return EXIT_OK
                out("dasync: ready, running main()")
                verbose = args.log_level == "debug"
                return await _run_main(rt, main_name, stop, backend, verbose=verbose)
        finally:
            if busy := rt.worker.in_flight:
                what = "1 delivery" if busy == 1 else f"{busy} deliveries"
                out(f"dasync: stopping: letting {what} in flight finish (up to 10 s)")
            await _closing("the runtime", rt.close())


@contextmanager
def _tracing_to(kind: str | None, name: str) -> Iterator[None]:
    """``--trace``: an SDK provider for the run, flushed at its end (nothing without it)."""
    if kind is None:
        yield
        return
    from .._runtime import _tracing

    try:
        _tracing.configure(kind, name)
    except RuntimeError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    try:
        yield
    finally:
        _tracing.shutdown()


async def _start(rt: Runtime, stop: _StopSignal, backend: Backend) -> None:
    """Start the runtime; a refusal by the server is a ``CliError``, not a traceback.

    Starting declares the services' queues and the runtime's reply inbox and
    consumes from them: a NATS user whose permissions do not allow a subject
    (or the inbox prefix) is refused here, after a successful connection.
    """
    try:
        await stop.guard(rt.start())
    except (TransportError, OSError) as exc:
        raise CliError(
            f"cannot start the services on {backend.description}: {exc}", EXIT_UNAVAILABLE
        ) from None
    except DasyncError as exc:
        raise CliError(f"cannot start the services: {exc}") from None


async def _closing(what: str, closing: Awaitable[None]) -> None:
    """Close something at exit; a failure (e.g. NATS already gone) is a warning, not a crash.

    Nothing is lost when closing fails: what was not acknowledged is redelivered.
    """
    try:
        await closing
    except Exception as exc:
        err(f"dasync: warning: closing {what} failed: {describe_exception(exc)}")


def main_service_name(module: ModuleType) -> str:
    """The service name ``main()`` of ``module`` is hosted under.

    Distinct per file, so that two files run against one NATS server (the two
    examples, from one directory) never take each other's ``main`` calls; the
    same for every process that runs the same file at the same path.
    """
    where = getattr(module, "__file__", None) or module.__name__
    digest = hashlib.sha256(str(Path(where).resolve()).encode()).hexdigest()[:8]
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", module.__name__)[:48]
    return f"main_{readable}_{digest}"


async def _run_main(
    rt: Runtime, name: str, stop: _StopSignal, backend: Backend, *, verbose: bool
) -> int:
    """Run main() as a routine; its reply is raw JSON, printed as it came.

    One main per file per server: an earlier run's main that did not finish (it was
    interrupted) is resumed, never doubled; a finished one leaves room for a new run.
    """
    routine_id, resuming = await _main_routine(rt, name)
    if resuming:
        out(f"dasync: resuming main() of an earlier run (routine {routine_id})")
        outcome = rt.client.raw_outcome(name, routine_id)
    else:
        outcome = rt.client.call_raw(name, "main", b"{}", routine_id=routine_id)
    call = asyncio.ensure_future(outcome)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({call, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not call.done():
        call.cancel()
        kept = (
            " (it is kept in NATS and resumes when this file runs here again)"
            if backend.durable
            else ""
        )
        out(f"dasync: {stop.name} received, main() did not finish; stopping{kept}")
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


MAIN_RUN = "run-{}"
"""The routine ids of a file's successive mains: ``run-1``, ``run-2``..."""


async def _main_routine(rt: Runtime, name: str) -> tuple[str, bool]:
    """``(routine id, resuming)``: the latest main of this file if it has not finished,
    else the next one. Runs are numbered without gaps, so the latest is found with a
    doubling then a bisecting search (a few journal reads however many runs there were);
    two processes starting at once pick the same next id, and so one routine."""

    async def exists(n: int) -> bool:
        return bool(await rt.store.load(name, MAIN_RUN.format(n)))

    high = 1
    while await exists(high):
        high *= 2
    low = high // 2  # exists (or 0): the latest run is in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        if await exists(middle):
            low = middle
        else:
            high = middle
    if low:
        entries = await rt.store.load(name, MAIN_RUN.format(low))
        if completion_of([decode_step(e) for e in entries]) is None:
            return MAIN_RUN.format(low), True
    return MAIN_RUN.format(low + 1), False


def _print_plan(
    file: str,
    backend: Backend,
    rt: Runtime,
    services: list[type],
    main: Callable[..., Any] | None,
) -> None:
    out(f"dasync: running {file} on {backend.description}")
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

    async def guard(self, work: Awaitable[T]) -> T:
        """``await work``, unless a stop signal comes first: then cancel it, raise ``_Stopped``."""
        task = asyncio.ensure_future(work)
        waiter = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise _Stopped(self._name)
        return task.result()


if sys.platform == "win32":  # pragma: no cover - SIGTERM cannot be handled there
    _StopSignal._SIGNALS = (signal.SIGINT,)
