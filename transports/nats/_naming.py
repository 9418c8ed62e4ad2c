"""The names dasync gives to NATS streams, subjects and consumers.

Pure functions (no nats-py import) so that code generators (AsyncAPI) and
operator tooling can compute the same names. Every service gets a work stream
``DASYNC_<svc>_WORK`` and a journal stream ``DASYNC_<svc>_JOURNAL``; each
client identity has its inbox stream ``DASYNC__INBOX_<identity>``. The distinct
suffixes make the kinds impossible to confuse whatever a service is called.

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

from dasync.transports._contract import INBOX_PREFIX, is_inbox, split_inbox

__all__ = [
    "INBOX_CONSUMER_PREFIX",
    "INBOX_PREFIX",
    "INBOX_TOKEN",
    "alive_subject",
    "alive_subjects",
    "any_inputs_filter",
    "check_lane",
    "lane_consumer",
    "lane_filter",
    "lane_of_subject",
    "lane_subject",
    "lanes_filter",
    "shared_lane",
    "call_subject",
    "client_subject",
    "inbox_filter",
    "inputs_filter",
    "operator_subject",
    "origin_of",
    "sender_lane",
    "split_inbox",
    "start_filter",
    "start_of_journal",
    "start_routine_token",
    "start_subject",
    "start_subjects",
    "starts_stream",
    "state_stream",
    "state_subject",
    "state_subjects",
    "PREFIX",
    "check_namespace",
    "WORK_CONSUMER",
    "dead_subject",
    "inbox_consumer",
    "inbox_subject",
    "inbox_stream",
    "inbox_subjects",
    "is_inbox",
    "failure_note_subject",
    "journal_of_note",
    "journal_stream",
    "journal_subject",
    "journal_subjects",
    "note_of",
    "schedule_subject",
    "token",
    "work_stream",
    "work_subject",
    "work_subjects",
]

PREFIX = "dasync"
WORK_CONSUMER = "workers"
INBOX_CONSUMER_PREFIX = "inbox_"

_SAFE = re.compile(r"[A-Za-z0-9_-]+")
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9_-]")
_MAX = 64


@functools.lru_cache(maxsize=8_192)
def token(name: str, max_length: int = _MAX) -> str:
    """``name`` as one subject token that is also valid in stream and consumer names.

    Cached: it runs for every message sent (service and routine names recur).
    """
    if _SAFE.fullmatch(name) and not name.startswith("_") and len(name) <= max_length:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    readable = _UNSAFE_CHAR.sub("_", name).strip("_")[: max_length - 13] or "x"
    return f"{readable}-{digest}"


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
#
# Everything a service receives arrives on ``<root>.<svc>.in.<lane>``, and the lane says
# who sent it: ``work`` (the service itself: timers, retries), ``svc.<P>`` (service P:
# its calls, its replies, its cancels), ``client.<C>`` (client identity C), ``operator``.
# The server's permissions let each sender publish on its own lane only, so the lane is
# the message's authenticated origin (``origin_of``); headers are never trusted for it.

LANE_SELF = "work"
LANE_SERVICE = "svc"
LANE_CLIENT = "client"
LANE_OPERATOR = "operator"


def work_stream(service: str, namespace: str = "") -> str:
    return _stream(namespace, f"{token(service)}_WORK")


def _service_root(service: str, namespace: str) -> str:
    return f"{_root(namespace)}.{token(service)}"


def work_subject(service: str, namespace: str = "") -> str:
    """Where a service's own messages (due timers, retries) are published."""
    return f"{_service_root(service, namespace)}.in.{LANE_SELF}"


def call_subject(service: str, sender: str, namespace: str = "") -> str:
    """Where service ``sender`` publishes calls, replies and cancels for ``service``."""
    if sender == service:
        return work_subject(service, namespace)
    return f"{_service_root(service, namespace)}.in.{LANE_SERVICE}.{token(sender)}"


def client_subject(service: str, identity: str, namespace: str = "") -> str:
    """Where client ``identity`` publishes starts and cancels for ``service``."""
    return f"{_service_root(service, namespace)}.in.{LANE_CLIENT}.{token(identity)}"


def operator_subject(service: str, namespace: str = "") -> str:
    """Where operators publish cancels (and retried dead letters keep their own lane)."""
    return f"{_service_root(service, namespace)}.in.{LANE_OPERATOR}"


