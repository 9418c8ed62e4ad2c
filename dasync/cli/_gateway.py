"""``dasync gateway FILE``: serve a file's contracts over HTTP (and ``dasync run --http``).

A client-only process: it starts routines in services that run elsewhere
(``dasync run``), on the same NATS as ``dasync call`` finds it. The HTTP side
(``--http``, ``--auth``, ``--authorize``, ``--security``, ``--api-version``) is
shared with ``dasync run FILE --http``, which serves the gateway from the
process that hosts the workers. ``docs/gateway.md`` tells the API.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import ipaddress
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .._errors import DasyncError
from ._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, err, out
from ._nats import ENVIRONMENT_HELP, add_nats_arguments, locate_server, resolve_target

if TYPE_CHECKING:
    from .._runtime import Client

__all__ = [
    "DEFAULT_HTTP",
    "HttpSettings",
    "add_http_arguments",
    "add_parser",
    "gateway_command",
    "http_settings",
    "serve_http",
]

DEFAULT_HTTP = "127.0.0.1:8000"
SECURITY_CHOICES = ("bearer", "api-key")

DESCRIPTION = """\
Serve the contracts FILE defines or imports over HTTP, for callers outside.

  POST   /{Service}/{method}   start a routine with a JSON object of arguments;
                               its result (200) if it finishes within
                               'Prefer: wait=N' seconds (default 10, at most
                               300), else 202 and its URL in Location
  GET    /routines/{id}        its status, and its result or error
  DELETE /routines/{id}        cancel it
  GET    /openapi.json         the OpenAPI document ('dasync codegen openapi')

An Idempotency-Key header makes a retried POST return the routine the first
one started. Errors are RFC 9457 problem details (application/problem+json).

This process runs no workers: the services run in 'dasync run' processes on
the same NATS (--nats URL or $DASYNC_NATS_URL, else the embedded server a
'dasync run' started in this directory). 'dasync run FILE --http HOST:PORT'
serves the same API from the process that runs the services.
"""

EPILOG = """\
examples:
  dasync gateway examples/shop/service.py                    # http://127.0.0.1:8000
  dasync gateway service.py --http 0.0.0.0:8080 --auth auth:authenticate
  dasync run examples/shop/service.py --serve --http 127.0.0.1:8000
  curl -s -H 'Prefer: wait=5' -H 'Content-Type: application/json' \\
       -d '{"customer": "Ada", "item": "book", "qty": 1}' localhost:8000/Shop/place_order

security:
  --auth MODULE:ATTR names a hook (headers) -> principal, or None for a request
  without a valid credential (401); dasync.bearer_auth(...) and
  dasync.api_key_auth(...) make one. --authorize MODULE:ATTR names a hook
  (principal, service, method, action) -> bool, action being call, status or
  cancel (403 unless True). MODULE may be a file next to FILE. Put the gateway
  behind TLS; $DASYNC_GATEWAY_SECRET (the same on every replica) tags the
  routine ids it hands out (docs/gateway.md).

exit status:
  0    stopped by Ctrl-C or SIGTERM
  1    FILE did not load, or the HTTP address cannot be listened on
  2    the command line is wrong (bad --http, --auth, --authorize, --security)
  3    NATS is unavailable: no server running here, or cannot connect
