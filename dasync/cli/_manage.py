"""``dasync ls``, ``show``, ``cancel``, ``result``, ``retry``: routines by id, from outside.

Each is a thin shell over a ``Client`` method (``list_routines``, ``timeline``,
``cancel_routine``, ``routine``, ``retry_routine``), so what the command line
does a program can do too. A routine is named ``SERVICE/ID``, or ``ID`` with
``--service``, or ``ID`` alone when one service has it in its index.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from .._clock import SystemClock
from .._errors import DasyncError, RoutineFinished
from .._failures import decode_failure
from .._runtime import Client
from .._runtime._index import STATUSES
from .._runtime._timeline import mermaid, render_text
from ..transports import RoutineEntry
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
    pretty_json,
)
from ._dead_letters import _closing
from ._nats import add_nats_arguments, connect_options, resolve_target

__all__ = ["add_parsers"]

EXIT_RUNNING = 4
"""``dasync result``: the routine has not finished (and --wait was not given or ran out)."""

ROUTINE_HELP = "SERVICE/ID, or ID with --service (or an ID only one service has)"

COMMON_EPILOG = """\
exit status:
  0    done
  1    no such routine (or no dead letter of it, for retry); the routine failed (result)
  2    the command line or a DASYNC_NATS_* variable is wrong
  3    NATS unavailable: no server running here, cannot connect, or the server refused
  4    (result) the routine is still running
"""


def add_parsers(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The six commands (one registration line in ``cli/__init__.py``)."""
    ls = _parser(commands, parents, "ls", "list routines from the index", LS_DESCRIPTION)
    ls.add_argument("service", metavar="SERVICE", nargs="?", help="only this service's")
    ls.add_argument("--method", help="only routines running this method")
    ls.add_argument("--status", help=f"only routines in this status: {', '.join(STATUSES)}")
    ls.add_argument("--parent", metavar="SERVICE/ID", help="only routines this routine called")
    ls.add_argument("--older-than", metavar="DURATION", help="started at least this long ago")
    ls.add_argument("--newer-than", metavar="DURATION", help="started at most this long ago")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (0: all; 50)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(handler=_command(_ls, "ls"))

    show = _parser(commands, parents, "show", "a routine's journal as a timeline", SHOW_DESC)
    _routine_arguments(show)
    show.add_argument("--mermaid", action="store_true", help="a Mermaid sequence diagram")
    show.add_argument("--depth", type=int, default=3, help="levels of children shown (3)")
    show.add_argument(
        "--follow", action="store_true", help="then print its progress updates until it ends"
    )
    show.add_argument(
        "--export", action="store_true", help="print the journal for dasync.testing.replay"
    )
    show.set_defaults(handler=_command(_show, "show"))

    export = _parser(
        commands, parents, "export", "export journals for dasync.testing.replay", EXPORT_DESC
    )
    export.add_argument("service", metavar="SERVICE", help="the service whose routines")
    export.add_argument("--status", default="running", help="routines in this status (running)")
    export.add_argument("--method", help="only routines running this method")
    export.add_argument("--limit", type=int, default=1000, help="at most this many (0: all)")
    export.set_defaults(handler=_command(_export, "export"))

    signal = _parser(commands, parents, "signal", "send a routine a signal", SIGNAL_DESCRIPTION)
    _routine_arguments(signal)
    signal.add_argument("name", metavar="NAME", help="the signal's name")
    signal.add_argument("value", metavar="JSON", help="its value, as JSON (true, 42, '\"x\"')")
    signal.add_argument("--id", dest="signal_id", help="the signal's id: the same id is one signal")
    signal.set_defaults(handler=_command(_signal, "signal"))

    cancel = _parser(commands, parents, "cancel", "cancel a routine", CANCEL_DESCRIPTION)
    _routine_arguments(cancel)
    cancel.set_defaults(handler=_command(_cancel, "cancel"))

    result = _parser(commands, parents, "result", "a routine's result", RESULT_DESCRIPTION)
    _routine_arguments(result)
    result.add_argument("--wait", metavar="DURATION", help="wait this long for it to finish")
    result.set_defaults(handler=_command(_result, "result"))

    retry = _parser(commands, parents, "retry", "retry a parked routine", RETRY_DESCRIPTION)
    _routine_arguments(retry)
    retry.set_defaults(handler=_command(_retry, "retry"))


