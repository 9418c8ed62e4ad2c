"""``dasync console FILE``: the web console and the gateway, from a client-only process.

``dasync gateway FILE --console`` under a name of its own: what an operator runs to
look at routines in a browser (``docs/observability.md``, "Web console"). The
services run elsewhere (``dasync run``), on the same NATS.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._gateway import add_http_arguments, gateway_command
from ._nats import ENVIRONMENT_HELP, add_nats_arguments

__all__ = ["add_parser"]

DESCRIPTION = """\
Serve the web console at http://HOST:PORT/console/ (and the HTTP gateway of
the contracts FILE defines or imports, as 'dasync gateway' does): the routines
of every service with an index, filtered by service, method, status, parent and
age; a routine's timeline (steps, calls with their targets, durations, results
and errors, timers, events, retries) with its parent and children, following it
live while it runs; dead letters and parked routines with a Retry button, and
Cancel for running routines. Server-rendered: no build step, nothing loaded
from the internet.

This process runs no workers: the services run in 'dasync run' processes on
the same NATS. Its NATS user needs to read the index and the journals (and,
to cancel or retry, the operator's rights: docs/security.md).
"""

EPILOG = """\
examples:
  dasync run examples/shop/service.py --serve &
  dasync console examples/shop/service.py                 # http://127.0.0.1:8000/console/
  dasync console service.py --http 0.0.0.0:8080 --auth auth:authenticate --authorize auth:authorize

security:
  as 'dasync gateway': --auth and --authorize name the hooks; the console asks
  the authorize hook for 'status' on each routine it shows and 'cancel' before
  a cancel or a retry. With dasync.bearer_auth/api_key_auth the console has a
  sign-in form. Forms carry a CSRF token (docs/gateway.md).

exit status:
  0    stopped by Ctrl-C or SIGTERM
  1    FILE did not load, or the HTTP address cannot be listened on
  2    the command line is wrong (bad --http, --auth, --authorize, --security)
  3    NATS is unavailable: no server running here, or cannot connect
"""


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "console",
        help="serve the web console (and the gateway) of a file's contracts",
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
        help="the container 'dasync run' would use (default: FILE's 'container', if any)",
    )
    add_http_arguments(parser, run=False, console_flag=False)
    add_nats_arguments(parser, memory=False)
    parser.set_defaults(handler=gateway_command, console=True)