"""


def add_http_arguments(
    parser: argparse.ArgumentParser, *, run: bool, console_flag: bool = True
) -> None:
    """The HTTP gateway's flags (``dasync gateway``, and ``dasync run`` with ``run``;
    ``dasync console`` serves the console always, so without ``console_flag``)."""
    group = parser.add_argument_group(
        "HTTP gateway",
        "Serve the file's contracts over HTTP (docs/gateway.md)"
        + (" from this process too" if run else "")
        + ".",
    )
    group.add_argument(
        "--http",
        metavar="HOST:PORT",
        default=None if run else DEFAULT_HTTP,
        help="listen on this address (:PORT or PORT alone: 127.0.0.1; port 0: any free port)"
        + ("" if run else f" (default: {DEFAULT_HTTP})"),
    )
    group.add_argument(
        "--auth",
        metavar="MODULE:ATTR",
        help="authenticate hook: (headers) -> principal, None for 401",
    )
    group.add_argument(
        "--authorize",
        metavar="MODULE:ATTR",
        help="authorize hook: (principal, service, method, action) -> bool, False for 403",
    )
    group.add_argument(
        "--security",
        action="append",
        choices=SECURITY_CHOICES,
        default=[],
        help="the credential the OpenAPI document declares (default: the --auth hook's, "
        "if made by dasync.bearer_auth or dasync.api_key_auth)",
    )
    group.add_argument(
        "--api-version",
        default="1.0.0",
        help="the version in the OpenAPI document's info (default: 1.0.0)",
    )
    if console_flag:
        group.add_argument(
            "--console",
            action="store_true",
            help="serve the web console under /console/ too: every routine's timeline, "
            "dead letters, retry and cancel (docs/observability.md)",
        )


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "gateway",
        help="serve a file's contracts over HTTP (no workers)",
        description=DESCRIPTION,
        epilog=EPILOG + "\n" + ENVIRONMENT_HELP,
        parents=parents,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "file", metavar="FILE", help="Python file that defines or imports contracts"
    )
    parser.add_argument(
        "--container",
        metavar="MODULE:ATTR",
        help="the container 'dasync run' would use, to construct services whose "
        "constructors take more than contracts (default: FILE's 'container', if any)",
    )
    add_http_arguments(parser, run=False)
    add_nats_arguments(parser, memory=False)
    parser.set_defaults(handler=gateway_command)


# --- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpSettings:
    """The gateway's settings from the command line, checked before anything connects."""

    host: str
    port: int
    authenticate: Callable[..., Any] | None
    authorize: Callable[..., Any] | None
    security: tuple[str, ...]
    api_version: str
    log_level: str
    console: bool = False


def http_settings(args: argparse.Namespace) -> HttpSettings | None:
    """The settings of ``args`` (``None``: no ``--http``); call once FILE is loaded, since
    the hooks' modules may sit next to it. ``CliError`` (usage) for a bad flag, or when
    Starlette and uvicorn are not installed."""
    console = bool(getattr(args, "console", False))
    if args.http is None:
        given = [f for f, v in (("--auth", args.auth), ("--authorize", args.authorize)) if v]
        given += ["--console"] if console else []
        if given or args.security:
            raise CliError(f"{', '.join(given or ['--security'])} needs --http", EXIT_USAGE)
        return None
    check_http_stack()
    from .._gateway._serve import parse_address

    try:
        host, port = parse_address(args.http)
    except ValueError as exc:
        raise CliError(f"--http: {exc}", EXIT_USAGE) from None
    authenticate = _hook(args.auth, "--auth") if args.auth else None
    authorize = _hook(args.authorize, "--authorize") if args.authorize else None
    security = tuple(dict.fromkeys(args.security))
    if not security:
        scheme = getattr(authenticate, "scheme", None)
        security = (scheme,) if scheme in SECURITY_CHOICES else ()
    if security and authenticate is None:
        raise CliError(
            f"--security {' '.join(security)} needs --auth: the OpenAPI document would "
            "declare a credential that nothing checks",
            EXIT_USAGE,
        )
    if authenticate is not None and not security:
        err(
            "dasync: warning: --auth without --security: the OpenAPI document declares no "
            "credential (pass --security bearer or api-key)"
        )
    if authenticate is None and not _loopback(host):
        err(
            f"dasync: warning: the gateway on {host} has no --auth: whoever reaches it may "
            "start any method (docs/gateway.md, 'Securing it')"
        )
    return HttpSettings(
        host, port, authenticate, authorize, security, args.api_version, args.log_level, console
    )