def inputs_filter(service: str, namespace: str = "") -> str:
    """Every lane of ``service``'s inputs: the filter of its work consumer."""
    return f"{_service_root(service, namespace)}.in.>"


def any_inputs_filter(namespace: str = "") -> str:
    """The inputs of every service of a namespace (to find the services deployed)."""
    return f"{_root(namespace)}.*.in.>"


def schedule_subject(service: str, msg_id: str, namespace: str = "") -> str:
    """One subject per pending timer: the server keeps one schedule per subject."""
    return f"{_service_root(service, namespace)}.schedule.{token(msg_id, 200)}"


def dead_subject(service: str, namespace: str = "") -> str:
    """Copies of terminated (poison) messages, with the reason, for operators."""
    return f"{_service_root(service, namespace)}.dead"


def work_subjects(service: str, namespace: str = "") -> list[str]:
    base = _service_root(service, namespace)
    return [f"{base}.in.>", f"{base}.schedule.*", f"{base}.dead", lanes_filter(service, namespace)]


# --- worker lanes ----------------------------------------------------------------------------
#
# The messages of a routine that one worker holds (its calls' replies, its timers) go to
# that worker's own lane, ``<root>.<svc>.at.<lane>.<sender lane>``: the sender lane after
# ``at.<lane>`` is the one of ``in.`` (``work``, ``svc.<P>``), so the server's permissions
# authenticate the sender there too. Each lane has its own consumer (``at_<lane>``), pulled
# by its worker; a lane whose worker is gone (no subscriber on ``<root>.<svc>.alive.<lane>``)
# is pulled by the others. ``at.`` and ``in.`` never overlap, as a work-queue stream needs.

LANE_TOKEN = "at"
_LANE_ID = re.compile(r"[0-9a-f]{8,32}")


def check_lane(lane: str) -> str:
    """``lane`` if it can name a worker lane (8-32 lowercase hex digits), else ``ValueError``."""
    if not _LANE_ID.fullmatch(lane):
        raise ValueError(f"invalid worker lane {lane!r}: 8-32 lowercase hex digits")
    return lane


def lane_subject(shared_subject: str, lane: str) -> str:
    """The subject of worker ``lane`` that stands for the shared lane ``shared_subject``
    (``<root>.<svc>.in.<sender lane>`` becomes ``<root>.<svc>.at.<lane>.<sender lane>``)."""
    root, svc, kind, rest = shared_subject.split(".", 3)
    if kind != "in":
        raise ValueError(f"not a service input subject: {shared_subject!r}")
    if lane != "*":  # the wildcard: every lane, in permissions
        check_lane(lane)
    return f"{root}.{svc}.{LANE_TOKEN}.{lane}.{rest}"


def shared_lane(subject: str) -> str:
    """The shared lane a worker lane's (or a call's start) subject stands for; any other
    subject as it is."""
    parts = subject.split(".", 4)
    if len(parts) == 5 and parts[1] != INBOX_TOKEN:
        if parts[2] == LANE_TOKEN:
            return f"{parts[0]}.{parts[1]}.in.{parts[4]}"
        if parts[2] == START_TOKEN and "." not in parts[4]:
            sender = LANE_SELF if parts[3] == parts[1] else f"{LANE_SERVICE}.{parts[3]}"
            return f"{parts[0]}.{parts[1]}.in.{sender}"
    return subject


def lane_of_subject(subject: str) -> str:
    """The worker lane a subject of ``<root>.<svc>.at.<lane>.>`` belongs to, else ``""``."""
    parts = subject.split(".", 4)
    laned = len(parts) == 5 and parts[2] == LANE_TOKEN and parts[1] != INBOX_TOKEN
    return parts[3] if laned else ""


def lane_filter(service: str, lane: str, namespace: str = "") -> str:
    """Every subject of one worker lane: the filter of its consumer. ``lane`` is one token
    of a stored subject (a lane this worker made, or one found in the stream)."""
    return f"{_service_root(service, namespace)}.{LANE_TOKEN}.{lane}.>"


def lanes_filter(service: str, namespace: str = "") -> str:
    """Every worker lane of ``service``."""
    return f"{_service_root(service, namespace)}.{LANE_TOKEN}.>"


def lane_consumer(lane: str) -> str:
    """The durable consumer of one worker lane (any token a sender put there made safe)."""
    return f"{LANE_TOKEN}_{token(lane, 32)}"


