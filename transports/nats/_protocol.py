"""A cheaper reader of the protocol the server sends: nats-py's ``Parser`` for the client,
with each ``MSG``/``HMSG`` taken by one regex on an offset and, for plain subscriptions,
the message put on the subscription's queue without nats-py's two coroutines per message.

nats-py's parser tries a regex on the buffer for every control line (an ``HMSG`` line
after failing ``MSG``'s), keeps the line's fields in a dict, deletes each message from the
front of its bytearray and copies every payload twice; then ``Client._process_msg`` awaits
``_process_headers`` and builds the ``Msg``. Here a read of the socket is walked with an
offset over one ``bytes`` (a slice of it is the payload: one copy), a line in the shape the
server writes is read by one regex match, and the buffer is rewritten once per read.

Nothing may differ from nats-py, since everything the server sends goes through here.
The regexes here accept only lines that nats-py's read alike (same fields, same end: see
``_MSG`` and ``_HMSG``); any other line - ``PING``, ``PONG``, ``INFO``, ``+OK``, ``-ERR``,
garbage, a ``MSG`` with tabs - is read by ``_slow_line``, which applies nats-py's regexes
in nats-py's order to the buffer in nats-py's state. The client is called with the same
arguments in the same order; the parser's attributes (``buf``, ``state``, ``needed``,
``header_needed``, ``msg_arg``) hold after each call what nats-py's would, so ``reset()``
and a reconnect work as before. ``tests/nats/test_protocol.py`` checks both
differentially.

The delivery without coroutines (``_headers`` and the block in ``parse``) applies only
where it does what ``Client._process_msg`` does step for step: the client's
``_process_msg``, ``_process_headers`` and ``_build_message`` are nats-py's (not
overridden), nats-py parses headers itself (no ``fast_mail_parser``), and the
subscription is neither JetStream's (``_jsi``) nor an old-style request's (``_future``).
Anything else, or a message for a sid without a subscription, goes to
``nc._process_msg``. (Both are decided before the message's own steps, where nats-py
reads ``_jsi`` and ``_future`` after parsing its headers: nothing in between can set
them but a custom header parser.)
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import nats.aio.client as nats_client
from nats import errors
from nats.aio.client import NATS_HDR_LINE_SIZE, STATUS_MSG_LEN
from nats.aio.client import Client as NatsClient
from nats.js.api import Header
from nats.protocol.parser import (
    AWAITING_CONTROL_LINE,
    AWAITING_MSG_PAYLOAD,
    ERR_RE,
    HMSG_RE,
    INFO_RE,
    MAX_CONTROL_LINE_SIZE,
    MSG_RE,
    OK_RE,
    PING_RE,
    PONG_RE,
    Parser,
)

__all__ = ["LeanParser"]

_CRLF = b"\r\n"
_STATUS = Header.STATUS.value
"""nats-py keys an inline status by the plain string, its description by the enum member:
kept so, so that the dicts are alike down to their keys' types."""
_DESCRIPTION = Header.DESCRIPTION
_MSG = re.compile(rb"MSG ([^\s]+) ([0-9]{1,15}) (?:([^\s]+) )?([0-9]{1,15})\r\n")
"""A ``MSG`` line as the server writes it: single spaces, sid and size in up to 15 digits
(longer ones, and ``int``'s digit limit, are left to nats-py's code). Nothing in it but
the end matches CR or LF, so a match ends at the line's end; and on such a line nats-py's
``MSG_RE`` finds the same subject, sid, reply and size (with a reply, its first try reads
the line as this does; without, the size cannot pass for a reply: no blank after it)."""
_HMSG = re.compile(
    rb"HMSG ([^\s]+) ([0-9]{1,15}) (?:([^\s]+) )?([0-9]{1,15}) ([0-9]{1,15})\r\n(?![\s0-9])"
)
"""An ``HMSG`` line as the server writes it, when nats-py's ``HMSG_RE`` reads it alike.
The look-ahead is for a line without a reply: there ``HMSG_RE`` first tries the header
size as the reply and the total as the header size, taking its total from the next line
if that starts with blanks and digits (``\\s+`` spans the line's end); a header block
starts with ``NATS/1.0``, so such bytes are left to nats-py's regex."""


class _Numbers(dict[bytes, int]):
    """The ints of the digit strings seen, as ``int()`` gives them (``int`` of bytes costs
    about four dict look-ups); kept to a bounded number of sizes and sids."""

    def __missing__(self, digits: bytes) -> int:
        value = int(digits)
        if len(self) < 4096:
            self[digits] = value
        return value


_NUMBERS = _Numbers()
_NATS_METHODS = ("_process_msg", "_process_headers", "_build_message")


def _direct(nc: Any) -> bool:
    """Whether ``nc`` processes a message exactly as nats-py's ``Client`` does, so the
    parser may do it in line (checked once per read: a test may patch a method)."""
    if getattr(nats_client, "parse_email", None) is not None:
        return False
    for name in _NATS_METHODS:
        method = getattr(nc, name, None)
        if getattr(method, "__func__", None) is not getattr(NatsClient, name):
            return False
    return True


