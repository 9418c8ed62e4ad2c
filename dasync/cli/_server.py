"""``dasync server status|stop``: the embedded NATS server of the current directory."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import EXIT_OK, EXIT_UNAVAILABLE, err, out
from ._nats import EMBEDDED_DIR, find_embedded, live_users

__all__ = ["add_parser"]

DESCRIPTION = """\
Look at or stop the embedded NATS server of this directory: the nats-server
that 'dasync run' starts when no --nats URL is given, listening on 127.0.0.1
with its store in ./.dasync/nats/. It normally stops by itself when the last
dasync process using it exits; 'stop' is for a server left behind (a killed
'dasync run') or to stop it while processes still use it (they keep trying
to reconnect). Stopping loses nothing: the next 'dasync run' here finds every
message and journal again.
"""

EPILOG = """\
exit status:
  0    status: the server is running; stop: it is stopped (or was not running)
  3    status: no server is running for this directory
"""


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "server",
        help="status or stop of this directory's embedded NATS server",
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=parents,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    status = actions.add_parser(
        "status",
        help="say whether the server runs, where, and which dasync processes use it",
        description="Say whether the embedded NATS server of this directory runs, and where.",
        epilog=EPILOG,
        parents=parents,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.set_defaults(handler=status_command)
    stop = actions.add_parser(
        "stop",
        help="stop the server, whoever uses it (its data stays)",
        description="Stop the embedded NATS server of this directory, whoever uses it.",
        epilog=EPILOG,
        parents=parents,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stop.set_defaults(handler=stop_command)


def status_command(args: argparse.Namespace) -> int:
    home = EMBEDDED_DIR / "nats"
    server = find_embedded()
    if server is None:
        out(f"dasync: no NATS server is running for this directory (./{home})")
        return EXIT_UNAVAILABLE
    out(f"dasync: the NATS server of this directory runs at {server.url} (pid {server.pid})")
    out(f"  store: ./{home}/jetstream")
    out(f"  log:   ./{home}/server.log")
    users = live_users(home)
    out("  used by dasync processes: " + (", ".join(map(str, users)) if users else "none"))
    return EXIT_OK


def stop_command(args: argparse.Namespace) -> int:
    from ..transports.nats import NatsServerError, stop_embedded

    home = EMBEDDED_DIR / "nats"
    server = find_embedded()
    users = live_users(home)
    try:
        stopped = stop_embedded(EMBEDDED_DIR)
    except (OSError, NatsServerError) as exc:
        err(f"error: cannot stop the server in ./{home}: {exc}")
        return EXIT_UNAVAILABLE
    if not stopped:
        out(f"dasync: no NATS server is running for this directory (./{home})")
        return EXIT_OK
    pid = f" (pid {server.pid})" if server is not None else ""
    out(f"dasync: stopped the NATS server of this directory{pid}; its data stays in ./{home}")
    if users:
        out(
            "dasync: still running here and reconnecting until a server is back: "
            "dasync processes " + ", ".join(map(str, users))
        )
    return EXIT_OK
