"""``dasync call Service.method '{json}'``: start a routine in running services, print it."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from .._codec import decode_failure
from .._errors import DasyncError
from .._runtime import Client
from .._runtime._connect import connect
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    describe_exception,
    err,
    out,
    pretty_json,
    trim_traceback,
)

__all__ = ["add_parser", "call_command"]

DEFAULT_URL = "nats://127.0.0.1:4222"
"""Where ``dasync call`` looks when neither --url nor DASYNC_URL is given."""

DESCRIPTION = """\
Call a method of a running service and print its result as JSON.

The call starts a routine exactly as a proxy call from Python would: ARGS is
one JSON object keyed by parameter name, checked against the method's type
hints by the service, e.g. '{"item": "book", "qty": 2}'. The result is
printed on stdout; if the routine raises, its exception type and message are
printed on stderr and the exit status is 1.

The services must run in another process reachable at --url, which needs the
NATS transport (nats://host:port). memory:// only reaches services inside one
process, so it cannot be used from this command.
"""

EPILOG = """\
examples:
  dasync call Shop.place_order '{"item": "book", "price": "12.50"}'
  dasync call PaymentTerminal.ledger --url nats://10.0.0.5:4222 --timeout 5

exit status:
  0    the routine returned; its result is on stdout
  1    the routine raised, could not be delivered, or did not reply in time
  2    the command line is wrong (bad target, bad JSON, unsupported URL)
"""


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "call",
        help="call a method of a running service and print the result",
        description=DESCRIPTION,
        epilog=EPILOG,
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
        "--url",
        default=os.environ.get("DASYNC_URL", DEFAULT_URL),
        help=f"where the services run (default: $DASYNC_URL or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help=(
            "stop waiting after this long, 0 for no limit (default: 30); the routine "
            "itself keeps running, only this command gives up"
        ),
    )
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="on failure, also print the traceback recorded where the routine raised",
    )
    parser.set_defaults(handler=call_command)


def call_command(args: argparse.Namespace) -> int:
    """Entry point of ``dasync call``."""
    try:
        service, method = _parse_target(args.target)
        payload = _parse_args(args.args)
        return asyncio.run(_call(args, service, method, payload))
    except CliError as exc:
        err(f"error: {exc}")
        return exc.code
    except KeyboardInterrupt:
        err("dasync: interrupted; the routine, if it started, keeps running")
        return EXIT_FAILED


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


async def _call(args: argparse.Namespace, service: str, method: str, payload: bytes) -> int:
    timeout = args.timeout if args.timeout and args.timeout > 0 else None
    target = f"{service}.{method}"
    async with _open_client(args.url, timeout) as client:
        try:
            ok, body = await asyncio.wait_for(client.call_raw(service, method, payload), timeout)
        except TimeoutError:
            raise CliError(
                f"no reply from {target} within {args.timeout:g} s at {args.url} "
                f"(is a worker for {service} running? the routine keeps running)"
            ) from None
        except DasyncError as exc:  # e.g. the transport knows no such service
            raise CliError(f"{target}: {describe_exception(exc)}") from None
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
    err(f"error: {target} raised {describe_exception(failure)}")
    return EXIT_FAILED


# --- the one place where `dasync call` chooses a transport for a URL ---------------------


@asynccontextmanager
async def _open_client(url: str, connect_timeout: float | None) -> AsyncIterator[Client]:
    """A client connected to ``url``; every transport decision of ``dasync call`` is here.

    ``memory://`` is refused up front: it reaches services of this process only,
    and this process runs none, so the call would wait forever. Other URLs go
    to ``dasync.connect``, which gains ``nats://`` with the NATS transport.
    """
    if url.startswith("memory:"):
        raise CliError(
            f"--url {url}: the in-memory transport only reaches services in the same "
            "process, and 'dasync call' runs in its own; give the NATS URL of the running "
            "services (--url nats://host:4222, needs the NATS transport)",
            EXIT_USAGE,
        )
    async with AsyncExitStack() as stack:
        try:
            client = await asyncio.wait_for(
                stack.enter_async_context(connect(url)), connect_timeout
            )
        except ValueError as exc:  # connect() rejects URLs of transports it does not have
            raise CliError(f"--url {url}: {exc}", EXIT_USAGE) from None
        except TimeoutError:
            raise CliError(f"cannot connect to {url} within {connect_timeout:g} s") from None
        except (OSError, DasyncError) as exc:
            raise CliError(f"cannot connect to {url}: {describe_exception(exc)}") from None
        yield client
