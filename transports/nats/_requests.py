"""The protocol bytes of a publish, and answers to requests on one wildcard inbox.

Every step of a routine makes several JetStream requests (a claim, the journal
append, the index write, the messages of its outbox) and each costs, through
nats-py's ``request``: a NUID plus two random bytes for its token, the headers
checked key by key with a regex, a future with a done-callback, a ``wait_for``
(a wrapper future and a timer) and, for the answer, a hop through a queue and a
task of the response subscription before the future is set. With 64 publishes in
flight that is 58-63 us of this process's CPU per JetStream publish against 26-31 us
here (``benchmarks/requests.py``, docs/benchmarks.md).

Here a request's token is a counter with a random tag (unique, and unguessable by
whoever saw an earlier reply subject) on our own wildcard inbox, its PUB or HPUB bytes
are built in one go, and its future is resolved by the connection's read loop
directly: the inbox's subscription has no callback (so no task), and its queue is an
``Answers``, whose ``put_nowait`` is that resolution. Timeouts are one timer per
connection, sweeping every quarter second while requests are outstanding, not one
per request.

Only ``_connection`` uses this module: with it, it is the one place that knows
nats-py, including the few private members used here (the client's ``_status``,
``_pending``, ``_pending_data_size``, ``_max_payload``, ``_flush_queue``,
``_flush_pending``, ``_max_pending_size``, ``_transport``, a subscription's
``_pending_queue``). A ``LeanClient`` writes what is pending itself, once per turn of
the loop (``_flush_now``), rather than through nats-py's flusher task.
``lean_supported`` checks they exist; without them the connection keeps to nats-py's
public API (tests pin which path runs).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.aio.transport import TcpTransport

from ._protocol import LeanParser

__all__ = [
    "Answers",
    "DirectQueue",
    "Forward",
    "header_block",
    "install",
    "lean_supported",
    "pub_command",
    "valid_header_name",
    "write",
]

_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""A header name: an RFC 7230 token (what nats-py's ``publish`` accepts)."""
_known_keys: set[str] = set()
_KEYS_KEPT = 512
_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_TICK = 0.25
"""Seconds between sweeps for requests past their timeout (while any are outstanding)."""
_TAGS = 256
"""Random tags drawn at a time (one ``os.urandom`` per 256 requests)."""
_CLIENT_MEMBERS = (
    "_status", "_pending", "_pending_data_size", "_max_payload", "_flush_queue",
    "_flush_pending", "_max_pending_size", "_transport", "stats",
)  # fmt: skip
_CONNECTED = NatsClient.CONNECTED


def lean_supported(nc: NatsClient) -> bool:
    """Whether this nats-py client has the members the lean path relies on."""
    return all(hasattr(nc, name) for name in _CLIENT_MEMBERS)


def valid_header_name(name: str) -> bool:
    """Whether ``name`` may be sent as a header name (a token: no space, colon, quote...)."""
    return name in _known_keys or _KEY.fullmatch(name) is not None


def _check_key(name: str) -> None:
    if not _KEY.fullmatch(name):
        raise nats.errors.BadHeaderError(name)
    if len(_known_keys) < _KEYS_KEPT:  # a dead letter copies a sender's names: bounded
        _known_keys.add(name)


def header_block(headers: Mapping[str, str]) -> bytes:
    """``NATS/1.0`` and the header lines, as nats-py's ``publish`` writes them: a name must
    be a token (else ``BadHeaderError``), a value's CR or LF (which would end the line and
    let the rest pose as protocol) becomes a space."""
    for name in headers:
        if name not in _known_keys:
            _check_key(name)
    text = "NATS/1.0\r\n" + "".join([f"{k}: {v}\r\n" for k, v in headers.items()]) + "\r\n"
    lines = len(headers) + 2  # one CR LF per header, the version line's and the last
    if text.count("\n") != lines or text.count("\r") != lines:  # rare: a value had one
        safe = {k: v.translate(_NEWLINES) for k, v in headers.items()}
        text = "NATS/1.0\r\n" + "".join([f"{k}: {v}\r\n" for k, v in safe.items()]) + "\r\n"
    return text.encode()


def pub_command(subject: str, reply: str, headers: bytes | None, payload: bytes) -> bytes:
    """The ``PUB``/``HPUB`` line and body. Subjects are ours (built from checked tokens) or
    the server's (ack subjects); whitespace in one would split the line, so it is refused."""
    if _splits(subject) or (reply and _splits(reply)):
        raise ValueError(f"invalid NATS subject {subject!r} / {reply!r}")
    if headers is None:
        if reply:
            return b"PUB %s %s %d\r\n%s\r\n" % (
                subject.encode(), reply.encode(), len(payload), payload,
            )  # fmt: skip
        return b"PUB %s %d\r\n%s\r\n" % (subject.encode(), len(payload), payload)
    size = len(headers)
    if reply:
        return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
            subject.encode(), reply.encode(), size, size + len(payload), headers, payload,
        )  # fmt: skip
    return b"HPUB %s %d %d\r\n%s%s\r\n" % (
        subject.encode(), size, size + len(payload), headers, payload,
    )  # fmt: skip