LS_DESCRIPTION = """\
List routines from the routine index that workers keep as routines commit
(docs/observability.md): id, service, method, status, start time, duration,
parent and error. The latest started come first; reading stops after --limit
matches, so listing the latest routines is quick however many there are.
Statuses: running, completed, failed, cancelled, retrying (waiting out a
retry backoff), parked (non-deterministic, waiting for a fix and 'dasync
retry'), dead-lettered (a message set aside; its caller was told).
"""

SHOW_DESC = """\
Print a routine's journal as a timeline: each step's input (start, replies,
timers, cancels) with its time from the start, each call with its target,
arguments, callee id, duration and result or error, retries, events fired and
the completion; the timelines of the routines it called follow their calls.
--mermaid prints a Mermaid sequence diagram instead (compensation shaded).
"""

EXPORT_DESC = """\
Print the journals of a service's routines, one JSON object per line, for
dasync.testing.replay to check a code change against before it is deployed
(docs/testing.md): by default every running routine (those a deploy would
resume under the new code). Found through the routine index.
"""

SIGNAL_DESCRIPTION = """\
Send a running routine the signal NAME with the value JSON; the routine takes it
at 'await dasync.signal(NAME, type)' (now, or when it gets there: a signal sent
before it waits is kept). A finished routine refuses it (exit 1). --id makes
sending idempotent: a signal id is taken once.
"""

CANCEL_DESCRIPTION = """\
Cancel a routine, as an operator: its main task gets CancelledError at the
await it is suspended in, its finally blocks run, and the calls it waits on
are cancelled in turn. A finished routine is not changed.
"""

RESULT_DESCRIPTION = """\
Print a routine's result as JSON (exit 0), or its error (exit 1); exit 4 while
it is still running (--wait DURATION waits for it).
"""

RETRY_DESCRIPTION = """\
Put the dead letters of a parked or dead-lettered routine back in its queue
(after deploying the fix): the routine resumes from its journal, and handles on
it wait for the new outcome. 'dasync dead-letters SERVICE' lists the letters.
"""


