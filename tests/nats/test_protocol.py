"""``LeanParser`` (``transports/nats/_protocol.py``) against nats-py's ``Parser``: the same
byte streams, cut anywhere, give the same calls into the client, the same errors and the
same parser state after every read; with a real client, its delivery in line gives what
``Client._process_msg`` gives (messages, headers, stats, queues, errors); and a
``LeanClient`` on a real server receives every message intact."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import nats.aio.client as nats_client
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ProtocolError
from nats.protocol.parser import Parser

from dasync.testing._nats_server import NatsServer
from dasync.transports.nats import _requests as lean
from dasync.transports.nats._protocol import LeanParser, _direct

pytestmark = pytest.mark.timeout(120)

# --- the parser alone ----------------------------------------------------------------------


class Recording:
    """A client that records what the parser calls, with the arguments' types."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.parser: Parser | None = None

    def _note(self, name: str, *args: Any) -> None:
        self.calls.append((name, *args, tuple(type(a).__name__ for a in args)))

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes,
                           headers: bytes | None) -> None:  # fmt: skip
        self._note("msg", sid, subject, reply, data, headers)

    async def _process_ping(self) -> None:
        self._note("ping")

    async def _process_pong(self) -> None:
        self._note("pong")

    async def _process_info(self, info: dict[str, Any]) -> None:
        self._note("info", info)

    async def _process_err(self, err: str) -> None:
        self._note("err", err)


def _state(parser: Parser, whole: bool = True) -> tuple[Any, ...]:
    buf = parser.buf  # (the ends and the length only, between reads of a large payload)
    kept = bytes(buf) if whole or len(buf) < 256 else (len(buf), buf[:64], buf[-64:])
    return (kept, parser.state, parser.needed, parser.header_needed, dict(parser.msg_arg))