def alive_subject(service: str, lane: str, namespace: str = "") -> str:
    """A core subject the worker of ``lane`` subscribes to while it lives: the server
    answers "no responders" to a request on it once the worker is gone."""
    return f"{_service_root(service, namespace)}.alive.{lane}"


def alive_subjects(service: str, namespace: str = "") -> str:
    return f"{_service_root(service, namespace)}.alive.*"


def origin_of(subject: str, namespace: str = "") -> tuple[str, str] | None:
    """``(kind, name)`` of the sender a work or inbox subject stands for, or ``None``.

    Kinds are those of ``dasync.transports.Origin``: ``service``, ``client``,
    ``operator``. An inbox subject's last token is the replying service.
    """
    root = _root(namespace)
    parts = shared_lane(subject).split(".")
    if len(parts) < 4 or parts[0] != root:
        return None
    if parts[1] == INBOX_TOKEN:
        return ("service", parts[-1]) if len(parts) == 5 else None
    if parts[2] != "in":
        return None
    lane = parts[3:]
    if lane == [LANE_SELF]:
        return ("service", parts[1])
    if len(lane) == 2 and lane[0] == LANE_SERVICE:
        return ("service", lane[1])
    if len(lane) == 2 and lane[0] == LANE_CLIENT:
        return ("client", lane[1])
    if lane == [LANE_OPERATOR]:
        return ("operator", "")
    return None


def sender_lane(subject: str, scheduler: str | None, namespace: str = "") -> str:
    """The lane of whoever really sent a message that arrived on ``subject``.

    A message a schedule fired carries ``Nats-Scheduler``, the subject the schedule was
    published on (the server sets it; no client may). A schedule may target any subject
    of its stream, so for such a message the arrival subject proves nothing; the
    schedule's does: ``<root>.<svc>.schedule.*`` is the service's own (its timers,
    ``<root>.<svc>.in.work``), any other is a lane and names its sender. A worker lane's
    subject stands for its shared lane (``shared_lane``): a dead letter retried from it goes
    to any worker.
    """
    if not scheduler:
        return shared_lane(subject)
    parts = scheduler.split(".")
    if len(parts) == 4 and parts[0] == _root(namespace) and parts[2] == "schedule":
        return f"{_root(namespace)}.{parts[1]}.in.{LANE_SELF}"
    return shared_lane(scheduler)


# --- the starts of calls between services ----------------------------------------------------
#
# A call from service P starts its routine on ``<root>.<svc>.start.<P>.<routine>``, in a
# stream that keeps one message per subject and refuses any other (``discard_new_per_subject``)
# until the routine's journal is purged: the server itself guarantees that a call's start
# exists once, so its first delivery needs neither a claim nor a journal read. The sender
# token is P's own (the permissions let only P publish there), and the routine id of a call
# names its caller (``_authority.check_start``), so no one can take another's subject.

START_TOKEN = "start"


def starts_stream(service: str, namespace: str = "") -> str:
    return _stream(namespace, f"{token(service)}_STARTS")


def start_subject(service: str, sender: str, routine_id: str, namespace: str = "") -> str:
    """Where service ``sender`` publishes the one start of routine ``routine_id``."""
    routine = token(routine_id, 200)
    return f"{_service_root(service, namespace)}.{START_TOKEN}.{token(sender)}.{routine}"


def start_subjects(service: str, sender: str = "*", namespace: str = "") -> str:
    """Every start subject of ``service`` (of one ``sender``): the stream's subjects, and
    in permissions what one caller may publish."""
    who = sender if sender == "*" else token(sender)
    return f"{_service_root(service, namespace)}.{START_TOKEN}.{who}.*"


def start_filter(service: str, routine_id: str, namespace: str = "") -> str:
    """The start of routine ``routine_id`` whoever sent it (a purge's filter)."""
    return f"{_service_root(service, namespace)}.{START_TOKEN}.*.{token(routine_id, 200)}"


def start_of_journal(journal_subject: str) -> str:
    """The ``start_filter`` of the routine a journal subject belongs to."""
    head, _, routine = journal_subject.rpartition(".")
    return f"{head.rpartition('.')[0]}.{START_TOKEN}.*.{routine}"


def start_routine_token(subject: str) -> str:
    """The routine token of a start subject (``""`` for any other subject): compared with
    ``token(routine_id, 200)`` it tells whether a start names the routine of its subject."""
    parts = subject.split(".")
    return parts[4] if len(parts) == 5 and parts[2] == START_TOKEN else ""