def _parser(
    commands: Any, parents: list[argparse.ArgumentParser], name: str, text: str, description: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=text,
        description=description,
        epilog=COMMON_EPILOG,
        parents=parents,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_nats_arguments(parser, memory=False)
    return parser


def _routine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("routine", metavar="ROUTINE", help=ROUTINE_HELP)
    parser.add_argument("--service", help="the routine's service (when ROUTINE is a bare id)")


Run = Callable[[argparse.Namespace, Client, str], Awaitable[int]]


def _command(run: Run, name: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        try:
            target = resolve_target(args, command=name)
            return asyncio.run(_connected(args, target, run))
        except CliError as exc:
            err(f"error: {exc}")
            return exc.code

    return handler


async def _connected(args: argparse.Namespace, target: Any, run: Run) -> int:
    options, where = _locate(target)
    transport, store = await connect_options(options, wait=10.0)
    try:
        return await run(args, Client(transport, store, SystemClock()), where)
    except LookupError as exc:
        raise CliError(str(exc).strip("'\""), EXIT_FAILED) from None
    except (DasyncError, OSError) as exc:
        raise CliError(
            f"on {where}: {str(exc) or describe_exception(exc)}", EXIT_UNAVAILABLE
        ) from None
    finally:
        await _closing("the NATS transport", transport.close())
        await _closing("the NATS journal store", store.close())


def _duration(text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CliError(f"{flag}: {exc}", EXIT_USAGE) from None


async def _routine(args: argparse.Namespace, client: Client) -> tuple[str, str]:
    """``(service, routine_id)`` of the command's ROUTINE: with --service as given (the
    index may not have it), else through the index."""
    if args.service:
        return args.service, args.routine
    entry = await client.find_routine(args.routine)
    return entry.service, entry.routine_id


# --- the commands -----------------------------------------------------------------------


async def _ls(args: argparse.Namespace, client: Client, where: str) -> int:
    if args.limit < 0:
        raise CliError("--limit must be 0 (all) or more", EXIT_USAGE)
    if args.status is not None and args.status not in STATUSES:
        raise CliError(f"--status {args.status}: one of {', '.join(STATUSES)}", EXIT_USAGE)
    entries = await client.list_routines(
        args.service,
        method=args.method,
        status=args.status,
        parent=args.parent,
        older_than=_duration(args.older_than, "--older-than"),
        newer_than=_duration(args.newer_than, "--newer-than"),
        limit=args.limit or None,
    )
    if args.json:
        for entry in entries:
            out(json.dumps(asdict(entry), separators=(",", ":")))
        return EXIT_OK
    if not entries:
        out(f"no routines ({where})")
        return EXIT_OK
    rows = [_row(entry) for entry in entries]
    widths = [max(len(r[i]) for r in [*rows, HEADINGS]) for i in range(len(HEADINGS))]
    for row in [HEADINGS, *rows]:
        out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


HEADINGS = ("ROUTINE", "METHOD", "STATUS", "STARTED", "TOOK", "PARENT", "ERROR")


def _row(entry: RoutineEntry) -> tuple[str, ...]:
    started = datetime.fromtimestamp(entry.started).strftime("%Y-%m-%d %H:%M:%S")
    took = "" if entry.ended is None else _took(entry.ended - entry.started)
    if entry.ended is None and entry.status in ("running", "retrying"):
        took = _took(time.time() - entry.started) + "…"
    error = entry.error if len(entry.error) <= 60 else entry.error[:59] + "…"
    return (
        f"{entry.service}/{entry.routine_id}",
        entry.method,
        entry.status,
        started,
        took,
        entry.parent,
        error,
    )


def _took(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 10 else f"{seconds:.0f}s"


async def _show(args: argparse.Namespace, client: Client, where: str) -> int:
    service, routine_id = await _routine(args, client)
    if args.export:
        out(json.dumps(await client.export_journal(service, routine_id)))
        return EXIT_OK
    timeline = await client.timeline(service, routine_id, depth=max(0, args.depth))
    if args.mermaid:
        out(mermaid(timeline).rstrip("\n"))
    else:
        for line in render_text(timeline):
            out(line)
    if args.follow:
        async for n, update in client.progress(service, routine_id):
            out(f"progress #{n}: {json.dumps(update)}")
        record = await client.routine(service, routine_id)
        if record is not None and record.outcome is not None:
            out(f"{service}/{routine_id} {'completed' if record.outcome[0] else 'failed'}")
    return EXIT_OK


async def _export(args: argparse.Namespace, client: Client, where: str) -> int:
    if args.status not in STATUSES:
        raise CliError(f"--status {args.status}: one of {', '.join(STATUSES)}", EXIT_USAGE)
    entries = await client.list_routines(
        args.service, method=args.method, status=args.status, limit=args.limit or None
    )
    exported = 0
    for entry in entries:
        try:
            out(json.dumps(await client.export_journal(entry.service, entry.routine_id)))
            exported += 1
        except LookupError:  # removed since it was indexed
            continue
    err(f"exported {exported} journal(s) of {args.service}")
    return EXIT_OK


async def _signal(args: argparse.Namespace, client: Client, where: str) -> int:
    service, routine_id = await _routine(args, client)
    try:
        value = json.loads(args.value)
    except json.JSONDecodeError as exc:
        raise CliError(f"the value is not JSON ({exc}); quote strings: '\"text\"'") from None
    try:
        sent = await client.signal(service, routine_id, args.name, value, signal_id=args.signal_id)
    except (LookupError, RoutineFinished) as exc:
        raise CliError(str(exc)) from None
    out(f"sent signal {args.name!r} to {service}/{routine_id} (id {sent})")
    return EXIT_OK


async def _cancel(args: argparse.Namespace, client: Client, where: str) -> int:
    service, routine_id = await _routine(args, client)
    await client.cancel_routine(service, routine_id)
    out(f"asked {service}/{routine_id} to cancel")
    return EXIT_OK


async def _result(args: argparse.Namespace, client: Client, where: str) -> int:
    service, routine_id = await _routine(args, client)
    wait = _duration(args.wait, "--wait")
    record = await client.routine(service, routine_id)
    if record is None and not wait:
        raise CliError(f"routine {routine_id!r} of {service} has no journal on {where}")
    outcome = None if record is None else record.outcome
    if outcome is None and wait:
        try:
            outcome = await asyncio.wait_for(client.raw_outcome(service, routine_id), wait)
        except TimeoutError:
            outcome = None
    if outcome is None:
        err(f"{service}/{routine_id} is still running")
        return EXIT_RUNNING
    ok, body = outcome
    if ok:
        out(pretty_json(body))
        return EXIT_OK
    err(f"error: {service}/{routine_id} raised {describe_exception(decode_failure(body))}")
    return EXIT_FAILED


async def _retry(args: argparse.Namespace, client: Client, where: str) -> int:
    service, routine_id = await _routine(args, client)
    letters = await client.retry_routine(service, routine_id)
    out(f"{service}/{routine_id}: {len(letters)} dead letter(s) back in the queue")
    return EXIT_OK
