"""``dasync nats-provision FILE...``: create every stream of a deployment, as its provisioner.

With the permissions ``dasync nats-permissions`` prints (by default), no process
may change a stream: a user that may configure a stream can make the server
republish onto any subject, so pass for any sender. The streams are created once,
by the ``dasync-provisioner`` user, with the settings the processes will use;
processes then only declare what exists.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from .._errors import DasyncError
from ._common import EXIT_OK, EXIT_UNAVAILABLE, CliError, err, out
from ._nats import add_nats_arguments, redact, resolve_target
from ._permissions import add_deployment_arguments, deployment_users

__all__ = ["add_parser", "provision_command"]

DESCRIPTION = """\
Create every stream the services of FILE... use (work queues, journals,
leases, state, event streams, the inbox stream of each client identity), with
the provisioning settings 'dasync run' uses, connected as the deployment's
'dasync-provisioner' user. Run it before
the services start and after every change of settings; it is idempotent.
Give it the same FILEs and flags as 'dasync nats-permissions', so that it
creates exactly the streams those users may declare.
"""

EPILOG = """\
examples:
  dasync nats-permissions shop/*.py --operator > dasync-users.conf
  DASYNC_NATS_PASSWORD=... dasync nats-provision shop/*.py --operator \\
      --nats tls://nats:4222 --nats-user dasync-provisioner
"""


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "nats-provision",
        help="create every stream of a deployment, as its provisioner user",
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=parents,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_deployment_arguments(parser, namespace=False)
    add_nats_arguments(parser, memory=False)
    parser.set_defaults(handler=provision_command, provisioned=True)


def provision_command(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_provision(args))
    except CliError as exc:
        err(f"error: {exc}")
        return exc.code


async def _provision(args: argparse.Namespace) -> int:
    from ..transports.nats import _permissions as perms
    from ._call import _locate

    target = resolve_target(args, command="nats-provision")
    options, where = _locate(target)
    args.namespace = options.namespace
    users, uses = deployment_users(args)
    identities = [u.identity for u in users if u.role != perms.ROLE_PROVISIONER]
    try:
        streams = await asyncio.wait_for(perms.provision(options, uses, identities), 60)
    except (DasyncError, OSError, TimeoutError) as exc:
        shown = ", ".join(redact(s) for s in options.servers)
        reason = str(exc) or type(exc).__name__
        raise CliError(f"cannot provision on NATS at {shown}: {reason}", EXIT_UNAVAILABLE) from None
    for stream in streams:
        out(stream)
    out(f"{len(streams)} streams ready on {where}")
    return EXIT_OK