def _splits(subject: str) -> bool:
    return not subject or " " in subject or "\t" in subject or "\r" in subject or "\n" in subject


async def write(nc: NatsClient, command: bytes, payload_size: int) -> None:
    """Queue ``command`` for the connection's flusher, with the checks nats-py's
    ``publish`` makes (closed, draining, buffer full while reconnecting, too large)."""
    if nc._status != _CONNECTED:  # the hot path is connected: one comparison
        if nc.is_closed:
            raise nats.errors.ConnectionClosedError
        if nc.is_draining_pubs:
            raise nats.errors.ConnectionDrainingError
        if not nc.is_connected:
            limit = nc._max_pending_size
            if limit <= 0 or len(command) + nc._pending_data_size > limit:
                raise nats.errors.OutboundBufferLimitError
    if payload_size > nc._max_payload:
        raise nats.errors.MaxPayloadError
    stats = nc.stats  # what nats-py's publish counts
    stats["out_msgs"] += 1
    stats["out_bytes"] += payload_size
    # nats-py's _send_command, without a coroutine per command
    nc._pending.append(command)
    nc._pending_data_size += len(command)
    if 0 < nc._max_pending_size < nc._pending_data_size:
        await nc._flush_pending(force_flush=True)
    elif (soon := getattr(nc, "_flush_soon", None)) is not None:  # a LeanClient
        if not soon:
            nc._flush_soon = True  # type: ignore[attr-defined]
            asyncio.get_running_loop().call_soon(_flush_now, nc)
    elif (queue := nc._flush_queue) is not None and queue.empty():
        await nc._flush_pending()


_WRITER_FULL = 64 * 1024
"""Bytes waiting in the socket's buffer above which a flush is left to nats-py's flusher,
which waits for them to drain (asyncio's default high-water mark)."""


def _flush_now(nc: NatsClient) -> None:
    """Write what is pending, at the loop's next turn (``LeanClient``): what nats-py's
    flusher task does, without a future, a queue and a task wake-up per flush. Anything
    unusual (not connected, another transport, a full socket buffer, a failed write)
    goes to that flusher as before: it waits out the buffer and handles the errors."""
    nc._flush_soon = False  # type: ignore[attr-defined]
    if not nc._pending_data_size or nc._status != _CONNECTED:
        return  # (not connected: kept for the reconnect to send, as nats-py keeps it)
    writer: asyncio.StreamWriter | None = getattr(nc._transport, "_io_writer", None)
    if (
        writer is not None
        and type(nc._transport) is TcpTransport
        and not writer.transport.is_closing()
        and writer.transport.get_write_buffer_size() < _WRITER_FULL
    ):
        try:
            writer.writelines(nc._pending)
        except Exception:  # the flusher meets it again and handles it, as it would have
            pass
        else:
            nc._pending = []
            nc._pending_data_size = 0
            return
    queue = nc._flush_queue
    if queue is not None and queue.empty():
        queue.put_nowait(asyncio.get_running_loop().create_future())


class DirectQueue:
    """Stands in for the ``asyncio.Queue`` of a subscription without a callback: nats-py's
    read loop calls ``put_nowait`` with each message, and ``put_nowait`` handles it then
    and there (no task takes it from a queue). Subscribe with ``pending_bytes_limit=0``:
    nobody counts the bytes back down."""

    def put_nowait(self, msg: Msg) -> None:
        raise NotImplementedError

    def qsize(self) -> int:
        return 0

    def empty(self) -> bool:
        return True

    def task_done(self) -> None:
        return None

    async def join(self) -> None:
        return None

    async def get(self) -> Any:  # no task reads this queue; kept for the interface
        await asyncio.get_running_loop().create_future()


def install(sub: Subscription, queue: DirectQueue) -> bool:
    """Make ``queue`` the one of ``sub``; False if this nats-py keeps its queue elsewhere."""
    if not isinstance(getattr(sub, "_pending_queue", None), asyncio.Queue):
        return False
    sub._pending_queue = queue  # type: ignore[assignment]
    return True


class Forward(DirectQueue):
    """Hands each message to a plain function (which must not block)."""

    def __init__(self, receive: Callable[[Msg], None]) -> None:
        self._receive = receive

    def put_nowait(self, msg: Msg) -> None:
        self._receive(msg)