async def _trace(
    make: type[Parser], chunks: list[bytes], client: Recording | None = None
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The calls, and after each read: how many calls so far, the error, the state."""
    client = client if client is not None else Recording()
    parser = make(client)
    client.parser = parser
    after = []
    for i, chunk in enumerate(chunks):
        error = None
        try:
            await parser.parse(chunk)
        except Exception as exc:
            error = (type(exc), str(exc))
        after.append((len(client.calls), error, _state(parser, i == len(chunks) - 1)))
    return client.calls, after


async def _same(chunks: list[bytes], client: Callable[[], Recording] = Recording) -> None:
    theirs = await _trace(Parser, chunks, client())
    ours = await _trace(LeanParser, chunks, client())
    for i, (mine, nats_py) in enumerate(zip(ours[1], theirs[1], strict=True)):
        assert mine == nats_py, f"after read {i} of {len(chunks)}: {chunks[i][:100]!r}"
    assert len(ours[0]) == len(theirs[0])
    for i, (mine, nats_py) in enumerate(zip(ours[0], theirs[0], strict=True)):
        assert mine == nats_py, f"call {i}"


def _cut(data: bytes, rnd: random.Random) -> list[bytes]:
    """``data`` in reads of random sizes, from single bytes to more than a socket read
    (not byte by byte through large payloads: that would be slow, and is no different)."""
    chunks, at = [], 0
    scale = rnd.choice([3, 40, 700, 70_000] if len(data) < 100_000 else [700, 70_000])
    while at < len(data):
        size = rnd.randint(1, scale)
        chunks.append(data[at : at + size])
        at += size
    return chunks


_SUBJECTS = [b"a", b"svc.work.Orders.charge", b"_INBOX.Zl2hV9sQ.5a3f9c2e1b7d4", b"$JS.API.INFO"]
_REPLIES = [b"_INBOX.abc.1", b"$JS.ACK.S.c.1.22.3.1733212345125000000.0", b"x"]
_HEADER_BLOCKS = [
    b"NATS/1.0\r\nNats-Msg-Id: m-1\r\ndasync-kind: work\r\n\r\n",
    b"NATS/1.0\r\n\r\n",
    b"NATS/1.0 408 Request Timeout\r\n\r\n",
    b"NATS/1.0 404 No Messages\r\n\r\n",
    b"NATS/1.0 503\r\n\r\n",
    b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1016\r\nNats-Last-Stream: 1024\r\n\r\n",
    b"NATS/1.0 100 FlowControl Request\r\n\r\n",
    b"NATS/1.0 409 Consumer Deleted\r\nNats-Pending-Messages: 3\r\n\r\n",
    b"NATS/1.0 abc Odd\r\n\r\n",
    b"NATS/1.0 100 \r\nNats-Last-Consumer: 5\r\n\r\n",  # a blank description
    b"NATS/1.0 503\r\nK: v\r\n\r\n",  # nats-py makes "\nK: v" the description
    b"NATS/1.0 2\r\n\r\n",
    b"NATS/1.0 5:x\r\n\r\n",  # nats-py gives {} (not None), a slip gives {"": "x"}
    b"NATS/1.0 503 Bad:Thing\r\nk: v\r\n\r\n",
    b"NATS/1.0\r\nuni: n\xc3\xa9e \xe2\x9c\x93\r\nbad\xff: x\r\nno colon\r\n a b : c\r\nk:v\r\n"
    b"\r\n",
    b"NATS/1.0\r\nK: " + b"v" * 280 + b"\r\n\r\n",
]


def _payload(rnd: random.Random, big: bool) -> bytes:
    size = rnd.choice([0, 0, 1, 2, 5, 60, 300, 4000] + ([70_000, 140_000] if big else []))
    pieces = [b"\r\n", b"MSG a 1 2\r\n", b"PING\r\n", b"\x00\xff", rnd.randbytes(7)]
    out = bytearray()
    while len(out) < size:
        out += rnd.choice(pieces) if rnd.random() < 0.3 else rnd.randbytes(rnd.randint(1, 90))
    return bytes(out[:size])


def _message(rnd: random.Random, sid: int, big: bool = False, heartbeat: bool = True) -> bytes:
    subject = rnd.choice(_SUBJECTS)
    reply = rnd.choice([None, None, *_REPLIES])
    payload = _payload(rnd, big)
    head = b"%s %d " % (subject, sid) + (reply + b" " if reply else b"")
    if rnd.random() < 0.5:
        return b"MSG %s%d\r\n%s\r\n" % (head, len(payload), payload)
    blocks = _HEADER_BLOCKS if heartbeat else _HEADER_BLOCKS[:2]
    block = rnd.choice(blocks)
    return b"HMSG %s%d %d\r\n%s%s\r\n" % (head, len(block), len(block) + len(payload), block,
                                          payload)  # fmt: skip


def _stream(rnd: random.Random, events: int, big: bool) -> bytes:
    out = []
    for _ in range(events):
        roll = rnd.random()
        if roll < 0.7:
            out.append(_message(rnd, rnd.randint(1, 40), big))
        elif roll < 0.76:
            out.append(b"PING\r\n")
        elif roll < 0.82:
            out.append(b"PONG\r\n")
        elif roll < 0.88:
            out.append(b"+OK\r\n")
        elif roll < 0.94:
            info = {"server_id": "N1", "max_payload": 1048576, "connect_urls": ["1.2.3.4:4222"]}
            out.append(b"INFO %s\r\n" % json.dumps(info).encode())
        else:
            out.append(rnd.choice([b"-ERR 'Permissions Violation for Subscription to \"x\"'\r\n",
                                   b"-ERR 'Slow Consumer'\r\n"]))  # fmt: skip
    return b"".join(out)


@pytest.mark.parametrize("seed", range(40))
async def test_random_streams_cut_anywhere_give_nats_pys_calls_and_state(seed: int) -> None:
    rnd = random.Random(seed)
    data = _stream(rnd, rnd.choice([5, 60, 200]), big=seed % 4 == 0)
    for _ in range(3):
        await _same(_cut(data, rnd))
    await _same([data])  # many messages in one read


_ALL_KINDS = (
    b"MSG a.b 1 5\r\nhello\r\n"
    b"MSG a 2 _INBOX.r.1 0\r\n\r\n"
    b"HMSG h 3 12 14\r\nNATS/1.0\r\n\r\nab\r\n"
    b"HMSG h.i 4 $JS.ACK.x.1 33 33\r\nNATS/1.0 408 Request Timeout\r\n\r\n\r\n"
    b"PING\r\nPONG\r\n+OK\r\n"
    b'INFO {"server_id":"N","max_payload":1024}\r\n'
    b"-ERR 'Bad Thing'\r\n"
    b"MSG bin 5 7\r\n\r\n\x00\r\n\xff\r\n\r\n"
)


async def test_every_split_of_one_stream_gives_nats_pys_calls_and_state() -> None:
    for at in range(len(_ALL_KINDS) + 1):
        await _same([_ALL_KINDS[:at], _ALL_KINDS[at:]])
    rnd = random.Random(7)
    for _ in range(300):
        a, b = sorted(rnd.sample(range(len(_ALL_KINDS) + 1), 2))
        await _same([_ALL_KINDS[:a], _ALL_KINDS[a:b], _ALL_KINDS[b:]])
    await _same([_ALL_KINDS[i : i + 1] for i in range(len(_ALL_KINDS))])


_ODD = [
    b"MSG\ta\t1\t5\r\nhello\r\n",  # tabs: nats-py's regexes read it
    b"MSG a  1  _r  5\r\nhello\r\n",
    b"MSG a 1 5 \r\nhello\r\n",  # a blank after the size: unknown protocol
    b"MSG a 1 r\n5\r\nhello\r\n",
    b"MSG a\r\n1 5\r\nhello\r\n",  # nats-py's \s+ spans the line's end
    b"MSG a b 5\r\nhello\r\n",  # sid not a number: malformed
    b"MSG a +1 5\r\nhello\r\n",
    b"MSG a 1 +5\r\nhello\r\n",
    b"MSG a 1 " + b"9" * 20 + b"\r\nabc",  # a size past what the fast path reads
    b"MSG a 1 " + b"9" * 5000 + b"\r\n",  # past Python's digit limit: malformed
    b"MSG a 1 5\r\nhelloXYMSG b 2 1\r\nz\r\n",  # the CR LF after a payload is not checked
    b"MSG a 1 0\r\n\r\nHMSG a 1 0 5\r\nhello\r\n",  # no header block
    b"HMSG h 1 12 12\r\n1\r\n\r\n\r\n\r\n\r\n",  # nats-py reads 12 as a reply
    b"HMSG h 1 12 14\r\n \r\n3\r\nNATS/1.0\r\nab\r\n",
    b"HMSG h 1 r 12 14\r\n5ATS/1.0\r\n\r\nab\r\n",
    b"HMSG h 1 20 10\r\nNATS/1.0\r\n\r\n\r\nMSG a 1 2\r\nxy\r\n",  # header size > total
    b"HMSG h 1 2 x\r\n",
    b"PING \r\nPING\t\r\nPONG  \r\n+OK \r\n",
    b"ping\r\n",
    b"-ERR \r\n",  # nats-py fails on the missing text (AttributeError)
    b"-ERR 'x'\r\nINFO {bad json}\r\n",
    b"INFO \r\n",
    b"\r\n",
    b"X" * 5000 + b"\r\nPING\r\n",  # longer than nats-py looks at: waits for ever
    b"MSG a 1 5\r\nhello\r\nPI",
    b"HMSG a 1 3 3\r\nabc\r\nMSG a 1",
]


@pytest.mark.parametrize("stream", _ODD, ids=range(len(_ODD)))
async def test_odd_lines_give_nats_pys_calls_errors_and_state(stream: bytes) -> None:
    tail = b"MSG after 9 2\r\nok\r\nPING\r\n"
    data = stream + tail
    await _same([data])
    await _same([data[i : i + 1] for i in range(len(data))])
    rnd = random.Random(len(stream))
    for _ in range(20):
        await _same(_cut(data, rnd))
    await _same([stream, tail, b"PONG\r\n"])  # reads after an error as well


@pytest.mark.parametrize("make", [Parser, LeanParser])
@pytest.mark.parametrize(
    "line, error",
    [
        (b"FOO bar\r\n", "nats: unknown protocol"),
        (b"MSG foo bar 5\r\nhello\r\n", "nats: malformed MSG"),
        (b"HMSG foo bar 2 5\r\nhello\r\n", "nats: malformed MSG"),
    ],
)
async def test_unknown_protocol_and_malformed_msg_are_protocol_errors(
    make: type[Parser], line: bytes, error: str
) -> None:
    parser = make(Recording())
    with pytest.raises(ProtocolError) as raised:
        await parser.parse(b"PING\r\n" + line)
    assert raised.value.args == (error,)
    assert parser.nc.calls == [("ping", ())]


class Resetting(Recording):
    """Resets the parser from a callback, as a stale-connection ``-ERR`` or a forced
    reconnect does in nats-py."""

    async def _process_msg(self, *args: Any) -> None:
        await super()._process_msg(*args)
        if args[0] == 2 and self.parser is not None:
            self.parser.reset()

    async def _process_err(self, err: str) -> None:
        await super()._process_err(err)
        if self.parser is not None:
            self.parser.reset()


class Raising(Recording):
    async def _process_msg(self, *args: Any) -> None:
        await super()._process_msg(*args)
        if args[0] == 2:
            raise RuntimeError("callback failed")

    async def _process_ping(self) -> None:
        await super()._process_ping()
        raise RuntimeError("ping failed")


@pytest.mark.parametrize("client", [Resetting, Raising])
async def test_a_callback_that_resets_the_parser_or_raises_leaves_nats_pys_state(
    client: type[Recording],
) -> None:
    data = (b"MSG a 1 1\r\nx\r\nMSG a 2 1\r\ny\r\nMSG a 3 1\r\nz\r\nPING\r\nMSG a 4 1\r\nw\r\n"
            b"-ERR 'Stale Connection'\r\nMSG a 5 1\r\nv\r\n")  # fmt: skip
    await _same([data], client)
    await _same([data[:20], data[20:], b"MSG a 6 1\r\nu\r\n"], client)
    await _same([data[i : i + 1] for i in range(len(data))], client)


def test_the_lean_client_reads_with_the_lean_parser() -> None:
    nc = lean.LeanClient()
    assert type(nc._ps) is LeanParser and nc._ps.nc is nc
    nc._ps.reset()
    assert nc._ps.buf == bytearray() and nc._ps.msg_arg == {}
    assert _direct(nc) and _direct(NatsClient())


# --- the delivery in line, against Client._process_msg ---------------------------------------


class FakeJSI:
    """What ``Client._process_msg`` touches of a JetStream subscription's state."""

    def __init__(self, seen: list[Any]) -> None:
        self._active = False
        self._ordered = False
        self.seen = seen

    def track_sequences(self, reply: str) -> None:
        self.seen.append(("track", reply))

    async def check_for_sequence_mismatch(self, msg: Msg) -> None:
        self.seen.append(("mismatch", _msg(msg)))


def _msg(msg: Msg) -> tuple[Any, ...]:
    headers = msg.headers
    return (type(msg).__name__, msg.subject, msg.reply, msg.data, msg._sid,
            None if headers is None else [(type(k), k, v) for k, v in headers.items()])  # fmt: skip


class World:
    """A client, not connected, with subscriptions of every kind and records of what
    reaches them."""

    PLAIN, DIRECT, MAX, BYTES, FULL, FUTURE, JS, NONE = range(1, 9)

    def __init__(self, client: type[NatsClient], parser: type[Parser]) -> None:
        self.nc = nc = client()
        nc._ps = parser(nc)
        self.errors: list[Any] = []
        self.forwarded: list[Any] = []
        self.js: list[Any] = []

        async def error_cb(exc: Exception) -> None:
            if isinstance(exc, nats.errors.SlowConsumerError):  # (its str shows sub's id())
                self.errors.append(("slow", exc.subject, exc.reply, exc.sid, exc.sub._id))
            else:
                self.errors.append((type(exc).__name__, str(exc)))

        nc._error_cb = error_cb
        subs = {
            self.PLAIN: Subscription(nc, self.PLAIN, "p"),
            self.DIRECT: Subscription(nc, self.DIRECT, "d", pending_bytes_limit=0),
            self.MAX: Subscription(nc, self.MAX, "m", max_msgs=4),
            self.BYTES: Subscription(nc, self.BYTES, "b", pending_bytes_limit=700),
            self.FULL: Subscription(nc, self.FULL, "f", pending_msgs_limit=3),
            self.FUTURE: Subscription(nc, self.FUTURE, "o", max_msgs=1),
            self.JS: Subscription(nc, self.JS, "j"),
        }
        lean.install(subs[self.DIRECT], lean.Forward(lambda m: self.forwarded.append(_msg(m))))
        subs[self.FUTURE]._future = asyncio.get_running_loop().create_future()
        subs[self.JS]._jsi = FakeJSI(self.js)  # type: ignore[assignment]
        self.subs = subs
        nc._subs.update(subs)

    def outcome(self) -> dict[str, Any]:
        future = self.subs[self.FUTURE]._future
        assert future is not None
        queued = {}
        for sid, sub in self.subs.items():
            queue = sub._pending_queue
            if isinstance(queue, asyncio.Queue):
                items = []
                while not queue.empty():
                    item = queue.get_nowait()
                    assert item._client is self.nc
                    items.append(_msg(item))
                queued[sid] = items
        return {
            "stats": dict(self.nc.stats),
            "subs": sorted(self.nc._subs),
            "counts": {sid: (s._received, s._pending_size) for sid, s in self.subs.items()},
            "queued": queued,
            "forwarded": self.forwarded,
            "future": _msg(future.result()) if future.done() else None,
            "errors": self.errors,
            "js": self.js,
            "jsi_active": self.subs[self.JS]._jsi._active,  # type: ignore[union-attr]
        }


def _deliveries(rnd: random.Random, count: int) -> bytes:
    out = []
    for _ in range(count):
        sid = rnd.randint(1, 8)
        heartbeat = sid != World.JS  # (a JetStream sub's flow control would publish)
        out.append(_message(rnd, sid, heartbeat=heartbeat))
        if sid == World.JS and rnd.random() < 0.2:
            block = _HEADER_BLOCKS[5]
            out.append(b"HMSG h %d %d %d\r\n%s\r\n" % (sid, len(block), len(block), block))
        if rnd.random() < 0.05:
            out.append(b"PING\r\n")
    return b"".join(out)


class Pinging(lean.LeanClient):
    async def _process_ping(self) -> None:
        return None  # (not connected: nothing to answer on)


class PlainPinging(NatsClient):
    async def _process_ping(self) -> None:
        return None


class FailingHeaders(Pinging):
    """A header parser that fails on some blocks: the error goes to the error callback."""

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        if b"dasync-kind" in raw:
            raise ValueError("no headers today")
        return lean.LeanClient._parse_header_lines(raw)


@pytest.mark.parametrize("client", [Pinging, PlainPinging, FailingHeaders])
@pytest.mark.parametrize("seed", range(12))
async def test_delivery_in_line_gives_what_process_msg_gives(
    client: type[NatsClient], seed: int
) -> None:
    rnd = random.Random(seed)
    data = _deliveries(rnd, 250)
    chunks = _cut(data, rnd)
    outcomes = []
    for parser in (Parser, LeanParser):
        world = World(client, parser)
        assert _direct(world.nc)
        for chunk in chunks:
            await world.nc._ps.parse(chunk)
        outcomes.append(world.outcome())
    theirs, ours = outcomes
    assert ours == theirs
    assert theirs["stats"]["in_msgs"] > 200 and theirs["forwarded"] and theirs["js"]
    assert any(e[0] == "slow" for e in theirs["errors"])


async def test_only_plain_subscriptions_skip_process_msg() -> None:
    """JetStream and old-style request subscriptions, and sids without one, still go
    through ``Client._process_msg``; so does every message once a method is replaced."""
    rnd = random.Random(3)
    data = _deliveries(rnd, 300)
    # (a sub that had its max_msgs is gone: later messages to its sid go there too)
    counted = {World.JS, World.FUTURE, World.NONE, World.MAX}
    code = NatsClient._process_msg.__code__
    for parser in (Parser, LeanParser):
        world = World(Pinging, parser)
        calls: list[int] = []

        def profile(frame: FrameType, event: str, arg: object, calls: list[int] = calls) -> None:
            if event == "call" and frame.f_code is code:
                calls.append(frame.f_locals["sid"])

        sys.setprofile(profile)
        try:
            await world.nc._ps.parse(data)
        finally:
            sys.setprofile(None)
        total = world.nc.stats["in_msgs"]
        if parser is Parser:
            assert len(calls) == total
        else:
            assert set(calls) <= counted and World.FUTURE in calls
            assert 0 < len(calls) < total
    world = World(Pinging, LeanParser)
    original = world.nc._process_headers
    seen: list[bytes] = []

    async def wrapped(headers: bytes) -> dict[str, str] | None:
        seen.append(headers)
        return await original(headers)

    world.nc._process_headers = wrapped  # type: ignore[method-assign]
    assert not _direct(world.nc)
    block = _HEADER_BLOCKS[0]
    await world.nc._ps.parse(b"HMSG a 1 %d %d\r\n%s\r\n" % (len(block), len(block), block))
    assert seen == [block] and world.subs[World.PLAIN]._pending_queue.qsize() == 1


async def test_fast_mail_parser_turns_the_delivery_in_line_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nats_client, "parse_email", lambda raw: None, raising=False)
    assert not _direct(lean.LeanClient())


