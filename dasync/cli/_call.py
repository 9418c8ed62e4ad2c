"""``dasync call Service.method '{json}'``: start a routine in running services, print it."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._codec import decode_failure
from .._errors import DasyncError, UnknownService
from .._runtime import Client
from .._runtime._connect import connect
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
    pretty_json,
    trim_traceback,
)
from ._nats import (
    ENVIRONMENT_HELP,
    Target,
    add_nats_arguments,
    connect_options,
    locate_server,
    redact,
    resolve_target,
)

if TYPE_CHECKING:
    from ..transports.nats import NatsOptions

__all__ = ["add_parser", "call_command"]

DEFAULT_TIMEOUT = 30.0

DESCRIPTION = """\
Call a method of a running service and print its result as JSON.

The call starts a routine exactly as a proxy call from Python would: ARGS is
one JSON object keyed by parameter name, checked against the method's type
hints by the service, e.g. '{"item": "book", "qty": 2}'. The result is
printed on stdout; if the routine raises, its exception type and message are
printed on stderr and the exit status is 1.

The services run in other processes ('dasync run FILE'), reached through
NATS: --nats URL (or $DASYNC_NATS_URL), else the embedded server that a
running 'dasync run' started in this directory (./.dasync/). Services run
with --memory cannot be called from here.
"""

EPILOG = """\
examples:
  dasync call Shop.place_order '{"item": "book", "price": "12.50"}'
  dasync call Payments.ledger --nats nats://nats.internal:4222 --timeout 5

exit status:
  0    the routine returned; its result is on stdout
  1    the routine raised (its error is on stderr), or no such service is deployed
  2    the command line or a DASYNC_NATS_* variable is wrong (bad target, bad JSON, bad URL)
  3    no result: no NATS server (none running here), cannot connect, or no reply in
       time (the routine id is printed; the routine itself keeps running)
  130  interrupted (the routine, if it started, keeps running)
"""


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "call",
        help="call a method of a running service and print the result",
        description=DESCRIPTION,
        epilog=EPILOG + "\n" + ENVIRONMENT_HELP,
        parents=parents,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", metavar="SERVICE.METHOD", help="e.g. Shop.place_order")
    parser.add_argument(
        "args",
        metavar="ARGS",
        nargs="?",
        default="{}",
        help="arguments as one JSON object keyed by parameter name (default: {})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=(
            f"give up after this long, connecting included; 0 for no limit (default: "
            f"{DEFAULT_TIMEOUT:g}); the routine itself keeps running, only this command stops "
            "waiting"
        ),
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="queue the call even if no worker of SERVICE has started yet; it runs when one "
        "does (bound the wait with --timeout)",
    )
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="on failure, also print the traceback recorded where the routine raised",
    )
    add_nats_arguments(parser, memory=False)
    parser.set_defaults(handler=call_command)


def call_command(args: argparse.Namespace) -> int:
    """Entry point of ``dasync call``."""
    routine_id = uuid.uuid4().hex
    try:
        service, method = _parse_target(args.target)
        payload = _parse_args(args.args)
        if args.timeout < 0:
            raise CliError(f"--timeout {args.timeout:g}: must be 0 (no limit) or more", EXIT_USAGE)
        target = resolve_target(args, command="call")
        return asyncio.run(_call(args, target, service, method, payload, routine_id))
    except CliError as exc:
        err(f"error: {exc}")
        return exc.code
    except KeyboardInterrupt:
        err(f"dasync: interrupted; routine {routine_id}, if it started, keeps running")
        return EXIT_INTERRUPTED


def _parse_target(target: str) -> tuple[str, str]:
    service, _, method = target.rpartition(".")
    if not service or not method:
        raise CliError(f"{target!r}: expected SERVICE.METHOD, e.g. Shop.place_order", EXIT_USAGE)
    return service, method


def _parse_args(text: str) -> bytes:
    """Check locally that ARGS is a JSON object; the service checks the types."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f"ARGS is not valid JSON ({exc}): {text!r}", EXIT_USAGE) from None
    if not isinstance(value, dict):
        raise CliError(
            f"ARGS must be a JSON object keyed by parameter name, e.g. "
            f'\'{{"item": "book"}}\', not {type(value).__name__} {text!r}',
            EXIT_USAGE,
        )
    return json.dumps(value).encode()


