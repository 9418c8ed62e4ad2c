"""The lean request path (``transports/nats/_requests.py``) against a real server: it is
the one in use with the installed nats-py, answers each request with its own answer,
times out, maps errors as nats-py's path did, and refuses bytes that would pose as
protocol; its header parser gives nats-py's dict."""

from __future__ import annotations

import asyncio
import uuid
from typing import Protocol

import nats.errors
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NatsClient

import dasync
from dasync._errors import TransportError
from dasync.testing._nats_server import NatsServer
from dasync.transports.nats import NatsOptions, connect_nats
from dasync.transports.nats import _naming as naming
from dasync.transports.nats import _requests as lean
from dasync.transports.nats._connection import Connection, NoResponders


@pytest.fixture
async def conn(nats_server: NatsServer) -> Connection:
    connection = await Connection.open(NatsOptions(servers=(nats_server.url,), request_timeout=1.0))
    yield connection  # type: ignore[misc]
    await connection.close()


async def _stream(conn: Connection, name: str) -> None:
    config = {"name": name, "subjects": [f"{name}.>"], "allow_direct": True}
    await conn.api(f"STREAM.CREATE.{name}", config)


async def test_the_installed_nats_py_takes_the_lean_path(conn: Connection) -> None:
    assert conn.lean, "nats-py lacks a member the lean path needs: see _requests.py"
    await conn.api("INFO")
    assert conn._answers is not None  # the wildcard inbox with its direct queue is in place


async def test_concurrent_publishes_each_get_their_own_ack(conn: Connection) -> None:
    await _stream(conn, "LEAN_ACKS")
    acks = await asyncio.gather(
        *(conn.publish(f"LEAN_ACKS.{i}", b"x", {"Nats-Msg-Id": f"m{i}"}) for i in range(300))
    )
    assert sorted(a.seq for a in acks) == list(range(1, 301))
    assert conn.nc.stats["out_msgs"] >= 300  # counted as nats-py's publish counts
    again = await conn.publish("LEAN_ACKS.7", b"x", {"Nats-Msg-Id": "m7"})
    assert again.duplicate and again.seq == next(a.seq for a in acks if a.seq == again.seq)
    assert conn._answers.outstanding == 0  # type: ignore[union-attr]


async def test_headers_arrive_as_sent(conn: Connection) -> None:
    await _stream(conn, "LEAN_HDR")
    sent = {"dasync-kind": "reply", "dasync-routine": "r-1", "x-empty": "", "x-uni": "née ✓"}
    ack = await conn.publish("LEAN_HDR.a", b"body", sent)
    raw = await conn.request("$JS.API.DIRECT.GET.LEAN_HDR", b'{"seq": %d}' % ack.seq)
    assert raw.data == b"body"
    assert {k: raw.headers[k] for k in sent} == sent


async def test_an_unanswered_request_times_out_and_is_forgotten(conn: Connection) -> None:
    sub = await conn.subscribe("lean.silent")  # a responder that never answers
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(TransportError, match="TimeoutError"):
        await conn.request("lean.silent")
    took = loop.time() - began
    assert 1.0 <= took <= 1.0 + lean._TICK + 1.0  # request_timeout, a sweep late (and a busy loop)
    answers = conn._answers
    assert answers is not None and answers.outstanding == 0
    assert answers._timer is None  # nothing outstanding: no sweep scheduled
    await sub.close()