def _headers(nc: Any, block: bytes) -> tuple[dict[str, str] | None, Exception | None]:
    """The headers dict ``Client._process_headers`` makes of ``block`` (nats-py's own
    parser, no ``fast_mail_parser``), and the exception it would report to the error
    callback (the caller awaits that, as nats-py does, before building the message).

    The steps are nats-py's, including what it does with an inline status line
    (``NATS/1.0 408 Request Timeout``, a heartbeat's ``NATS/1.0 100 Idle Heartbeat`` with
    headers after it): the same slices, the same decodes (which raise where nats-py's
    raise), the same dict updates, in the same order."""
    rest = block[NATS_HDR_LINE_SIZE:]
    hdr: dict[str, str] | None = None
    if rest[0] == 32:  # (an IndexError for a block of 8 bytes or less, as in nats-py)
        line = block[NATS_HDR_LINE_SIZE + 1 :]
        code = line[:STATUS_MSG_LEN].strip().decode()
        desc = line[STATUS_MSG_LEN + 1 : len(line) - 4]
        hdr = {}
        if code.isdigit():
            hdr[_STATUS] = code
        rest = rest[rest.find(_CRLF) + 2 :]
        if len(desc) > 0:
            at = desc.find(_CRLF)
            if at > 0:
                hdr[_DESCRIPTION] = desc[:at].decode()
                hdr.update(nc._parse_header_lines(desc[at + 2 :]))
            else:
                hdr[_DESCRIPTION] = desc.decode()
    if len(rest) <= 2:
        return hdr, None
    try:
        parsed = nc._parse_header_lines(block[NATS_HDR_LINE_SIZE + 2 :])
        if hdr:
            hdr.update(parsed)
        else:
            hdr = parsed
    except Exception as exc:
        return hdr, exc
    return hdr or None, None


