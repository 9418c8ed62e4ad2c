"""Dead letters on NATS: copies of poison messages on ``dasync.<S>.dead``, with their reason.

The copy lives in the service's work stream, on its own subject that no
consumer reads, so it stays until an operator retries or deletes it.
"""

from __future__ import annotations

import base64
from typing import Any

from dasync.transports._contract import DeadLetter, Message

from . import _envelope as env
from . import _naming as naming
from ._connection import ApiError, Connection

__all__ = ["list_dead_letters", "retry_dead_letter"]

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
