"""Where the commands find NATS: flags, ``DASYNC_NATS_*`` variables, or the embedded server.

The one place where ``dasync run`` and ``dasync call`` turn their command line
and environment into a connection:

* ``--nats URL`` (else ``$DASYNC_NATS_URL``): an existing server or cluster,
  with the connection flags (``--nats-user``...) overriding their
  ``DASYNC_NATS_*`` variables;
* else the *embedded* server of the current directory, ``./.dasync/nats/``:
  ``dasync run`` starts it (or reuses the one another ``dasync run`` here
  started), ``dasync call`` only looks for a running one;
* ``--memory`` (``dasync run`` only): the in-memory transport of one process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from .._errors import DasyncError
from ._common import EXIT_UNAVAILABLE, EXIT_USAGE, CliError

if TYPE_CHECKING:
    from ..transports.nats import EmbeddedServer, NatsOptions, NatsStore, NatsTransport

__all__ = [
    "CONNECT_WAIT",
    "EMBEDDED_DIR",
    "ENV_VARS",
    "Target",
    "add_nats_arguments",
    "connect_options",
    "find_embedded",
    "live_users",
    "redact",
    "resolve_target",
    "start_embedded",
]

EMBEDDED_DIR = Path(".dasync")
"""The embedded server's home, relative to the working directory (``./.dasync/nats/``)."""

CONNECT_WAIT = 10.0
"""How long a command waits for a NATS server to accept its first connection."""

URL_SCHEMES = ("nats", "tls", "ws", "wss")

# (NatsOptions field, flag, environment variable, help)
_CONNECTION_FLAGS: tuple[tuple[str, str, str, str], ...] = (
    ("user", "--nats-user", "DASYNC_NATS_USER", "user name (with --nats-password)"),
    ("password", "--nats-password", "DASYNC_NATS_PASSWORD", "password of --nats-user"),
    ("token", "--nats-token", "DASYNC_NATS_TOKEN", "authentication token"),
    ("creds", "--nats-creds", "DASYNC_NATS_CREDS", "credentials file (JWT and NKey seed)"),
    ("tls_ca", "--nats-tls-ca", "DASYNC_NATS_TLS_CA", "CA bundle that signed the server's cert"),
    ("tls_cert", "--nats-tls-cert", "DASYNC_NATS_TLS_CERT", "client certificate (mutual TLS)"),
    ("tls_key", "--nats-tls-key", "DASYNC_NATS_TLS_KEY", "private key of --nats-tls-cert"),
)
_FILES = ("creds", "tls_ca", "tls_cert", "tls_key")

ENV_VARS = ("DASYNC_NATS_URL", *(env for _, _, env, _ in _CONNECTION_FLAGS))
"""Every environment variable the commands read."""


def add_nats_arguments(parser: argparse.ArgumentParser, *, memory: bool) -> None:
    """``--nats URL``, the connection flags, and ``--memory`` if the command can use it."""
    group = parser.add_argument_group(
        "NATS connection",
        "Each flag overrides its environment variable. Without --nats and "
        "$DASYNC_NATS_URL the embedded server of this directory (./.dasync/) is used; "
        "it needs no credentials.",
    )
    where = group.add_mutually_exclusive_group() if memory else group
    where.add_argument(
        "--nats",
        metavar="URL",
        help=(
            "use this NATS server or cluster (nats://host:4222, tls://... for TLS; "
            "comma-separate several servers; default: $DASYNC_NATS_URL)"
        ),
    )
    if memory:
        where.add_argument(
            "--memory",
            action="store_true",
            help=(
                "keep messages and journals in this process's memory instead of NATS "
                "(quick experiments; nothing survives exit, 'dasync call' cannot reach it)"
            ),
        )
    for option, flag, env, text in _CONNECTION_FLAGS:
        metavar = "FILE" if option in _FILES else option.upper().replace("TLS_", "")
        group.add_argument(
            flag, dest=f"nats_{option}", metavar=metavar, help=f"{text} (default: ${env})"
        )