def check_http_stack() -> None:
    """``CliError`` saying what to install if Starlette or uvicorn is missing."""
    from .._gateway._stack import MissingHttpStack, require_http_stack

    try:
        require_http_stack()
    except MissingHttpStack as exc:
        raise CliError(str(exc), EXIT_FAILED) from None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _hook(option: str, flag: str) -> Callable[..., Any]:
    """The callable ``MODULE:ATTR`` names (MODULE may be a file next to FILE)."""
    module_name, _, attr = option.partition(":")
    if not module_name or not attr:
        raise CliError(
            f"{flag} {option!r}: expected MODULE:ATTR, e.g. auth:authenticate", EXIT_USAGE
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise CliError(
            f"{flag} {option}: cannot import {module_name!r}: {exc}", EXIT_USAGE
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CliError(
                f"{flag} {option}: {module_name!r} has no attribute {attr!r}", EXIT_USAGE
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise CliError(f"{flag} {option}: {type(obj).__name__} is not callable", EXIT_USAGE)
    return obj  # type: ignore[no-any-return]


def contracts_of_file(module: ModuleType, container: Any) -> Any:
    """The file's contracts exactly as ``dasync codegen`` builds them, so the served
    ``/openapi.json`` is the bytes ``dasync codegen openapi FILE`` writes."""
    from .. import codegen
    from ._run import main_service_name

    try:
        return codegen.contracts_of_module(module, container=container, main_name=main_service_name)
    except DasyncError as exc:
        raise CliError(str(exc)) from None


@asynccontextmanager
async def serve_http(
    settings: HttpSettings | None, contracts: Any, client: Client
) -> AsyncIterator[None]:
    """Serve the gateway while the block runs (nothing if ``settings`` is ``None``)."""
    if settings is None:
        yield
        return
    from .._gateway import gateway_app, serving

    app = gateway_app(
        contracts,
        client=client,
        authenticate=settings.authenticate,
        authorize=settings.authorize,
        security=settings.security,
        api_version=settings.api_version,
        console=settings.console,
    )
    try:
        listening = serving(app, settings.host, settings.port, log_level=settings.log_level)
        where = await listening.__aenter__()
    except (OSError, RuntimeError) as exc:
        raise CliError(f"cannot serve HTTP on {settings.host}:{settings.port}: {exc}") from None
    try:
        methods = sum(len(s.methods) for s in contracts.services)
        services = len(contracts.services)
        out(
            f"dasync: HTTP gateway at {where.url} ({_count(methods, 'method')} of "
            f"{_count(services, 'service')}; OpenAPI at {where.url}/openapi.json)"
        )
        if settings.console:
            out(f"dasync: web console at {where.url}/console/")
        yield
    finally:
        await listening.__aexit__(None, None, None)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# --- the command ----------------------------------------------------------------------------


def gateway_command(args: argparse.Namespace) -> int:
    """Entry point of ``dasync gateway``."""
    try:
        return asyncio.run(_gateway(args))
    except CliError as exc:
        err(f"error: {exc}")
        return exc.code
    except KeyboardInterrupt:  # only where signal handlers cannot be installed
        return EXIT_OK


async def _gateway(args: argparse.Namespace) -> int:
    from .._runtime._module import load_module
    from ._call import _open_client
    from ._run import _load_container, _StopSignal

    stop = _StopSignal()
    stop.install()
    try:
        check_http_stack()
        target = resolve_target(args, command="gateway")
        try:
            module = load_module(args.file)
        except DasyncError as exc:
            raise CliError(str(exc)) from None
        contracts = contracts_of_file(module, _load_container(args.container, module))
        settings = http_settings(args)
        assert settings is not None  # --http has a default here
        options, where = locate_server(target)
        out(f"dasync: gateway for {args.file} on {where}")
        async with _open_client(options, None) as client:
            async with serve_http(settings, contracts, client):
                out("dasync: ready, serving until Ctrl-C")
                signame = await stop.wait()
                out(f"dasync: {signame} received, stopping")
        return EXIT_OK
    finally:
        stop.uninstall()
