"""The only module that talks to nats-py: one shared connection, errors mapped to dasync's.

Everything else in this package sees plain ``RawMsg`` values and dasync
exceptions: ``TransportError`` for anything infrastructural (disconnected,
timed out, refused by JetStream), ``NoResponders`` when nothing listens on a
subject (no stream), ``ApiError`` with JetStream's error code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from dasync._errors import TransportError, TransportRefused

from . import _requests as lean
from ._options import NatsOptions

__all__ = [
    "API_PREFIX",
    "ApiError",
    "Connection",
    "Inbox",
    "NoResponders",
    "PermissionDenied",
    "PubAck",
    "RECONNECTED",
    "RawMsg",
]

_log = logging.getLogger("dasync.nats")

API_PREFIX = "$JS.API"
WRONG_LAST_SEQUENCE = 10071
STREAM_NOT_FOUND = 10059
CONSUMER_NOT_FOUND = 10014


class NoResponders(TransportError):
    """Nothing listens on the subject: for JetStream, the stream (or consumer) does not exist."""


class PermissionDenied(TransportRefused):
    """The server refused a publish or subscription: the user's permissions do not allow it."""


class ApiError(TransportError):
    """JetStream refused a request; ``err_code`` is its stable error code."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        self.code = code
        self.err_code = err_code
        self.description = description
        super().__init__(f"JetStream error {code}/{err_code}: {description}")


@dataclass(frozen=True, slots=True)
class RawMsg:
    """A received NATS message, free of nats-py types."""

    subject: str
    data: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    reply: str = ""

    @property
    def status(self) -> str:
        """The status code of a control message (``100`` heartbeat, ``408`` expired...), or ''."""
        return self.headers.get("Status", "") if not self.data else ""

    @property
    def description(self) -> str:
        return self.headers.get("Description", "")


@dataclass(frozen=True, slots=True)
class PubAck:
    stream: str
    seq: int
    duplicate: bool


class _Reconnected:
    def __repr__(self) -> str:
        return "RECONNECTED"


RECONNECTED = _Reconnected()
"""Put in every open inbox when the connection comes back: outstanding pulls are lost."""


class Inbox:
    """A subscription whose messages (and reconnect markers) queue up for ``get``."""

    def __init__(self, conn: Connection, subject: str) -> None:
        self.subject = subject
        self._conn = conn
        self._queue: asyncio.Queue[RawMsg | _Reconnected] = asyncio.Queue()
        self._sub: NatsSubscription | None = None

    async def _start(self) -> None:
        queue = self._queue

        def receive(msg: Msg) -> None:
            queue.put_nowait(_raw(msg))

        nc = self._conn.nc
        with self._conn.mapped(f"subscribe {self.subject}"):
            if self._conn.lean:  # straight from the read loop: no task between
                self._sub = await nc.subscribe(self.subject, pending_bytes_limit=0)
                if lean.install(self._sub, lean.Forward(receive)):
                    return
                await self._sub.unsubscribe()

            async def on_msg(msg: Msg) -> None:
                receive(msg)

            self._sub = await nc.subscribe(self.subject, cb=on_msg)

    def _reconnected(self) -> None:
        self._queue.put_nowait(RECONNECTED)

    async def get(self, wait: float | None) -> RawMsg | _Reconnected | None:
        """The next message, ``RECONNECTED``, or ``None`` after ``wait`` seconds."""
        if not self._queue.empty():  # under load most are here already: no timer, no future
            return self._queue.get_nowait()
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
        # that races with the queue delivering, and a stopped pull loop would run on
        try:
            async with asyncio.timeout(wait):
                return await self._queue.get()
        except TimeoutError:
            return None

    def pending(self) -> list[RawMsg]:
        """Messages received but not taken yet (emptying the queue)."""
        items = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, RawMsg):
                items.append(item)
        return items

    async def close(self) -> None:
        self._conn._inboxes.discard(self)
        sub, self._sub = self._sub, None
        if sub is not None and not self._conn.nc.is_closed:
            try:
                await sub.unsubscribe()
            except nats.errors.Error as exc:
                _log.debug("unsubscribe %s: %r", self.subject, exc)


class Connection:
    """One nats-py connection shared by a transport and a store (reference-counted)."""

    def __init__(self, nc: NatsClient, options: NatsOptions) -> None:
        self.nc = nc
        self.options = options
        self._users = 0
        self._inboxes: set[Inbox] = set()
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        self._denied: dict[str, tuple[str, float]] = {}
        """Subjects (lower case, as nats-py reports them) the server recently refused us."""
        self.lean = lean.lean_supported(nc)
        """Requests and publishes take ``_requests``' path (else nats-py's public API)."""
        self._answers: lean.Answers | None = None
        self._answers_lock = asyncio.Lock()
        self.unavailable_at = time.time()
        """Wall-clock time this connection last saw the server unavailable: its opening, a
        reconnection, a JetStream publish that timed out or found no responders (a stream
        electing a leader). A lease renewed before it may have lapsed only because its holder could
        not reach the server either (``lease_lapsed``)."""

    def available_for(self) -> float:
        """Seconds since this connection last found the server unavailable."""
        return time.time() - self.unavailable_at

    def lease_lapsed(self, renewed_at: float) -> bool:
        """Whether a lease last renewed at ``renewed_at`` (the server's timestamp) has lapsed:
        ``ack_wait`` has passed since, counted from when this connection last found the
        server available. After an outage every holder gets a full ``ack_wait`` to renew
        before another worker takes its lease over (a holder cut off for that long, like
        one killed, loses it)."""
        return time.time() - max(renewed_at, self.unavailable_at) > self.options.ack_wait

    # --- lifecycle ------------------------------------------------------------------------

    @classmethod
    async def open(cls, options: NatsOptions) -> Connection:
        """Connect; a server that refuses us (credentials, TLS) fails at once.

        Unreachable servers are retried until the caller gives up (a worker may
        start before its server); a refusal will not heal by retrying, so once
        every server has refused, ``open`` raises ``TransportError`` saying why.
        """
        holder: list[Connection] = []
        refusals: list[BaseException] = []
        refused: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        async def on_error(exc: Exception) -> None:
            if not holder and _is_refusal(exc):  # still connecting, and refused
                refusals.append(exc)
                if len(refusals) >= len(options.servers) and not refused.done():
                    refused.set_result(exc)
                _log.debug("NATS: %r", exc)
                return
            if not holder:
                _log.warning("NATS: %r", exc)
                return
            conn = holder[0]
            if denial := _denial(exc):
                conn._refused(*denial)
                _log.error(
                    "NATS denied %s %s: this user lacks the permission "
                    "(see docs/security.md and 'dasync nats-permissions')",
                    "publishing to" if denial[0] == "publish" else "subscribing to",
                    denial[1],
                )
                return
            reconnecting = conn.nc.is_reconnecting
            _log.log(logging.DEBUG if reconnecting else logging.WARNING, "NATS: %r", exc)

        async def on_disconnected() -> None:
            if holder and not holder[0]._closed:
                _log.warning("disconnected from NATS; reconnecting")

        async def on_reconnected() -> None:
            if holder:
                holder[0].unavailable_at = time.time()
            url = holder[0].nc.connected_url if holder else None
            _log.warning("reconnected to NATS at %s", url.netloc if url else "?")
            if holder:
                for inbox in list(holder[0]._inboxes):
                    inbox._reconnected()

        kwargs: dict[str, Any] = dict(
            servers=list(options.servers),
            name=options.name,
            connect_timeout=options.connect_timeout,
            reconnect_time_wait=options.reconnect_wait,
            max_reconnect_attempts=-1,
            allow_reconnect=True,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            inbox_prefix=options.inbox_prefix,
        )
        if options.user is not None:
            kwargs.update(user=options.user, password=options.password)
        if options.token is not None:
            kwargs["token"] = options.token
        if options.creds is not None:
            kwargs["user_credentials"] = options.creds
        if options.nkey_seed is not None:
            kwargs["nkeys_seed"] = options.nkey_seed
        if (context := options.ssl_context()) is not None:
            kwargs["tls"] = context
        kwargs.update(options.extra)
        where = ", ".join(_redact(s) for s in options.servers)
        nc = lean.LeanClient()
        connecting: asyncio.Future[Any] = asyncio.ensure_future(nc.connect(**kwargs))
        waiting: set[asyncio.Future[Any]] = {connecting, refused}
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not connecting.done():
                connecting.cancel()
                await asyncio.gather(connecting, return_exceptions=True)
                with contextlib.suppress(Exception):
                    await nc.close()
        if connecting.cancelled() or (connecting.exception() is not None and refused.done()):
            reason = refused.result()
            raise TransportError(
                f"NATS at {where} refused the connection: {_describe(reason)}"
            ) from reason
        if (failure := connecting.exception()) is not None:
            if isinstance(failure, nats.errors.Error | OSError | TimeoutError):
                raise TransportError(f"cannot connect to NATS at {where}: {failure!r}") from failure
            raise failure
        conn = cls(nc, options)
        holder.append(conn)
        return conn

    def retain(self) -> Connection:
        self._users += 1
        return self

    async def release(self) -> None:
        """Drop one user; the last one drains and closes the connection."""
        self._users -= 1
        if self._users <= 0:
            await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._answers is not None:
            self._answers.fail_all(nats.errors.ConnectionClosedError())
        for inbox in list(self._inboxes):
            await inbox.close()
        if self.nc.is_closed:
            return
        if self.nc.is_connected:  # draining a connection to a server that is gone only waits
            try:
                await asyncio.wait_for(self.nc.drain(), self.options.close_timeout)
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                _log.debug("drain: %r", exc)
        if not self.nc.is_closed:
            try:
                await self.nc.close()
            except (nats.errors.Error, OSError) as exc:
                _log.debug("close: %r", exc)

    def abort(self) -> None:
        """Drop the connection without draining, as a killed process would (tests)."""
        self._closed = True
        self._inboxes.clear()
        self._closing = asyncio.get_running_loop().create_task(self.nc.close())

    @property
    def closed(self) -> bool:
        return self._closed or self.nc.is_closed

    @property
    def server_version(self) -> tuple[int, int, int]:
        v = self.nc.connected_server_version
        return (v.major, v.minor, v.patch)

    # --- errors ---------------------------------------------------------------------------

    def mapped(self, what: str, subject: str | None = None) -> _Mapped:
        """``with conn.mapped("publish x", "x"):`` turns nats-py failures into dasync errors.

        A request to ``subject`` that timed out because the server refused it
        (permissions violation) becomes ``PermissionDenied``.
        """
        return _Mapped(what, self, subject)

    def denial(self, subject: str | None) -> str | None:
        """Why the server recently refused a publish to ``subject`` or our reply inbox."""
        horizon = time.monotonic() - 2 * self.options.request_timeout - 1.0
        for key, (kind, when) in list(self._denied.items()):
            if when < horizon:
                del self._denied[key]
            elif kind == "publish" and subject is not None and key == subject.lower():
                return f"publishing to {subject!r} is not allowed for this NATS user"
            elif kind == "subscription":
                return (
                    f"subscribing to {key!r} is not allowed for this NATS user, so no reply "
                    f"can arrive (is inbox_prefix {self.options.inbox_prefix!r} the one the "
                    "user's permissions allow?)"
                )
        return None

    def _refused(self, kind: str, subject: str) -> None:
        """The server refused a publish to (or a subscription on) ``subject``: remembered for
        ``denial``, and the requests it dooms fail now rather than at their timeout — every
        one sent to a refused subject, every one when the refused subscription is our
        answers inbox (no answer can arrive)."""
        self._denied[subject.lower()] = (kind, time.monotonic())
        answers = self._answers
        if answers is None:
            return
        if kind == "publish":
            answers.refuse(subject)
        elif subject.lower() == (answers.prefix + "*").lower():
            answers.fail_all(TimeoutError(f"the server refused the subscription {subject}"))

    # --- operations -----------------------------------------------------------------------

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None = None
    ) -> PubAck:
        """Persist a message in the stream that owns ``subject`` and return its ack."""
        try:
            with self.mapped(f"publish to {subject}", subject):
                msg = await self._request(subject, data, headers, self.options.request_timeout)
        except PermissionDenied:
            raise
        except TransportError:  # (NoResponders too: a stream without a leader)
            self.unavailable_at = time.time()
            raise
        resp = _json(msg, subject)
        if "error" in resp:
            raise _api_error(resp["error"])
        return PubAck(
            str(resp.get("stream", "")), int(resp.get("seq", 0)), bool(resp.get("duplicate"))
        )

    async def send(
        self,
        subject: str,
        data: bytes = b"",
        *,
        reply: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Fire-and-forget core publish (acks, pull requests)."""
        with self.mapped(f"publish to {subject}"):
            if self.lean:
                block = lean.header_block(headers) if headers else None
                await self._emit(subject, reply, block, data)
            else:
                await self.nc.publish(
                    subject, data, reply=reply, headers=dict(headers) if headers else None
                )

    async def request(self, subject: str, data: bytes = b"") -> RawMsg:
        with self.mapped(f"request {subject}", subject):
            msg = await self._request(subject, data, None, self.options.request_timeout)
        return _raw(msg)

    async def api(self, endpoint: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Call the JetStream API (``STREAM.CREATE.X``...) and return its JSON answer."""
        subject = f"{API_PREFIX}.{endpoint}"
        data = json.dumps(payload).encode() if payload is not None else b""
        try:
            with self.mapped(f"JetStream {endpoint}", subject):
                msg = await self._request(subject, data, None, self.options.request_timeout)
        except NoResponders as exc:
            raise TransportError(
                f"JetStream is not enabled on this NATS server ({endpoint})"
            ) from exc
        resp = _json(msg, subject)
        if "error" in resp:
            raise _api_error(resp["error"])
        return resp

    async def _request(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None, wait: float
    ) -> Msg:
        """One request and its answer; nats-py's errors (mapped by the caller's ``mapped``)."""
        if not self.lean:
            return await self.nc.request(
                subject, data, timeout=wait, headers=dict(headers) if headers else None
            )
        answers = self._answers or await self._open_answers()
        if answers is None:  # this nats-py keeps its subscription queue elsewhere
            return await self._request(subject, data, headers, wait)
        block = lean.header_block(headers) if headers else None
        token, answer = answers.expect(wait, subject)
        try:
            await self._emit(subject, answers.prefix + token, block, data)
        except BaseException:
            answers.forget(token)
            raise
        msg = await answer
        if not msg.data and msg.headers and msg.headers.get("Status") == "503":
            raise nats.errors.NoRespondersError
        return msg

    async def _emit(self, subject: str, reply: str, headers: bytes | None, data: bytes) -> None:
        """Every publish of the lean path passes here (benchmarks count them here)."""
        await lean.write(self.nc, lean.pub_command(subject, reply, headers, data), len(data))

    async def _open_answers(self) -> lean.Answers | None:
        async with self._answers_lock:
            if self._answers is None and self.lean:
                answers = lean.Answers(self.nc.new_inbox() + ".")
                with self.mapped("subscribe to the answers inbox"):
                    sub = await self.nc.subscribe(answers.prefix + "*", pending_bytes_limit=0)
                if lean.install(sub, answers):
                    self._answers = answers
                else:
                    self.lean = False
                    await sub.unsubscribe()
        return self._answers

    async def subscribe(self, subject: str | None = None) -> Inbox:
        inbox = Inbox(self, subject or self.nc.new_inbox())
        await inbox._start()
        self._inboxes.add(inbox)
        return inbox

    def new_inbox(self) -> str:
        return self.nc.new_inbox()

    async def listen(self, subject: str) -> Callable[[], Awaitable[None]]:
        """Subscribe to ``subject`` without reading it (a presence: see ``present``); returns
        what unsubscribes. nats-py subscribes again after a reconnect."""

        async def ignore(msg: Msg) -> None:
            return None

        with self.mapped(f"subscribe {subject}"):
            sub = await self.nc.subscribe(subject, cb=ignore)

        async def unsubscribe() -> None:
            if not self.nc.is_closed:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()

        return unsubscribe

    async def present(self, subject: str, wait: float = 0.5) -> bool:
        """Whether anyone subscribes to ``subject``: the server answers "no responders" at
        once when nobody does; a subscriber never answers, so the request times out.
        ``PermissionDenied`` when this user may not publish there (nothing can be known)."""
        try:
            with self.mapped(f"look for {subject}", subject):
                await self._request(subject, b"", None, wait)
        except NoResponders:
            return False
        except PermissionDenied:
            raise
        except TransportError:
            return True  # timed out: someone holds it (or the server is away: assume so)
        return True


class _Mapped:
    def __init__(self, what: str, conn: Connection | None = None, subject: str | None = None):
        self.what = what
        self.conn = conn
        self.subject = subject

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None or isinstance(exc, TransportError):
            return
        if isinstance(exc, nats.errors.NoRespondersError):
            raise NoResponders(f"{self.what}: no responders") from exc
        if isinstance(exc, TimeoutError) and self.conn is not None:
            if reason := self.conn.denial(self.subject):
                raise PermissionDenied(f"{self.what}: permissions violation: {reason}") from exc
        if isinstance(exc, nats.errors.Error | OSError | TimeoutError):
            raise TransportError(f"{self.what}: {type(exc).__name__} {exc}".strip()) from exc


_DENIAL = re.compile(r'permissions violation for (publish|subscription) to "?([^"\s]+)', re.I)


def _denial(exc: BaseException) -> tuple[str, str] | None:
    """``("publish" | "subscription", subject)`` if ``exc`` reports a permissions violation."""
    match = _DENIAL.search(str(exc))
    return (match.group(1).lower(), match.group(2)) if match else None


def _is_refusal(exc: BaseException) -> bool:
    """An error of the initial connect that retrying will not cure: credentials or TLS.

    A connection cut during the TLS handshake (EOF) is not one: the server may
    be starting or restarting.
    """
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError):
        return False
    if isinstance(
        exc,
        nats.errors.AuthorizationError
        | nats.errors.SecureConnRequiredError
        | nats.errors.SecureConnWantedError
        | nats.errors.SecureConnFailedError
        | nats.errors.InvalidUserCredentialsError
        | ssl.SSLError,
    ):
        return True
    text = str(exc).lower()
    return any(
        words in text
        for words in ("authorization violation", "authentication expired", "authentication revoked")
    )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().strip("'\"").removeprefix("nats: ").strip("'\"")
    if isinstance(exc, ssl.SSLCertVerificationError):
        text = f"TLS certificate verification failed ({exc.verify_message or text})"
    elif isinstance(exc, ssl.SSLError):
        text = f"TLS handshake failed ({text})"
    elif "authorization violation" in text.lower() or isinstance(
        exc, nats.errors.AuthorizationError
    ):
        text = "authorization violation (wrong or missing credentials)"
    return text or type(exc).__name__


def _redact(url: str) -> str:
    """``url`` without the password it may carry (``nats://user:pw@host``)."""
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


def _raw(msg: Msg) -> RawMsg:
    # nats-py parses the headers into a fresh dict of str for each message: taken as it is
    return RawMsg(msg.subject, msg.data or b"", msg.headers or {}, msg.reply or "")


def _json(msg: Msg, subject: str) -> dict[str, Any]:
    try:
        resp = orjson.loads(msg.data)
    except orjson.JSONDecodeError as exc:
        raise TransportError(f"unexpected answer from {subject}: {msg.data[:200]!r}") from exc
    if not isinstance(resp, dict):
        raise TransportError(f"unexpected answer from {subject}: {msg.data[:200]!r}")
    return resp


def _api_error(error: Mapping[str, Any]) -> ApiError:
    return ApiError(
        int(error.get("code", 0)), int(error.get("err_code", 0)), str(error.get("description", ""))
    )
