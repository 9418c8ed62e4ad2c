"""Serving the app with uvicorn inside a process that owns its signals.

``dasync run`` and ``dasync gateway`` already turn Ctrl-C and SIGTERM into a
clean stop of the workers; uvicorn's own handlers would take the signals from
them, so they are off here and the stop comes from the host (``serving``'s
exit). The socket is bound before uvicorn starts: a port in use is an
``OSError`` the command can report, and port 0 gives a free port whose number
is known (the tests use it).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

__all__ = ["DEFAULT_ADDRESS", "GRACE", "Listening", "parse_address", "serving"]

DEFAULT_ADDRESS = ("127.0.0.1", 8000)
GRACE = 5
"""Seconds requests in flight get to finish once a stop began (waits answer at once)."""
_STARTED_WITHIN = 30.0


@dataclass(frozen=True)
class Listening:
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1);
    ``ValueError`` saying what is wrong."""
    text = text.strip()
    host, port = DEFAULT_ADDRESS[0], text
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [IPv6]:PORT, not {text!r}")
    elif ":" in text:
        host, _, port = text.rpartition(":")
        host = host or DEFAULT_ADDRESS[0]
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port from 0 to 65535, not {text!r}")
    return host, int(port)


class _HostedServer(uvicorn.Server):
    """uvicorn without its signal handlers (the host process decides when to stop), and
    with an event for "listening" (uvicorn itself has only a flag)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.ready.set()


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket made as ``loop.create_server`` makes its own: with
    ``IPPROTO_TCP`` (``socket.create_server`` leaves the protocol 0), which is what
    makes asyncio set ``TCP_NODELAY`` on each accepted connection. Without it, Nagle
    holds a response's body until the client acknowledges its headers: 40 ms a request
    on a keep-alive connection."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@asynccontextmanager
async def serving(
    app: Any, host: str, port: int, *, log_level: str = "warning", **uvicorn_config: Any
) -> AsyncIterator[Listening]:
    """Serve ``app`` on ``host:port`` until the block exits; yields where it listens.

    ``uvicorn_config``: more ``uvicorn.Config`` settings (``http="h11"``,
    ``root_path``...).

    ``OSError`` if the address cannot be bound; ``RuntimeError`` if the server did not
    start (its reason is in uvicorn's log). On exit, a ``Gateway`` app's waiting
    requests are answered at once, then uvicorn stops (``GRACE`` for the rest).
    """
    sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level=log_level,
        access_log=log_level == "debug",
        lifespan="on",
        **{"timeout_graceful_shutdown": GRACE, "server_header": False, **uvicorn_config},
    )
    server = _HostedServer(config)
    task = asyncio.ensure_future(_serve(server, sock))
    ready = asyncio.ensure_future(server.ready.wait())
    try:
        await asyncio.wait(
            {task, ready}, timeout=_STARTED_WITHIN, return_when=asyncio.FIRST_COMPLETED
        )
        if not server.ready.is_set():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise RuntimeError(f"the HTTP server did not start on {host}:{port}")
        yield Listening(str(bound_host), int(bound_port))
    finally:
        ready.cancel()
        gateway = getattr(getattr(app, "state", None), "gateway", None)
        if gateway is not None:
            gateway.drain()
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        sock.close()


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit:  # uvicorn's answer to a failed start-up: not this process's exit
        return