async def _call(
    args: argparse.Namespace,
    target: Target,
    service: str,
    method: str,
    payload: bytes,
    routine_id: str | None = None,
) -> int:
    routine_id = routine_id or uuid.uuid4().hex
    limit = args.timeout if args.timeout and args.timeout > 0 else None
    loop = asyncio.get_running_loop()
    deadline = None if limit is None else loop.time() + limit
    options, where = locate_server(target)
    name = f"{service}.{method}"
    async with _open_client(options, limit) as client:
        remaining = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            call = client.call_raw(service, method, payload, routine_id=routine_id, wait=args.wait)
            ok, body = await asyncio.wait_for(call, remaining)
        except TimeoutError:
            raise CliError(
                f"no reply from {name} within {args.timeout:g} s ({where}); is a worker for "
                f"{service} running? The routine keeps running: its id is {routine_id}",
                EXIT_UNAVAILABLE,
            ) from None
        except UnknownService:
            known = await _known_services(client)
            listed = f"; services known there: {', '.join(known)}" if known else ""
            raise CliError(
                f"{name}: no worker of {service} has ever started on {where}{listed}. A "
                "service is named after its contract; --wait queues the call until a "
                f"'dasync run' hosting {service} starts"
            ) from None
        except DasyncError as exc:  # e.g. the connection broke while sending
            raise CliError(f"{name}: {describe_exception(exc)}", EXIT_UNAVAILABLE) from None
    if ok:
        out(pretty_json(body))
        return EXIT_OK
    failure = decode_failure(body)
    if args.traceback:
        verbose = args.log_level == "debug"
        for note in getattr(failure, "__notes__", ()):
            err(note.rstrip() if verbose else trim_traceback(note.rstrip()))
        remote_tb = getattr(failure, "traceback", "")  # RemoteError keeps it as an attribute
        if isinstance(remote_tb, str) and remote_tb:
            err(remote_tb.rstrip() if verbose else trim_traceback(remote_tb.rstrip()))
    err(f"error: {name} raised {describe_exception(failure)}")
    return EXIT_FAILED


async def _known_services(client: Client) -> list[str]:
    """The services with a queue on the server, if this user may list streams (else [])."""
    lister = getattr(client._transport, "services", None)
    if lister is None:
        return []
    try:
        found = await asyncio.wait_for(lister(), 3.0)
    except Exception:  # a user without the right to list streams: say nothing more
        return []
    return sorted(str(s) for s in found)


# --- connecting ------------------------------------------------------------------------------


_locate = locate_server  # the name other commands used first


@asynccontextmanager
async def _open_client(options: NatsOptions, limit: float | None) -> AsyncIterator[Client]:
    """A client on ``options``, connected within ``limit`` s (``CONNECT_WAIT`` if None), open.

    Opening the client (declaring its reply inbox, consuming from it) talks to
    the server too: a refusal there, typically a NATS user whose permissions do
    not allow the inbox prefix, is a ``CliError`` (``EXIT_UNAVAILABLE``) like a
    refused connection. No JetStream request waits longer than ``limit`` (a
    refused subscription shows as a request that gets no reply); opening is not
    cut short from outside, which would leave the transport's work unfinished.
    """
    if limit is not None and options.request_timeout > limit:
        options = replace(options, request_timeout=limit)
    transport, store = await connect_options(options, wait=limit)
    try:
        async with AsyncExitStack() as stack:
            try:
                client = await stack.enter_async_context(connect(transport=transport, store=store))
            except (DasyncError, OSError) as exc:
                shown = ", ".join(redact(s) for s in options.servers)
                raise CliError(
                    f"cannot open the reply inbox of this client on NATS at {shown}: {exc}",
                    EXIT_UNAVAILABLE,
                ) from None
            yield client
    finally:
        for resource in (transport, store):
            try:
                await resource.close()
            except Exception as exc:  # the server went away: nothing of ours is lost
                err(f"dasync: warning: closing the NATS connection failed: {exc!r}")