async def test_a_cancelled_request_leaves_nothing_behind(conn: Connection) -> None:
    sub = await conn.subscribe("lean.slow")
    task = asyncio.ensure_future(conn.request("lean.slow"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(40):  # its token is dropped when its deadline passes
        if conn._answers.outstanding == 0:  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.05)
    assert conn._answers.outstanding == 0  # type: ignore[union-attr]
    await sub.close()


async def test_no_stream_is_no_responders(conn: Connection) -> None:
    with pytest.raises(NoResponders):
        await conn.publish("lean.nostream.here", b"x")


async def test_a_closed_connection_fails_waiting_requests(nats_server: NatsServer) -> None:
    conn = await Connection.open(NatsOptions(servers=(nats_server.url,), request_timeout=5.0))
    sub = await conn.subscribe("lean.never")
    waiting = asyncio.ensure_future(conn.request("lean.never"))
    await asyncio.sleep(0.05)
    await sub.close()
    await conn.close()
    with pytest.raises(TransportError):
        await asyncio.wait_for(waiting, 2)


async def test_a_refused_publish_fails_only_the_requests_sent_there() -> None:
    """The server's permissions error names a subject (in its own case): the requests to
    it fail at once, the others keep waiting for their answers."""
    answers = lean.Answers("_INBOX.x.")
    _, doomed = answers.expect(5.0, "dasync.Orders.in.Billing")
    _, doomed_too = answers.expect(5.0, "dasync.Orders.in.Billing")
    _, other = answers.expect(5.0, "dasync.Orders.in.Shipping")
    assert answers.refuse("dasync.orders.in.billing") == 2
    for future in (doomed, doomed_too):
        with pytest.raises(TimeoutError, match="refused"):
            await future
    assert not other.done() and answers.outstanding == 1
    answers.fail_all(TimeoutError())


@pytest.mark.parametrize("value", ["a\r\nPUB x 1", "line\nbreak", "cr\r"])
def test_a_line_break_in_a_header_value_becomes_a_space(value: str) -> None:
    block = lean.header_block({"ok": "fine", "odd": value})
    assert (
        block
        == b"NATS/1.0\r\nok: fine\r\nodd: "
        + value.replace("\r", " ").replace("\n", " ").encode()
        + b"\r\n\r\n"
    )


@pytest.mark.parametrize("name", ["has space", "colon:", "", "tab\t", "nl\n", "a(b", 'q"'])
def test_an_invalid_header_name_is_refused_as_nats_py_would(name: str) -> None:
    with pytest.raises(nats.errors.BadHeaderError):
        lean.header_block({name: "v"})
    assert not lean.valid_header_name(name)


class Leaf(Protocol):
    async def a(self) -> int: ...


class LeafImpl(Leaf):
    async def a(self) -> int:
        return 1


async def test_a_message_with_headers_nats_py_would_refuse_is_set_aside(
    nats_server: NatsServer,
) -> None:
    """A sender may put any bytes in its headers; the worker sets such a message aside as
    a dead letter (dropping the names it could not send again) and keeps serving, instead
    of failing to record it and taking it back forever."""
    options = NatsOptions(servers=(nats_server.url,), namespace=f"t{uuid.uuid4().hex[:10]}")
    transport, store = await connect_nats(options)
    async with dasync.Runtime([LeafImpl], transport=transport, store=store) as rt:
        assert await rt.client.proxy(Leaf).a() == 1
        subject = naming.client_subject("Leaf", transport.identity, options.namespace)
        block = b"NATS/1.0\r\nNats-Msg-Id: hostile-1\r\na(b: x\r\nodd: y\nz\r\n\r\n"
        await transport.conn._emit(subject, "", block, b"{}")
        letters = []
        for _ in range(200):
            letters = await transport.dead_letters("Leaf")
            if letters:
                break
            await asyncio.sleep(0.05)
        assert len(letters) == 1 and "a(b" not in letters[0].message.headers
        assert "lacks valid dasync-kind" in letters[0].reason
        assert await rt.client.proxy(Leaf).a() == 1  # still serving


@pytest.mark.parametrize("subject", ["a b", "a\r\nPUB", "", "tab\tx"])
def test_a_subject_that_would_split_the_line_is_refused(subject: str) -> None:
    with pytest.raises(ValueError, match="subject"):
        lean.pub_command(subject, "", None, b"")


_header_bytes = st.lists(
    st.tuples(
        st.binary(max_size=12) | st.sampled_from([b"Name", b" Pad ", b"a\x1cb", b"n\xc3\xa9", b""]),
        st.sampled_from([b":", b": ", b":\t", b""]),
        st.binary(max_size=12) | st.sampled_from([b"v", b" v ", b"\xff\xfe", "é".encode()]),
    ),
    max_size=6,
).map(lambda lines: b"\r\n".join(k + s + v for k, s, v in lines))


@settings(max_examples=400, deadline=None)
@given(_header_bytes)
def test_the_header_parser_gives_nats_pys_dict(raw: bytes) -> None:
    assert lean.LeanClient._parse_header_lines(raw) == NatsClient._parse_header_lines(raw)


async def test_writes_leave_once_per_turn_without_nats_pys_flusher(conn: Connection) -> None:
    """What is pending is written by the connection itself at the loop's next turn: one
    socket write for everything published in one turn, no flusher wake-up."""
    await _stream(conn, "LEAN_FLUSH")
    nc = conn.nc
    woken = 0
    original = nc._flush_pending

    async def counting(*args: object, **kwargs: object) -> object:
        nonlocal woken
        woken += 1
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    nc._flush_pending = counting  # type: ignore[method-assign]
    try:
        acks = await asyncio.gather(*(conn.publish(f"LEAN_FLUSH.{i}", b"x") for i in range(50)))
    finally:
        nc._flush_pending = original  # type: ignore[method-assign]
    assert len({a.seq for a in acks}) == 50
    assert woken == 0
    assert nc._pending_data_size == 0 and not nc._flush_soon  # type: ignore[attr-defined]


async def test_a_full_socket_buffer_leaves_the_write_to_nats_pys_flusher(
    conn: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the high-water mark the flusher writes (and waits for the buffer to drain):
    nothing is lost, nothing sent twice."""
    await _stream(conn, "LEAN_FULL")
    socket = conn.nc._transport._io_writer.transport  # type: ignore[union-attr]
    monkeypatch.setattr(socket, "get_write_buffer_size", lambda: lean._WRITER_FULL)
    acks = await asyncio.gather(*(conn.publish(f"LEAN_FULL.{i}", b"y") for i in range(20)))
    assert sorted(a.seq for a in acks) == list(range(1, 21))
    monkeypatch.undo()
    info = await conn.api("STREAM.INFO.LEAN_FULL")
    assert info["state"]["messages"] == 20


async def test_a_write_pending_while_reconnecting_is_sent_after(nats_server: NatsServer) -> None:
    """Published while the connection is down: kept in nats-py's buffer and written by its
    reconnect, as nats-py does, not by the direct flush."""
    conn = await Connection.open(NatsOptions(servers=(nats_server.url,), request_timeout=5.0))
    try:
        await _stream(conn, "LEAN_RECON")
        nc = conn.nc
        nc._status = NatsClient.RECONNECTING  # as the read loop sets it on a lost socket
        sending = asyncio.ensure_future(conn.publish("LEAN_RECON.a", b"z"))
        await asyncio.sleep(0.05)
        assert nc._pending_data_size > 0  # held: not written into a socket said to be down
        nc._status = NatsClient.CONNECTED
        await nc._flush_pending()
        assert (await sending).seq == 1
    finally:
        await conn.close()