class Answers(DirectQueue):
    """The queue of our wildcard inbox's subscription: each answer resolves the future
    waiting on its token as nats-py's read loop hands it over.

    Requests that outlive their timeout are failed by one sweep every ``_TICK`` s, which
    runs only while some are outstanding: memory and work follow the requests in flight,
    not the request rate, and a timeout fires at most ``_TICK`` late."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        """``<inbox prefix>.<nuid>.``: a request's reply subject is this and its token."""
        self._cut = len(prefix)
        self._waiting: dict[str, tuple[asyncio.Future[Msg], float, str]] = {}
        """token: (the future its answer resolves, deadline, the request's subject)"""
        self._count = 0
        self._tags = os.urandom(6 * _TAGS).hex()
        self._timer: asyncio.TimerHandle | None = None

    def put_nowait(self, msg: Msg) -> None:
        waiting = self._waiting.pop(msg.subject[self._cut :], None)
        if waiting is not None and not waiting[0].done():
            waiting[0].set_result(msg)

    # --- requests ---------------------------------------------------------------------------

    def expect(self, timeout: float, subject: str = "") -> tuple[str, asyncio.Future[Msg]]:
        """A fresh token and the future its answer resolves (``TimeoutError`` after
        ``timeout`` s, or at once when the server refuses a publish to ``subject``)."""
        loop = asyncio.get_running_loop()
        self._count += 1
        # the count keeps tokens unique, 48 random bits unguessable: whoever saw one reply
        # subject cannot answer the next request before the server does
        at = (self._count % _TAGS) * 12
        if at == 0:
            self._tags = os.urandom(6 * _TAGS).hex()
        token = f"{self._count:x}{self._tags[at : at + 12]}"
        future: asyncio.Future[Msg] = loop.create_future()
        self._waiting[token] = (future, loop.time() + timeout, subject)
        if self._timer is None:
            self._timer = loop.call_later(_TICK, self._sweep)
        return token, future

    def forget(self, token: str) -> None:
        """The request was never sent: nothing will answer it."""
        waiting = self._waiting.pop(token, None)
        if waiting is not None and not waiting[0].done():
            waiting[0].cancel()

    @property
    def outstanding(self) -> int:
        return len(self._waiting)

    def refuse(self, subject: str) -> int:
        """The server refused a publish to ``subject`` (compared without case, as its error
        reports it): the requests sent there fail now with ``TimeoutError`` instead of at
        their timeout (the connection maps it to the denial it recorded). How many."""
        subject = subject.lower()
        refused = [t for t, (_, _, s) in self._waiting.items() if s.lower() == subject]
        for token in refused:
            future, _, _ = self._waiting.pop(token)
            if not future.done():
                future.set_exception(TimeoutError(f"the server refused a publish to {subject}"))
        return len(refused)

    def fail_all(self, exc: BaseException) -> None:
        waiting, self._waiting = self._waiting, {}
        for future, _, _ in waiting.values():
            if not future.done():
                future.set_exception(exc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        expired = [t for t, (f, due, _) in self._waiting.items() if due <= now or f.done()]
        for token in expired:
            future, _, _ = self._waiting.pop(token)
            if not future.done():  # (a done one was cancelled by its waiter)
                future.set_exception(TimeoutError())
        self._timer = loop.call_later(_TICK, self._sweep) if self._waiting else None


_SPACE = re.compile(rb"[\t\n\x0b\x0c\r\x1c-\x1f ]")
"""What ``str.isspace`` finds in an ASCII header name."""
_names: dict[bytes, str] = {}
"""A valid header name as it arrives (blanks around it included) and its key: the same
few names come in every message, so each is checked and decoded once."""
_NAMES_KEPT = 1024


class LeanClient(NatsClient):
    """nats-py's client with a header parser that gives the same dict in one regex search
    per line instead of a generator over every character of every name (about a tenth of
    a worker's CPU, parsing the headers of each delivery and answer), and a protocol
    parser that reads and delivers each message for a fraction of nats-py's CPU
    (``_protocol.LeanParser``: same calls, same state)."""

    def __init__(self) -> None:
        super().__init__()
        self._ps = LeanParser(self)
        self._flush_soon = False
        """A write of what is pending is due at the loop's next turn (``_flush_now``)."""

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        names = _names
        for line in raw.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            key = names.get(name)
            if key is None:
                stripped = name.strip()
                if _SPACE.search(stripped) or not stripped.isascii():
                    continue  # nats-py skips names that are not ASCII or hold whitespace
                key = stripped.decode("ascii")
                if len(names) < _NAMES_KEPT:
                    names[name] = key
            out[key] = value.strip().decode("utf-8", "replace")
        return out