# --- resolving the command line and environment ------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a command's messages go."""

    kind: Literal["memory", "embedded", "nats"]
    options: NatsOptions | None = None
    """The connection settings of ``kind == "nats"``."""
    source: str = ""
    """Where the URL came from: ``--nats`` or ``$DASYNC_NATS_URL``."""
    ignored: tuple[str, ...] = field(default_factory=tuple)
    """``DASYNC_NATS_*`` variables that are set but do not apply (embedded server, memory)."""

    @property
    def url(self) -> str:
        """The servers, passwords hidden (for messages)."""
        return ",".join(redact(s) for s in self.options.servers) if self.options else ""


def resolve_target(
    args: argparse.Namespace, env: Mapping[str, str] | None = None, *, command: str
) -> Target:
    """The target of ``args``; raises ``CliError`` (usage) for contradictory or bad settings."""
    env = os.environ if env is None else env
    flags = {
        option: value
        for option, _, _, _ in _CONNECTION_FLAGS
        if (value := getattr(args, f"nats_{option}", None)) is not None
    }
    env_set = tuple(
        name for name in ENV_VARS if name != "DASYNC_NATS_URL" and env.get(name, "").strip()
    )
    flag_names = [flag for option, flag, _, _ in _CONNECTION_FLAGS if option in flags]

    if getattr(args, "memory", False):
        if flag_names:
            raise CliError(
                f"{', '.join(flag_names)}: connection flags do not apply with --memory",
                EXIT_USAGE,
            )
        return Target("memory", ignored=_ignored(env, ("DASYNC_NATS_URL", *env_set)))

    url, source = args.nats, "--nats"
    if url is None:
        url, source = env.get("DASYNC_NATS_URL", "").strip() or None, "$DASYNC_NATS_URL"
    if url is None:
        if flag_names:
            raise CliError(
                f"{', '.join(flag_names)}: connection flags need --nats URL (or "
                "$DASYNC_NATS_URL); the embedded server of this directory takes no credentials",
                EXIT_USAGE,
            )
        return Target("embedded", ignored=env_set)

    servers = _check_servers(url, source, command)
    from ..transports.nats import NatsOptions

    values: dict[str, Any] = {}
    for option, flag, env_name, _ in _CONNECTION_FLAGS:
        if option in flags:
            values[option] = flags[option]
            _check_value(option, flags[option], flag)
        elif value := env.get(env_name, "").strip():
            values[option] = value
            _check_value(option, value, f"${env_name}")
    given = {o: (f if o in flags else f"${e}") for o, f, e, _ in _CONNECTION_FLAGS}
    wanted = {o: f"{f} (or ${e})" for o, f, e, _ in _CONNECTION_FLAGS}
    if "password" in values and "user" not in values:
        raise CliError(f"{given['password']} needs {wanted['user']} as well", EXIT_USAGE)
    if "token" in values and "user" in values:
        raise CliError(
            f"{given['token']} and {given['user']} are two ways to authenticate: give one",
            EXIT_USAGE,
        )
    if "tls_key" in values and "tls_cert" not in values:
        raise CliError(f"{given['tls_key']} needs {wanted['tls_cert']} as well", EXIT_USAGE)
    options = NatsOptions(servers=servers, **values)
    try:
        options.ssl_context()
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise CliError(f"cannot load the TLS files: {exc}", EXIT_USAGE) from None
    return Target("nats", options, source)


def _ignored(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n for n in names if env.get(n, "").strip())


def _check_servers(url: str, source: str, command: str) -> tuple[str, ...]:
    servers = tuple(s.strip() for s in url.split(",") if s.strip())
    if not servers:
        raise CliError(f"{source} {url!r}: no NATS server in it", EXIT_USAGE)
    for server in servers:
        if server.startswith("memory:"):
            hint = (
                "use --memory instead"
                if command == "run"
                else "the in-memory transport only reaches services in the same process, "
                "and 'dasync call' runs in its own: give the NATS URL of the running services"
            )
            raise CliError(f"{source} {server}: not a NATS URL; {hint}", EXIT_USAGE)
        parts = urlsplit(server if "://" in server else f"nats://{server}")
        if parts.scheme not in URL_SCHEMES:
            raise CliError(
                f"{source} {redact(server)}: unsupported scheme {parts.scheme!r}; "
                "use nats://host:port (or tls://, ws://, wss://)",
                EXIT_USAGE,
            )
        try:
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise CliError(f"{source} {redact(server)}: bad port number", EXIT_USAGE) from None
        if not parts.hostname:
            raise CliError(f"{source} {redact(server)}: no host name", EXIT_USAGE)
    return servers