@pytest.mark.parametrize("block", [b"NATS/1.0", b"NATS/1.0 \xff\xfe\r\n\r\n"])
async def test_headers_nats_py_fails_on_fail_alike(block: bytes) -> None:
    data = b"HMSG a %d %d %d\r\n%s\r\nMSG a 1 1\r\nx\r\n" % (
        World.PLAIN, len(block), len(block), block,
    )  # fmt: skip
    failures = []
    for parser in (Parser, LeanParser):
        world = World(Pinging, parser)
        with pytest.raises(Exception) as raised:
            await world.nc._ps.parse(data)
        failures.append((raised.type, str(raised.value), _state(world.nc._ps),
                         world.outcome()))  # fmt: skip
    assert failures[0] == failures[1]
    assert failures[0][0] in (IndexError, UnicodeDecodeError)


def test_the_header_name_cache_gives_nats_pys_dict() -> None:
    raws = [
        b"Nats-Msg-Id: m-1\r\n Pad : v \r\nbad name: x\r\nn\xc3\xa9: y\r\nk:v\r\n\r\n",
        b"a\x1cb: 1\r\n\tTab: 2\r\nnocolon\r\n: empty\r\nK: dup\r\nK: again\r\n",
    ]
    for _ in range(3):  # uncached, then cached
        for raw in raws:
            assert lean.LeanClient._parse_header_lines(raw) == NatsClient._parse_header_lines(raw)
    many = b"".join(b"name-%d: %d\r\n" % (i, i) for i in range(3000))  # past the cache's bound
    assert lean.LeanClient._parse_header_lines(many) == NatsClient._parse_header_lines(many)
    assert len(lean._names) <= lean._NAMES_KEPT


