"""The ``dasync`` command: ``run FILE``, ``call SERVICE.METHOD ARGS``, ``server status|stop``.

Plain argparse (no extra dependency); one module per command, each adding its
own subparser, so that new commands do not touch the others.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence

from .. import __version__
from . import (
    _call,
    _codegen,
    _console,
    _dead_letters,
    _gateway,
    _manage,
    _permissions,
    _provision,
    _purge,
    _run,
    _server,
)
from ._common import EXIT_USAGE, add_log_level, setup_logging

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
dasync runs plain async Python services as durable workflows: every call
between services is a persisted message, and a routine resumes where it
stopped after a crash or restart.
"""

EPILOG = """\
'dasync COMMAND --help' describes each command; examples/README.md shows them at work.
"""


def build_parser() -> argparse.ArgumentParser:
    """The full command-line parser (exposed for tests and documentation)."""
    parser = argparse.ArgumentParser(
        prog="dasync",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dasync {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    add_log_level(common)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _run.add_parser(commands, [common])
    _call.add_parser(commands, [common])
    _server.add_parser(commands, [common])
    _dead_letters.add_parser(commands, [common])
    _permissions.add_parser(commands, [common])
    _provision.add_parser(commands, [common])
    _codegen.add_parser(commands, [common])
    _purge.add_parser(commands, [common])
    _gateway.add_parser(commands, [common])
    _console.add_parser(commands, [common])
    _manage.add_parsers(commands, [common])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dasync`` command; returns the exit status."""
    _line_buffered_stdout()
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    setup_logging(args.log_level)
    status: int = handler(args)
    return status


def _line_buffered_stdout() -> None:
    """Show each line as it is printed, even into a pipe (``| tee``, a test reading lines)."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