def _check_value(option: str, value: str, where: str) -> None:
    if option in _FILES and not Path(value).expanduser().is_file():
        raise CliError(f"{where} {value}: no such file", EXIT_USAGE)


def redact(url: str) -> str:
    """``url`` with a password or token in it replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user, has_password, _ = userinfo.partition(":")
    shown = f"{user}:***" if has_password else "***"
    return urlunsplit(parts._replace(netloc=f"{shown}@{host}"))


# --- connecting ---------------------------------------------------------------------------------


async def connect_options(
    options: NatsOptions, *, wait: float | None = None
) -> tuple[NatsTransport, NatsStore]:
    """``connect_nats(options)``, giving up after ``wait`` s (default ``CONNECT_WAIT``).

    The transport retries forever (right for a worker whose server restarts);
    a command must instead fail with a message that says why.
    """
    from ..transports.nats import connect_nats

    shown = ", ".join(redact(s) for s in options.servers)
    wait = CONNECT_WAIT if wait is None else wait
    with _quiet_connection_errors() as errors:
        try:
            return await asyncio.wait_for(connect_nats(options), wait)
        except TimeoutError:
            cause = f": {errors[-1]}" if errors else ""
            raise CliError(
                f"cannot connect to NATS at {shown} within {wait:g} s{cause}", EXIT_UNAVAILABLE
            ) from None
        except (DasyncError, OSError) as exc:
            raise CliError(f"cannot connect to NATS at {shown}: {exc}", EXIT_UNAVAILABLE) from None


class _Collect(logging.Filter):
    """Keeps nats-py's connection errors (logged once per attempt) instead of printing them."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("NATS: "):
            self.errors.append(_describe_nats_error(record))
            return False
        return True


def _describe_nats_error(record: logging.LogRecord) -> str:
    exc = record.args[0] if isinstance(record.args, tuple) and record.args else None
    if isinstance(exc, BaseException):
        text = str(exc).strip().strip("'\"")
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return record.getMessage().removeprefix("NATS: ")


@contextmanager
def _quiet_connection_errors() -> Iterator[list[str]]:
    logger = logging.getLogger("dasync.nats")
    collect = _Collect()
    logger.addFilter(collect)
    try:
        yield collect.errors
    finally:
        logger.removeFilter(collect)


# --- the embedded server ------------------------------------------------------------------------


async def start_embedded(directory: Path = EMBEDDED_DIR) -> EmbeddedServer:
    """Start (or reuse) the embedded server of ``directory`` and take a lease on it."""
    from ..transports.nats import NatsServerError, ensure_embedded

    try:
        return await asyncio.to_thread(ensure_embedded, directory)
    except NatsServerError as exc:
        raise CliError(
            f"cannot start the embedded NATS server in {directory / 'nats'}: {exc}",
            EXIT_UNAVAILABLE,
        ) from None
    except OSError as exc:
        raise CliError(f"cannot use {directory} for the embedded NATS server: {exc}") from None


def find_embedded(directory: Path = EMBEDDED_DIR) -> EmbeddedServer | None:
    """The running embedded server of ``directory``, without starting one or taking a lease."""
    from ..transports.nats import EmbeddedServer
    from ..transports.nats._server import _alive, _answers, _read_info

    home = directory / "nats"
    info = _read_info(home)
    if info is None or not _alive(info["pid"]) or not _answers(info["port"]):
        return None
    return EmbeddedServer(info["url"], info["pid"], info["port"], False, home)


def live_users(home: Path) -> list[int]:
    """PIDs of the live processes holding a lease on the embedded server in ``home``."""
    from ..transports.nats._server import _alive

    pids = []
    leases = home / "leases"
    for lease in sorted(leases.iterdir()) if leases.is_dir() else ():
        if lease.name.isdigit() and _alive(int(lease.name)):
            pids.append(int(lease.name))
    return pids
