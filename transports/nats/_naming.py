"""The names dasync gives to NATS streams, subjects and consumers.

Pure functions (no nats-py import) so that code generators (AsyncAPI) and
operator tooling can compute the same names. Every service gets a work stream
``DASYNC_<svc>_WORK`` and a journal stream ``DASYNC_<svc>_JOURNAL``; all
client inboxes share ``DASYNC_INBOXES``. The distinct suffixes make the three
kinds impossible to confuse whatever a service is called.

Names outside ``[A-Za-z0-9_-]`` (or starting with ``_``, or very long) are
made safe by replacing the odd characters and appending a short hash of the
original, so the mapping stays one-to-one and still readable.

A **namespace** (``NatsOptions.namespace``) keeps several dasync deployments
apart on one NATS server or cluster (staging and production, one namespace per
test): with namespace ``ns`` every stream is ``DASYNC-ns_...`` instead of
``DASYNC_...`` and every subject starts with ``dasync-ns.`` instead of
``dasync.``. A namespace has no ``_`` and no ``.``, so the names of different
namespaces (and of no namespace) can never be equal or overlap.
"""

from __future__ import annotations

import functools
import hashlib
import re

__all__ = [
    "INBOX_CONSUMER_PREFIX",
    "INBOX_PREFIX",
    "INBOX_STREAM",
    "PREFIX",
    "check_namespace",
    "WORK_CONSUMER",
    "dead_subject",
    "inbox_consumer",
    "inbox_subject",
    "inbox_stream",
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
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9_-]")
_MAX = 64


@functools.lru_cache(maxsize=65_536)
def token(name: str, max_length: int = _MAX) -> str:
    """``name`` as one subject token that is also valid in stream and consumer names.

    Cached: it runs for every message sent (service and routine names recur).
    """
    if _SAFE.fullmatch(name) and not name.startswith("_") and len(name) <= max_length:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    readable = _UNSAFE_CHAR.sub("_", name).strip("_")[: max_length - 13] or "x"
    return f"{readable}-{digest}"


def is_inbox(queue: str) -> bool:
    return queue.startswith(INBOX_PREFIX)


def check_namespace(namespace: str) -> str:
    """``namespace`` if valid: empty (none), or 1-32 of ``[A-Za-z0-9-]`` not starting with ``-``."""
    if namespace and not _NAMESPACE.fullmatch(namespace):
        raise ValueError(
            f"invalid dasync namespace {namespace!r}: use 1-32 letters, digits or '-' "
            "(no '_' or '.', not starting with '-')"
        )
    return namespace


def _root(namespace: str) -> str:
    """The first subject token: ``dasync`` or ``dasync-<namespace>``."""
    return f"{PREFIX}-{namespace}" if namespace else PREFIX


def _stream(namespace: str, rest: str) -> str:
    return f"DASYNC-{namespace}_{rest}" if namespace else f"DASYNC_{rest}"


# --- service work queues -------------------------------------------------------------------


def work_stream(service: str, namespace: str = "") -> str:
    return _stream(namespace, f"{token(service)}_WORK")


def work_subject(service: str, namespace: str = "") -> str:
    """Where calls, replies, due timers and cancels for ``service`` are published."""
    return f"{_root(namespace)}.{token(service)}.work"


def schedule_subject(service: str, msg_id: str, namespace: str = "") -> str:
    """One subject per pending timer: the server keeps one schedule per subject."""
    return f"{_root(namespace)}.{token(service)}.schedule.{token(msg_id, 200)}"


def dead_subject(service: str, namespace: str = "") -> str:
    """Copies of terminated (poison) messages, with the reason, for operators."""
    return f"{_root(namespace)}.{token(service)}.dead"


def work_subjects(service: str, namespace: str = "") -> list[str]:
    base = f"{_root(namespace)}.{token(service)}"
    return [f"{base}.work", f"{base}.schedule.*", f"{base}.dead"]


# --- journals ------------------------------------------------------------------------------


def journal_stream(service: str, namespace: str = "") -> str:
    return _stream(namespace, f"{token(service)}_JOURNAL")


def journal_subject(service: str, routine_id: str, namespace: str = "") -> str:
    """One subject per routine: its journal entries in order."""
    return f"{_root(namespace)}.{token(service)}.journal.{token(routine_id, 200)}"


def journal_subjects(service: str, namespace: str = "") -> list[str]:
    return [f"{_root(namespace)}.{token(service)}.journal.*"]


def claim_stream(service: str, namespace: str = "") -> str:
    return _stream(namespace, f"{token(service)}_CLAIMS")


def claim_subject(service: str, routine_id: str, namespace: str = "") -> str:
    """One subject per routine being started: the lease of the worker running its first step."""
    return f"{_root(namespace)}.{token(service)}.claim.{token(routine_id, 200)}"


def claim_subjects(service: str, namespace: str = "") -> list[str]:
    return [f"{_root(namespace)}.{token(service)}.claim.*"]


# --- client inboxes ------------------------------------------------------------------------


def _inbox_token(queue: str) -> str:
    return token(queue[len(INBOX_PREFIX) :] if is_inbox(queue) else queue)


def inbox_stream(namespace: str = "") -> str:
    """The stream of all client inboxes (``INBOX_STREAM`` without a namespace)."""
    return _stream(namespace, "INBOXES")


def inbox_subject(queue: str, namespace: str = "") -> str:
    return f"{_root(namespace)}._inbox.{_inbox_token(queue)}"


def inbox_subjects(namespace: str = "") -> list[str]:
    return [f"{_root(namespace)}._inbox.*"]


def inbox_consumer(queue: str) -> str:
    return f"{INBOX_CONSUMER_PREFIX}{_inbox_token(queue)}"


# --- events --------------------------------------------------------------------------------

TOPIC_QUEUE_PREFIX = "_topic."
"""Pseudo-queue names ``_topic.<Service.event>@<group>`` stand for an event subscription."""


def split_topic(topic: str) -> tuple[str, str]:
    """``"Service.event"`` -> ``("Service", "event")``."""
    service, _, event = topic.partition(".")
    return service, event


def event_stream(service: str, namespace: str = "") -> str:
    """The stream holding the events ``service`` publishes (its consumers: one per group)."""
    return _stream(namespace, f"{token(service)}_EVENTS")


def event_subject(topic: str, namespace: str = "") -> str:
    """Where the events ``topic`` (``Service.event``) of a publishing service are stored."""
    service, event = split_topic(topic)
    return f"{_root(namespace)}.{token(service)}.event.{token(event)}"


def event_subjects(service: str, namespace: str = "") -> list[str]:
    return [f"{_root(namespace)}.{token(service)}.event.*"]


def group_queue(topic: str, group: str) -> str:
    return f"{TOPIC_QUEUE_PREFIX}{topic}@{group}"


def is_group_queue(queue: str) -> bool:
    return queue.startswith(TOPIC_QUEUE_PREFIX)


def parse_group_queue(queue: str) -> tuple[str, str]:
    """``_topic.<topic>@<group>`` -> ``(topic, group)``."""
    topic, _, group = queue[len(TOPIC_QUEUE_PREFIX) :].rpartition("@")
    return topic, group


def group_consumer(topic: str, group: str) -> str:
    """The durable consumer of one subscribing group (``Service.handler``) on one event."""
    return token(f"{group}__{split_topic(topic)[1]}".replace(".", "__"))