# --- journals ------------------------------------------------------------------------------


def journal_stream(service: str, namespace: str = "") -> str:
    return _stream(namespace, f"{token(service)}_JOURNAL")


def journal_subject(service: str, routine_id: str, namespace: str = "") -> str:
    """One subject per routine: its journal entries in order."""
    return f"{_root(namespace)}.{token(service)}.journal.{token(routine_id, 200)}"


def journal_subjects(service: str, namespace: str = "") -> list[str]:
    return [f"{_root(namespace)}.{token(service)}.journal.*"]


NOTE_MARK = "_failed_"
"""Starts the last token of a routine's failure note, next to its journal in the journal
stream: ``token`` never makes one that starts with ``_``, so no journal is named so."""


def failure_note_subject(service: str, routine_id: str, namespace: str = "") -> str:
    """Where the failure a routine's caller was told is kept (``FailureNotes``)."""
    return note_of(journal_subject(service, routine_id, namespace))


def note_of(journal_subject: str) -> str:
    """The failure note subject that belongs to a journal subject."""
    head, _, last = journal_subject.rpartition(".")
    return f"{head}.{NOTE_MARK}{last}"


def journal_of_note(subject: str) -> str | None:
    """The journal subject a failure note (or a start claim) belongs to; None if
    ``subject`` is neither."""
    head, _, last = subject.rpartition(".")
    for mark in (NOTE_MARK, CLAIM_MARK):
        if last.startswith(mark):
            return f"{head}.{last[len(mark) :]}"
    return None


CLAIM_MARK = "_claim_"
"""Starts the last token of a routine's start claim, next to its journal in the journal
stream (as ``NOTE_MARK``)."""


def claim_subject(service: str, routine_id: str, namespace: str = "") -> str:
    """The lease on a routine's first step, next to its journal: kept as long as the journal
    (retention removes both), so a claim made anew proves that the routine never ran."""
    head, _, last = journal_subject(service, routine_id, namespace).rpartition(".")
    return f"{head}.{CLAIM_MARK}{last}"


def claim_of(journal_subject: str) -> str:
    """The claim subject that belongs to a journal subject."""
    head, _, last = journal_subject.rpartition(".")
    return f"{head}.{CLAIM_MARK}{last}"


def state_stream(service: str, namespace: str = "") -> str:
    return _stream(namespace, f"{token(service)}_STATE")


def state_subject(service: str, key: str, namespace: str = "") -> str:
    """One subject per fact a service keeps for its workers only (its message-id key, the
    count of crashed runs of one input)."""
    return f"{_service_root(service, namespace)}.state.{token(key, 200)}"


def state_subjects(service: str, namespace: str = "") -> list[str]:
    return [f"{_service_root(service, namespace)}.state.*"]


# --- client inboxes ------------------------------------------------------------------------
#
# A client's inbox queue is ``_inbox.<identity>.<id>``; each identity has its own stream
# (``DASYNC_INBOX_<identity>``), administered by that identity alone, and a reply from
# service S lands on ``<root>._inbox.<identity>.<id>.<S>``: S's permissions allow only
# that last token, so the client knows which service answered.

INBOX_TOKEN = "_inbox"


def inbox_stream(identity: str, namespace: str = "") -> str:
    """The stream of the inboxes of one client identity: ``DASYNC__INBOX_<identity>``
    (a service's token never starts with ``_``, so no service stream can have this name)."""
    return _stream(namespace, f"_INBOX_{token(identity)}")


def inbox_subject(queue: str, sender: str, namespace: str = "") -> str:
    """Where service ``sender`` publishes a reply to the client inbox ``queue``."""
    identity, inbox_id = split_inbox(queue)
    return f"{_root(namespace)}.{INBOX_TOKEN}.{identity}.{inbox_id}.{token(sender)}"


def inbox_filter(queue: str, namespace: str = "") -> str:
    identity, inbox_id = split_inbox(queue)
    return f"{_root(namespace)}.{INBOX_TOKEN}.{identity}.{inbox_id}.*"


def inbox_subjects(identity: str, namespace: str = "") -> list[str]:
    return [f"{_root(namespace)}.{INBOX_TOKEN}.{token(identity)}.*.*"]


def inbox_consumer(queue: str) -> str:
    return f"{INBOX_CONSUMER_PREFIX}{split_inbox(queue)[1]}"


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
