"""The names dasync gives to NATS streams, subjects and consumers.

Pure functions (no nats-py import) so that code generators (AsyncAPI) and
operator tooling can compute the same names. Every service gets a work stream
``DASYNC_<svc>_WORK`` and a journal stream ``DASYNC_<svc>_JOURNAL``; all
client inboxes share ``DASYNC_INBOXES``. The distinct suffixes make the three
kinds impossible to confuse whatever a service is called.

Names outside ``[A-Za-z0-9_-]`` (or starting with ``_``, or very long) are
made safe by replacing the odd characters and appending a short hash of the
original, so the mapping stays one-to-one and still readable.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "INBOX_CONSUMER_PREFIX",
    "INBOX_PREFIX",
    "INBOX_STREAM",
    "PREFIX",
    "WORK_CONSUMER",
    "dead_subject",
    "inbox_consumer",
    "inbox_subject",
    "inbox_subjects",
    "is_inbox",
    "journal_stream",
    "journal_subject",
    "journal_subjects",
    "schedule_subject",
    "token",
    "work_stream",
    "work_subject",
    "work_subjects",
]

PREFIX = "dasync"
INBOX_PREFIX = "_inbox."
"""Queues whose name starts with this are client inboxes (see ``dasync._runtime._wire``)."""
INBOX_STREAM = "DASYNC_INBOXES"
WORK_CONSUMER = "workers"
INBOX_CONSUMER_PREFIX = "inbox_"

_SAFE = re.compile(r"[A-Za-z0-9_-]+")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9_-]")
_MAX = 64


def token(name: str, max_length: int = _MAX) -> str:
    """``name`` as one subject token that is also valid in stream and consumer names."""
    if _SAFE.fullmatch(name) and not name.startswith("_") and len(name) <= max_length:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    readable = _UNSAFE_CHAR.sub("_", name).strip("_")[: max_length - 13] or "x"
    return f"{readable}-{digest}"


def is_inbox(queue: str) -> bool:
    return queue.startswith(INBOX_PREFIX)


# --- service work queues -------------------------------------------------------------------


def work_stream(service: str) -> str:
    return f"DASYNC_{token(service)}_WORK"


def work_subject(service: str) -> str:
    """Where calls, replies, due timers and cancels for ``service`` are published."""
    return f"{PREFIX}.{token(service)}.work"


def schedule_subject(service: str, msg_id: str) -> str:
    """One subject per pending timer: the server keeps one schedule per subject."""
    return f"{PREFIX}.{token(service)}.schedule.{token(msg_id, 200)}"


def dead_subject(service: str) -> str:
    """Copies of terminated (poison) messages, with the reason, for operators."""
    return f"{PREFIX}.{token(service)}.dead"


def work_subjects(service: str) -> list[str]:
    base = f"{PREFIX}.{token(service)}"
    return [f"{base}.work", f"{base}.schedule.*", f"{base}.dead"]


# --- journals ------------------------------------------------------------------------------


def journal_stream(service: str) -> str:
    return f"DASYNC_{token(service)}_JOURNAL"


def journal_subject(service: str, routine_id: str) -> str:
    """One subject per routine: its journal entries in order."""
    return f"{PREFIX}.{token(service)}.journal.{token(routine_id, 200)}"


def journal_subjects(service: str) -> list[str]:
    return [f"{PREFIX}.{token(service)}.journal.*"]


# --- client inboxes ------------------------------------------------------------------------


def _inbox_token(queue: str) -> str:
    return token(queue[len(INBOX_PREFIX) :] if is_inbox(queue) else queue)


def inbox_subject(queue: str) -> str:
    return f"{PREFIX}._inbox.{_inbox_token(queue)}"


def inbox_subjects() -> list[str]:
    return [f"{PREFIX}._inbox.*"]


def inbox_consumer(queue: str) -> str:
    return f"{INBOX_CONSUMER_PREFIX}{_inbox_token(queue)}"
