"""``dasync nats-permissions FILE...``: the NATS users that lock each service to its subjects."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .._errors import DasyncError
from ._common import EXIT_OK, EXIT_USAGE, CliError, err, out

__all__ = ["add_parser", "permissions_command"]

DESCRIPTION = """\
Print the NATS permissions each service defined in FILE needs, as users of
nats-server's configuration (authorization { users = [...] }), so that an
operator can run every service under its own user, allowed to publish and
subscribe to its own subjects only.

A service's messages arrive on subjects that name their sender
(dasync.<S>.in.work, .in.svc.<caller>, .in.client.<identity>, .in.operator),
and each user may publish on its own lanes only: that is how a worker knows
who sent what. Each service's user may use its own streams, journals and
state; consume the events it subscribes to; call the services its
constructor takes; reply to the services that call it (found among the
FILEs given: list every file of the deployment together) and to clients.
A 'dasync-client' user is added for clients (dasync.connect, dasync call) that
start routines of these services; --operator adds 'dasync-operator' for
cancels, journals and dead letters ('dasync dead-letters').

Every process must connect with the inbox prefix and the client identity
printed for its user ($DASYNC_NATS_INBOX_PREFIX and $DASYNC_NATS_IDENTITY, or
NatsOptions(inbox_prefix=..., identity=...)), so that no user can read
another's replies; --shared-inbox allows the default _INBOX.> to everyone
instead.

A user that may change a stream can configure it to copy any other stream
or to republish onto any subject. So by default no user may change a stream
but a 'dasync-provisioner', which creates every stream of the deployment once,
before the rest starts ('dasync nats-provision FILE...' with its credentials);
the others may only declare the streams that exist. --self-provisioned lets
each process create and change its own streams instead: simpler, but then a
compromised service can forge any lane (docs/security.md, "Threat model").

The services are constructed in memory, as 'dasync run' would, to find the
event subscriptions their constructors make; nothing connects to NATS.
docs/security.md explains every rule, its trade-offs and the threat model.
"""

EPILOG = """\
examples:
  dasync nats-permissions shop/service.py payments/service.py > dasync-users.conf
  dasync nats-permissions service.py --combined      # one user for 'dasync run service.py'
  dasync nats-permissions *.py --operator
  dasync nats-provision *.py --nats nats://nats:4222 --nats-user dasync-provisioner ...
  dasync nats-permissions service.py --format json   # for nsc or your own tooling
"""


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "nats-permissions",
        help="print the NATS users and permissions that lock each service to its subjects",
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=parents,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--format",
        choices=["conf", "json"],
        default="conf",
        help="nats-server configuration (default) or JSON",
    )
    add_deployment_arguments(parser)
    parser.set_defaults(handler=permissions_command)


def add_deployment_arguments(parser: argparse.ArgumentParser, *, namespace: bool = True) -> None:
    """What describes a deployment's users: its files and how its processes are cut."""
    parser.add_argument(
        "files", metavar="FILE", nargs="+", help="Python file(s) that define the services"
    )
    if namespace:
        parser.add_argument(
            "--namespace",
            default=os.environ.get("DASYNC_NATS_NAMESPACE", ""),
            help="the deployment's dasync namespace (default: $DASYNC_NATS_NAMESPACE, or none)",
        )
    parser.add_argument(
        "--combined",
        action="store_true",
        help="one user per FILE, for a process that runs all its services ('dasync run FILE')",
    )
    parser.add_argument(
        "--shared-inbox",
        action="store_true",
        help="let every user subscribe to _INBOX.> (no inbox prefix to configure; weaker)",
    )
    parser.add_argument(
        "--no-client", action="store_true", help="leave out the 'dasync-client' user"
    )
    parser.add_argument(
        "--operator",
        action="store_true",
        help="add a 'dasync-operator' user: cancels, journals, dead letters (it may publish "
        "on every lane of the services, so it must be trusted as they are)",
    )
    parser.add_argument(
        "--container",
        metavar="MODULE:ATTR",
        help="the container 'dasync run' would use, to construct services whose "
        "constructors take more than contracts (default: FILE's 'container', if any)",
    )
    parser.add_argument(
        "--self-provisioned",
        dest="provisioned",
        action="store_false",
        help="let each process create and change its own streams (no provisioner; a "
        "compromised service can then forge any lane: docs/security.md)",
    )


def permissions_command(args: argparse.Namespace) -> int:
    try:
        text = _generate(args)
    except CliError as exc:
        err(f"error: {exc}")
        return exc.code
    out(text.rstrip("\n"))
    return EXIT_OK


def _generate(args: argparse.Namespace) -> str:
    from ..transports.nats import _permissions as perms

    users, _ = deployment_users(args)
    if args.format == "json":
        return perms.render_json(users)
    command = "dasync nats-permissions " + " ".join(args.files)
    return perms.render_conf(users, command=command)


def deployment_users(args: argparse.Namespace) -> tuple[list[Any], list[Any]]:
    """The users (``UserPermissions``) of the deployment ``args`` describe, and what each of
    its services does (``ServiceUse``)."""
    from .._runtime._module import discover, load_module
    from .._topology import ServiceUse, analyze
    from ..transports.nats import _permissions as perms
    from ..transports.nats import naming
    from ._run import _load_container, main_service_name

    try:
        naming.check_namespace(args.namespace)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    groups: list[tuple[str, list[ServiceUse]]] = []
    try:
        for path in args.files:
            module = load_module(path)
            services, main = discover(module)
            container = _load_container(args.container, module)
            uses = analyze(
                services,
                container=container,
                main=main,
                main_name=main_service_name(module) if main is not None else "main",
                source=path,
            )
            groups.append((path, uses))
    except DasyncError as exc:
        raise CliError(str(exc)) from None
    every = [u for _, uses in groups for u in uses]
    settings = dict(
        namespace=args.namespace, shared_inbox=args.shared_inbox, provisioned=args.provisioned
    )
    users = perms.service_users(every, **settings)
    if args.combined:
        by_service = {u.services[0]: u for u in users}
        users = [
            perms.combine([by_service[u.name] for u in uses], _process_user(path), **settings)
            for path, uses in groups
        ]
    try:
        users = perms.extra_users(
            users, every, clients=not args.no_client, operator=args.operator, **settings
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return users, every


def _process_user(path: str) -> str:
    """``dasync-run-<folder>-<file>``: ``service.py`` files are common, their folders differ."""
    file = Path(path).resolve()
    return f"dasync-run-{file.parent.name}-{file.stem}"