class LeanParser(Parser):
    """nats-py's protocol parser, cheaper per message, with the same calls into the client
    and the same state between reads (see the module's docstring)."""

    async def parse(self, data: bytes = b"") -> None:
        """Read ``data`` (the next bytes from the socket) and dispatch what completes."""
        buf = self.buf
        if self.state == AWAITING_MSG_PAYLOAD and len(buf) + len(data) < self.needed + 2:
            buf.extend(data)  # a large payload's middle: no copy of what came before
            return
        mirrored = bool(buf)  # whether buf holds data (else data is all there is)
        if mirrored:
            buf.extend(data)
            data = bytes(buf)
        elif not data:
            return
        elif type(data) is not bytes:
            data = bytes(data)
        nc = self.nc
        direct = _direct(nc)
        numbers = _NUMBERS
        n = len(data)
        off = 0
        state = self.state
        needed = self.needed
        hsize = self.header_needed
        arg = self.msg_arg
        subject: bytes = arg.get("subject", b"")
        sid: int = arg.get("sid", 0)
        reply: bytes = arg.get("reply", b"")
        parsed = False  # whether msg_arg must be given the locals
        live = True  # whether the locals, not the attributes, hold the state
        try:
            while off < n:
                if state == AWAITING_CONTROL_LINE:
                    first = data[off]
                    if first == 77:  # M
                        found = _MSG.match(data, off)
                    elif first == 72:  # H
                        found = _HMSG.match(data, off)
                    else:
                        found = None
                    if found is None:
                        if data.find(_CRLF, off) < 0:
                            break  # (nats-py: no regex matches without CR LF; wait for more)
                        # anything else: one line the way nats-py reads it, on its state
                        self._store(buf, data, off, mirrored, state, needed, hsize)
                        if parsed:
                            self._store_arg(subject, sid, reply)
                        live = False
                        more = await self._slow_line()
                        buf, data, state, needed, hsize, subject, sid, reply = self._load()
                        n = len(data)
                        off = 0
                        mirrored = True
                        parsed = False
                        live = True
                        if not more:
                            break
                        continue
                    if first == 77:
                        subject, f_sid, f_reply, f_size = found.groups()
                        hsize = 0
                    else:
                        subject, f_sid, f_reply, f_hsize, f_size = found.groups()
                        hsize = numbers[f_hsize]
                    sid = numbers[f_sid]
                    needed = numbers[f_size]
                    reply = f_reply or b""
                    parsed = True
                    off = found.end()
                    state = AWAITING_MSG_PAYLOAD
                # the payload: [headers] body CR LF (the CR LF is skipped, not checked)
                stop = off + needed
                if stop + 2 > n:
                    break
                block: bytes | None
                if hsize > 0:
                    block = data[off : off + hsize]
                    payload = data[off + hsize : stop]
                    hsize = 0
                else:
                    block = None
                    payload = data[off:stop]
                off = stop + 2
                state = AWAITING_CONTROL_LINE
                sub = nc._subs.get(sid) if direct else None
                if not sub or sub._jsi or sub._future:
                    await nc._process_msg(sid, subject, reply, payload, block)
                else:
                    # Client._process_msg for a plain subscription, step for step
                    size = len(payload)
                    stats = nc.stats
                    stats["in_msgs"] += 1
                    stats["in_bytes"] += size
                    sub._received += 1
                    if sub._max_msgs > 0 and sub._received >= sub._max_msgs:
                        nc._subs.pop(sid, None)
                    hdr: dict[str, str] | None = None
                    if block:
                        hdr, failure = _headers(nc, block)
                        if failure is not None:
                            await nc._error_cb(failure)
                    msg = nc.msg_class(
                        subject=subject.decode(), reply=reply.decode(), data=payload,
                        headers=hdr, _client=nc, _sid=sid,
                    )  # fmt: skip
                    if msg:
                        dropped = False
                        try:
                            sub._pending_size += size
                            limit = sub._pending_bytes_limit
                            if limit > 0 and sub._pending_size >= limit:
                                sub._pending_size -= size
                                await nc._error_cb(
                                    errors.SlowConsumerError(
                                        subject=msg.subject, reply=msg.reply, sid=sid, sub=sub
                                    )
                                )
                                dropped = True  # (nats-py returns here, before _jsi)
                            else:
                                sub._pending_queue.put_nowait(msg)
                        except asyncio.QueueFull:
                            sub._pending_size -= len(msg.data)
                            await nc._error_cb(
                                errors.SlowConsumerError(
                                    subject=msg.subject, reply=msg.reply, sid=sid, sub=sub
                                )
                            )
                        if not dropped and sub._jsi:
                            sub._jsi.track_sequences(msg.reply)
                if self.buf is not buf:
                    # a callback reset the parser: go on with its new buffer, as nats-py does
                    buf, data, state, needed, hsize, subject, sid, reply = self._load()
                    n = len(data)
                    off = 0
                    mirrored = True
                    parsed = False
        finally:
            if live and self.buf is buf:
                self._store(buf, data, off, mirrored, state, needed, hsize)
                if parsed:
                    self._store_arg(subject, sid, reply)

    def _store(
        self, buf: bytearray, data: bytes, off: int, mirrored: bool,
        state: int, needed: int, hsize: int,
    ) -> None:  # fmt: skip
        """Leave in the attributes what nats-py's parser would hold at this point: the
        unread bytes in ``buf``, and where the message in progress stands."""
        if mirrored:
            if off:
                del buf[:off]
        elif off < len(data):
            buf += memoryview(data)[off:]
        self.state = state
        self.needed = needed
        self.header_needed = hsize

    def _load(self) -> tuple[bytearray, bytes, int, int, int, bytes, int, bytes]:
        """The attributes as locals for ``parse``, after nats-py's code or a reset."""
        arg = self.msg_arg
        buf = self.buf
        return (
            buf, bytes(buf), self.state, self.needed, self.header_needed,
            arg.get("subject", b""), arg.get("sid", 0), arg.get("reply", b""),
        )  # fmt: skip

    def _store_arg(self, subject: bytes, sid: int, reply: bytes) -> None:
        arg = self.msg_arg
        arg["subject"] = subject
        arg["sid"] = sid
        arg["reply"] = reply

    def _begin_payload(self, found: re.Match[bytes], *, headers: bool) -> None:
        """A ``MSG`` (``headers``: ``HMSG``) line that nats-py's own regex matched: its fields
        taken as nats-py takes them, in its order, the line consumed."""
        try:
            groups = found.groups()  # subject, sid, _, reply, [header size,] size
            arg = self.msg_arg
            arg["subject"] = groups[0]
            arg["sid"] = int(groups[1])
            arg["reply"] = groups[3] if groups[3] else b""
            self.needed = int(groups[-1])
            if headers:
                self.header_needed = int(groups[4])
            del self.buf[: found.end()]
            self.state = AWAITING_MSG_PAYLOAD
        except Exception as exc:
            raise errors.ProtocolError("nats: malformed MSG") from exc

    async def _slow_line(self) -> bool:
        """Read the control line at the start of ``self.buf`` as nats-py's ``parse`` does:
        its regexes in its order, its errors, its calls into the client and the moments
        it consumes the line. False when the line is not complete yet."""
        buf = self.buf
        found = MSG_RE.match(buf)
        if found:
            self._begin_payload(found, headers=False)
            return True
        found = HMSG_RE.match(buf)
        if found:
            self._begin_payload(found, headers=True)
            return True
        found = OK_RE.match(buf)
        if found:
            del buf[: found.end()]
            return True
        found = ERR_RE.match(buf)
        if found:
            await self.nc._process_err(found.group(1).decode().lower())
            del self.buf[: found.end()]  # (after the call: maybe a reset parser's new buffer)
            return True
        found = PING_RE.match(buf)
        if found:
            del buf[: found.end()]
            await self.nc._process_ping()
            return True
        found = PONG_RE.match(buf)
        if found:
            del buf[: found.end()]
            await self.nc._process_pong()
            return True
        found = INFO_RE.match(buf)
        if found:
            await self.nc._process_info(json.loads(found.group(1).decode()))
            del self.buf[: found.end()]
            return True
        if len(buf) < MAX_CONTROL_LINE_SIZE and _CRLF in buf:
            raise errors.ProtocolError("nats: unknown protocol")
        return False  # a line longer than nats-py looks at, or not complete: wait
