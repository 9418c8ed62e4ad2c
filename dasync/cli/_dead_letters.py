"""``dasync dead-letters SERVICE [--retry ID]``: list poison messages, or put one back."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable
from typing import Any

from .._clock import SystemClock
from .._errors import DasyncError
from .._runtime import Client
from ..transports import DeadLetters
from ._call import _locate
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    CliError,
    describe_exception,
    err,
    out,
)
from ._nats import add_nats_arguments, connect_options, resolve_target

__all__ = ["add_parser", "dead_letters_command"]

DESCRIPTION = """\
List the dead letters of a service: messages its workers set aside because
every attempt to process them failed (a non-deterministic routine, a bug),
or because they could not be decoded, each with the reason, the number of
attempts and the first and last error. The caller of such a routine got
dasync.CallFailed instead of waiting forever.

After fixing the cause and deploying the fix, --retry ID puts the message
back in the service's queue (under a new message id) and removes the letter.
"""

EPILOG = """\
exit status:
  0    listed (possibly none), or the letter is back in its queue
  1    no dead letter with that id, or the transport keeps no dead letters
  2    the command line or a DASYNC_NATS_* variable is wrong
  3    NATS unavailable: no server running here, cannot connect, or the server
       refused or did not answer reading the letters or re-queueing one
       (e.g. the user's permissions do not allow it)
"""


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "dead-letters",
        help="list (or retry) the poison messages of a service",
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=parents,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("service", metavar="SERVICE", help="the service name, e.g. Shop")
    parser.add_argument("--retry", metavar="ID", help="re-queue the dead letter with this id")
    add_nats_arguments(parser, memory=False)
    parser.set_defaults(handler=dead_letters_command)


def dead_letters_command(args: argparse.Namespace) -> int:
    try:
        target = resolve_target(args, command="dead-letters")
        return asyncio.run(_run(args, target))
    except CliError as exc:
        err(f"error: {exc}")
        return exc.code


async def _run(args: argparse.Namespace, target: Any) -> int:
    options, where = _locate(target)
    transport, store = await connect_options(options, wait=10.0)
    try:
        if not isinstance(transport, DeadLetters):
            raise CliError(f"the transport at {where} keeps no dead letters", EXIT_FAILED)
        if args.retry:
            doing = f"re-queue dead letter {args.retry} of {args.service} on {where}"
            try:
                # through a client: handles on the routine then wait for the new outcome
                await Client(transport, store, SystemClock()).retry_dead_letter(
                    args.service, args.retry
                )
            except LookupError as exc:
                raise CliError(str(exc), EXIT_FAILED) from None
            except (DasyncError, OSError) as exc:
                raise _unavailable(doing, exc) from None
            out(f"dead letter {args.retry} of {args.service} is back in its queue")
            return EXIT_OK
        try:
            letters = await transport.dead_letters(args.service)
        except (DasyncError, OSError) as exc:
            raise _unavailable(f"list the dead letters of {args.service} on {where}", exc) from None
        if not letters:
            out(f"{args.service} has no dead letters ({where})")
        for letter in letters:
            kind = letter.message.headers.get("dasync-kind", "?")
            routine = letter.message.headers.get("dasync-routine", "?")
            out(f"{letter.id}\t{kind}\troutine {routine}\t{letter.message.msg_id}")
            out(f"\t{letter.reason}")
        return EXIT_OK
    finally:
        await _closing("the NATS transport", transport.close())
        await _closing("the NATS journal store", store.close())


def _unavailable(doing: str, exc: BaseException) -> CliError:
    """A transport or permission error, as one line (exit 3, like ``dasync call``'s refusals)."""
    return CliError(f"cannot {doing}: {str(exc) or describe_exception(exc)}", EXIT_UNAVAILABLE)


async def _closing(what: str, closing: Awaitable[None]) -> None:
    """Close at exit; a failure (NATS already gone) is a warning: nothing was left half done."""
    try:
        await closing
    except Exception as exc:
        err(f"dasync: warning: closing {what} failed: {describe_exception(exc)}")