# --- on a real server ---------------------------------------------------------------------


async def test_a_lean_client_receives_every_message_intact(nats_server: NatsServer) -> None:
    nc = lean.LeanClient()
    await nc.connect(servers=[nats_server.url], allow_reconnect=False)
    try:
        assert type(nc._ps) is LeanParser
        rnd = random.Random(11)
        sizes = [0, 1, 2, 60, 1000, 32767, 32768, 65535, 65536, 65537, 70_000, 300_000]
        sizes += [rnd.randint(0, 5000) for _ in range(300)]
        sent = []
        for i, size in enumerate(sizes):
            payload = rnd.randbytes(size)  # binary
            if i % 3 == 0:
                payload = (b"\r\nMSG x 1 2\r\n" * (size // 13 + 1))[:size]
            headers = {"i": str(i), "dasync-kind": "work", "uni": "né ✓"} if i % 2 else None
            sent.append((f"lean.recv.{i % 7}", f"reply.{i}" if i % 5 == 0 else "", payload,
                         headers))  # fmt: skip

        plain: list[Msg] = []
        forwarded: list[Msg] = []
        done = asyncio.Event()

        async def cb(msg: Msg) -> None:
            plain.append(msg)
            if len(plain) == len(sent):
                done.set()

        await nc.subscribe("lean.recv.>", cb=cb)
        direct = await nc.subscribe("lean.recv.>", pending_bytes_limit=0)
        lean.install(direct, lean.Forward(forwarded.append))

        async def answer(msg: Msg) -> None:
            await nc.publish(msg.reply, msg.data[::-1], headers={"n": str(len(msg.data))})

        await nc.subscribe("lean.echo", cb=answer)
        for subject, reply, payload, headers in sent:
            await nc.publish(subject, payload, reply=reply, headers=headers)
        requests = [rnd.randbytes(rnd.choice([0, 10, 70_000, 200_000])) for _ in range(40)]
        answers = await asyncio.gather(
            *(nc.request("lean.echo", body, timeout=10) for body in requests)
        )
        await asyncio.wait_for(done.wait(), 30)
        await nc.flush()

        def got(msgs: list[Msg]) -> list[tuple[Any, ...]]:
            return [(m.subject, m.reply, m.data, m.headers or None) for m in msgs]

        assert got(plain) == [(s, r, p, h) for s, r, p, h in sent]
        assert got(forwarded) == got(plain)
        for body, answer_msg in zip(requests, answers, strict=True):
            assert answer_msg.data == body[::-1]
            assert answer_msg.headers == {"n": str(len(body))}
        assert nc.stats["in_msgs"] == 2 * len(sent) + 2 * len(requests)
    finally:
        await nc.close()
