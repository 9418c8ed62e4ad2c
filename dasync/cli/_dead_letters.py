"""``dasync dead-letters SERVICE [--retry ID]``: list poison messages, or put one back."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ..transports import DeadLetters
from ._call import _locate
from ._common import EXIT_FAILED, EXIT_OK, CliError, err, out
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


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "dead-letters",
        help="list (or retry) the poison messages of a service",
        description=DESCRIPTION,
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
            try:
                await transport.retry_dead_letter(args.service, args.retry)
            except LookupError as exc:
                raise CliError(str(exc), EXIT_FAILED) from None
            out(f"dead letter {args.retry} of {args.service} is back in its queue")
            return EXIT_OK
        letters = await transport.dead_letters(args.service)
        if not letters:
            out(f"{args.service} has no dead letters ({where})")
        for letter in letters:
            kind = letter.message.headers.get("dasync-kind", "?")
            routine = letter.message.headers.get("dasync-routine", "?")
            out(f"{letter.id}\t{kind}\troutine {routine}\t{letter.message.msg_id}")
            out(f"\t{letter.reason}")
        return EXIT_OK
    finally:
        await transport.close()
        await store.close()
