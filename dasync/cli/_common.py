"""What the commands share: exit codes, errors meant for the terminal, output helpers."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from functools import cache
from pathlib import Path
from typing import Final

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "CliError",
    "add_log_level",
    "describe_exception",
    "err",
    "out",
    "parse_duration",
    "pretty_json",
    "setup_logging",
    "trim_traceback",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
"""Something ran and failed: the file did not import, a service is invalid, a routine raised."""
EXIT_USAGE: Final = 2
"""The command line itself is wrong (argparse uses 2 as well)."""
EXIT_UNAVAILABLE: Final = 3
"""No result for lack of infrastructure: NATS unreachable or not running, no reply in time."""
EXIT_INTERRUPTED: Final = 130
"""Stopped by Ctrl-C while main() was still running (128 + SIGINT, as shells report it)."""


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(d|h|m|s|)")
_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}


def parse_duration(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``45s`` or plain seconds, as seconds; ``ValueError`` if not."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or float(match[1]) <= 0:
        raise ValueError(
            f"expected a positive duration such as 7d, 12h, 30m, 45s or seconds, not {text!r}"
        )
    return float(match[1]) * _UNIT[match[2]]


class CliError(Exception):
    """An error whose message is the whole story: printed without a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def out(text: str = "") -> None:
    """A line for the user on stdout (results and progress)."""
    print(text, flush=True)


def err(text: str) -> None:
    """A line on stderr (errors and tracebacks), so stdout stays parseable."""
    print(text, file=sys.stderr, flush=True)


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="how much of dasync's own logging to show on stderr (default: warning)",
    )


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` for an exception rebuilt from a reply, remote or local."""
    type_name = getattr(exc, "type_name", None)  # RemoteError: the class we could not import
    message = getattr(exc, "message", None)
    if isinstance(type_name, str) and isinstance(message, str):
        return f"{type_name}: {message}" if message else type_name
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def pretty_json(data: bytes) -> str:
    """A reply payload as indented JSON (or as received if it is not JSON)."""
    try:
        return json.dumps(json.loads(data), indent=2, ensure_ascii=False)
    except ValueError:
        return data.decode("utf-8", "replace")


def trim_traceback(text: str) -> str:
    """A formatted traceback without dasync's own frames: the user's code is what matters.

    Tracebacks recorded by routines pass through the engine and the proxies;
    those frames say nothing about the user's bug. ``--log-level debug``
    shows them all.
    """
    kept: list[str] = []
    skipping = False
    for line in text.splitlines():
        if line.startswith('  File "'):
            path = line[len('  File "') :].split('"', 1)[0]
            skipping = _is_dasync_file(path)
        elif not line.startswith("    "):
            skipping = False
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def _is_dasync_file(path: str) -> bool:
    return any(path.startswith(prefix) for prefix in _dasync_dirs())


@cache
def _dasync_dirs() -> tuple[str, ...]:
    """dasync's package folder, plus the real folders of its symlinked subpackages."""
    package = Path(__file__).resolve().parent.parent
    dirs = [str(package)]
    for child in package.iterdir():
        if child.is_symlink():
            dirs.append(os.path.realpath(child))
    return tuple(d + os.sep for d in dirs)
