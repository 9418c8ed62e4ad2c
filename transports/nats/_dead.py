"""Dead letters on NATS: copies of poison messages on ``dasync.<S>.dead``, with their reason.

The copy lives in the service's work stream, on its own subject that no
consumer reads, so it stays until an operator retries or deletes it.
"""

from __future__ import annotations

import base64
from typing import Any

from dasync.transports._contract import UNKNOWN_ORIGIN, DeadLetter, Handler, Message, Origin

from . import _envelope as env
from . import _naming as naming
from ._connection import ApiError, Connection

__all__ = ["list_dead_letters", "redeliver_dead_letter", "retry_dead_letter"]

NO_MESSAGE = 10037


async def list_dead_letters(conn: Connection, queue: str, limit: int = 1000) -> list[DeadLetter]:
    ns = conn.options.namespace
    stream, subject = naming.work_stream(queue, ns), naming.dead_subject(queue, ns)
    letters: list[DeadLetter] = []
    seq = 0
    while len(letters) < limit:
        msg = await _next(conn, stream, subject, seq + 1)
        if msg is None:
            break
        seq = int(msg["seq"])
        headers = _headers(msg)
        message = Message(
            headers.get(env.MSG_ID, f"dead-{seq}"),
            {k: v for k, v in headers.items() if not k.startswith(("Nats-", "Dasync-Dead-"))},
            base64.b64decode(msg.get("data", "")),
        )
        letters.append(
            DeadLetter(
                str(seq),
                queue,
                message,
                headers.get(env.DEAD_REASON, ""),
                subject=headers.get(env.DEAD_SUBJECT, ""),
            )
        )
    return letters


async def retry_dead_letter(conn: Connection, queue: str, letter_id: str) -> None:
    ns = conn.options.namespace
    stream = naming.work_stream(queue, ns)
    for letter in await list_dead_letters(conn, queue):
        if letter.id == letter_id:
            headers = dict(letter.message.headers)
            headers[env.NATS_MSG_ID] = f"{letter.message.msg_id}~retry{letter_id}"
            headers[env.MSG_ID] = headers[env.NATS_MSG_ID]
            # back on the lane it came from, so that it keeps its sender (the retrying user
            # must be allowed to publish there: the service itself or an operator)
            subject = letter.subject or naming.work_subject(queue, ns)
            await conn.publish(subject, letter.message.body, headers)
            await conn.api(f"STREAM.MSG.DELETE.{stream}", {"seq": int(letter_id)})
            return
    raise LookupError(f"no dead letter {letter_id!r} in {queue!r}")


async def _next(conn: Connection, stream: str, subject: str, seq: int) -> dict[str, Any] | None:
    try:
        resp = await conn.api(f"STREAM.MSG.GET.{stream}", {"seq": seq, "next_by_subj": subject})
    except ApiError as exc:
        if exc.err_code == NO_MESSAGE or exc.code == 404:
            return None
        raise
    message = resp.get("message")
    return message if isinstance(message, dict) else None


def _headers(msg: dict[str, Any]) -> dict[str, str]:
    raw = msg.get("hdrs")
    if not raw:
        return {}
    text = base64.b64decode(raw).decode("utf-8", "replace")
    headers: dict[str, str] = {}
    for line in text.split("\r\n")[1:]:
        if ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip()] = value.strip()
    return headers


async def redeliver_dead_letter(
    conn: Connection, queue: str, letter: DeadLetter, handler: Handler
) -> None:
    """``Redelivery``: the letter to ``handler`` in place, from the sender its lane names."""
    await handler(_LetterDelivery(conn, queue, letter))


class _LetterDelivery:
    """A dead letter handed back: ``ack`` deletes it, ``term`` replaces it by a copy with
    the new reason, ``nak`` leaves it. Its sender is the lane it first came on, which the
    service's own transport recorded (only the service writes its dead-letter subject)."""

    def __init__(self, conn: Connection, queue: str, letter: DeadLetter) -> None:
        self._conn, self._queue, self._letter = conn, queue, letter
        ns = conn.options.namespace
        found = naming.origin_of(letter.subject, ns) if letter.subject else None
        self._origin = Origin(*found) if found is not None else UNKNOWN_ORIGIN
        self._settled = False

    @property
    def message(self) -> Message:
        return self._letter.message

    @property
    def attempt(self) -> int:
        return 1

    @property
    def origin(self) -> Origin:
        return self._origin

    async def _delete(self) -> None:
        stream = naming.work_stream(self._queue, self._conn.options.namespace)
        await self._conn.api(f"STREAM.MSG.DELETE.{stream}", {"seq": int(self._letter.id)})

    async def ack(self) -> None:
        if not self._settled:
            self._settled = True
            await self._delete()

    async def nak(self, delay: float = 0.0) -> None:
        self._settled = True

    async def in_progress(self) -> None:
        pass

    async def term(self, reason: str) -> None:
        if self._settled:
            return
        self._settled = True
        ns = self._conn.options.namespace
        letter = self._letter
        headers = dict(letter.message.headers)
        headers.update(
            {
                env.MSG_ID: letter.message.msg_id,
                env.DEAD_REASON: env.header_safe(reason),
                env.DEAD_QUEUE: self._queue,
                env.DEAD_SUBJECT: letter.subject,
                env.NATS_MSG_ID: f"dead:{letter.id}:again:{env.header_safe(reason)[-40:]}",
            }
        )
        await self._conn.publish(naming.dead_subject(self._queue, ns), letter.message.body, headers)
        await self._delete()
