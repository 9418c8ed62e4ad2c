"""``dasync purge SERVICE... [--older-than DURATION] [--dry-run]``: remove old journals now."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from .._errors import DasyncError
from .._runtime._retention import purge
from ._call import _locate
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
    describe_exception,
    err,
    out,
    parse_duration,
)
from ._dead_letters import _closing
from ._nats import add_nats_arguments, connect_options, resolve_target
from ._run import DEFAULT_RETENTION_TEXT, RETENTION_VAR

__all__ = ["add_parser", "purge_command"]

DESCRIPTION = f"""\
Remove the journals of routines of the given services that finished longer
ago than --older-than. Routines that are still running are never touched,
however old. Workers do this by themselves every so often (dasync run
--retention, default {DEFAULT_RETENTION_TEXT}); this command does it now, e.g. after
lowering the retention, or with --dry-run to see what a pass would remove.

Once a journal is removed, its routine's result can no longer be read, and a
start repeated with the same routine id runs the routine again.
"""

EPILOG = f"""\
example:
  dasync purge Orders Payments --older-than 30d --dry-run

environment:
  {RETENTION_VAR}: the default of --older-than ({DEFAULT_RETENTION_TEXT} when unset).

exit status:
  0    done (possibly nothing to remove)
  1    the journal store cannot remove journals
  2    the command line or a DASYNC_* variable is wrong
  3    NATS unavailable, or the server refused (the user may not purge journals)
"""


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "purge",
        help="remove the journals of routines that finished long ago",
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=parents,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("services", metavar="SERVICE", nargs="+", help="service names")
    parser.add_argument(
        "--older-than",
        metavar="DURATION",
        help=f"7d, 12h, 30m or seconds (default: ${RETENTION_VAR}, else {DEFAULT_RETENTION_TEXT})",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="count what would be removed, remove nothing"
    )
    add_nats_arguments(parser, memory=False)
    parser.set_defaults(handler=purge_command)


def purge_command(args: argparse.Namespace) -> int:
    try:
        older_than = _older_than(args)
        target = resolve_target(args, command="purge")
        return asyncio.run(_run(args, target, older_than))
    except CliError as exc:
        err(f"error: {exc}")
        return exc.code


def _older_than(args: argparse.Namespace) -> float:
    text, source = args.older_than, "--older-than"
    if text is None:
        text, source = os.environ.get(RETENTION_VAR, "").strip(), f"${RETENTION_VAR}"
        if text.lower() == "forever":
            raise CliError(f"{source} is 'forever': say how old with --older-than", EXIT_USAGE)
    if not text:
        text = DEFAULT_RETENTION_TEXT
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CliError(f"{source}: {exc}", EXIT_USAGE) from None


async def _run(args: argparse.Namespace, target: Any, older_than: float) -> int:
    options, where = _locate(target)
    transport, store = await connect_options(options, wait=10.0)
    try:
        for service in args.services:
            try:
                report = await purge(store, service, older_than, dry_run=args.dry_run)
            except LookupError as exc:
                raise CliError(str(exc), EXIT_FAILED) from None
            except (DasyncError, OSError) as exc:
                raise CliError(
                    f"cannot purge the journals of {service} on {where}: "
                    f"{str(exc) or describe_exception(exc)}",
                    EXIT_UNAVAILABLE,
                ) from None
            verb = "would remove" if args.dry_run else "removed"
            out(
                f"{service}: {verb} {report.purged} finished routines; kept "
                f"{report.running} running and {report.recent} finished recently"
            )
        return EXIT_OK
    finally:
        await _closing("the NATS transport", transport.close())
        await _closing("the NATS journal store", store.close())
