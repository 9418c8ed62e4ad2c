"""The NATS permissions each dasync process needs, from what its services do.

``dasync nats-permissions FILE...`` prints them as nats-server ``authorization``
users (or JSON, e.g. for ``nsc``), so that an operator can lock every process
to its own subjects. The rules are pure (no connection, no nats-py): names come
from ``_naming``, and what a service does (calls, events, subscriptions,
callers) from ``dasync._topology``.

The transport vouches for a message's sender by the subject it arrives on
(``<root>.<S>.in.<lane>``, see ``_naming``), so these rules are what makes that
true: each user may publish on its own lanes only. One user per role:

* **service** ``S``: its own lanes, streams, consumers, journals and state; its
  callees' and callers' ``svc.S`` lane; its ``start.S`` subjects of its callees'
  starts streams (and of its own, for calls through self); replies to clients; its
  event subscriptions; its own client identity's inbox stream;
* **main** (a file's ``main()``, hosted as a service): a service, plus its own
  client lane (``dasync run`` starts it as a client);
* **client** ``C``: the ``client.C`` lane of the services it may start, their
  journals (results), its own inbox stream;
* **operator**: every lane of the services given (cancels; retried dead letters
  go back on the lane they came from, so an operator can speak for anyone),
  their journals, starts (``dasync purge``) and dead letters;
* **provisioner** (``provisioned=True``): the only user that may create and
  change streams, run once per deployment (``provision``).

``docs/security.md`` explains every rule, the trade-offs and the threat model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from dasync._topology import ROLE_MAIN, ROLE_SERVICE, ServiceUse, callers_of
from dasync.transports._contract import check_name

from . import _naming as naming
from ._index import index_stream, index_subjects

if TYPE_CHECKING:
    from ._options import NatsOptions

__all__ = [
    "CLIENT_USER",
    "OPERATOR_USER",
    "PROVISIONER_USER",
    "ROLE_CLIENT",
    "ROLE_MAIN",
    "ROLE_OPERATOR",
    "ROLE_PROCESS",
    "ROLE_PROVISIONER",
    "ROLE_SERVICE",
    "Rule",
    "UserPermissions",
    "check_distinct",
    "client_permissions",
    "combine",
    "deployment_streams",
    "extra_users",
    "identity_for",
    "inbox_prefix_for",
    "operator_permissions",
    "password_variable",
    "permissions",
    "provision",
    "provisioner_permissions",
    "render_conf",
    "render_json",
    "service_permissions",
    "service_users",
]

ROLE_CLIENT = "client"
ROLE_PROCESS = "process"
ROLE_OPERATOR = "operator"
ROLE_PROVISIONER = "provisioner"
CLIENT_USER = "dasync-client"
OPERATOR_USER = "dasync-operator"
PROVISIONER_USER = "dasync-provisioner"
SHARED_INBOX = "_INBOX"
JS_API = "$JS.API"


# --- users ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One allowed subject and why it is needed."""

    subject: str
    why: str


@dataclass(frozen=True)
class UserPermissions:
    """The permissions of one NATS user: a service, a ``main``, a client, an operator, a
    provisioner, or a whole process (``combine``)."""

    user: str
    role: str
    services: tuple[str, ...]
    """The services the user's process hosts (empty for the other roles)."""
    identity: str
    """The ``NatsOptions.identity`` the process must connect with: its client inboxes are
    ``_inbox.<identity>.<id>`` on the stream only this user may administer."""
    inbox_prefix: str
    """The ``NatsOptions.inbox_prefix`` the process must connect with."""
    publish: tuple[Rule, ...]
    subscribe: tuple[Rule, ...]
    summary: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    sources: tuple[tuple[ServiceUse, tuple[str, ...]], ...] = field(
        default=(), repr=False, compare=False
    )
    """The hosted services and their callers the rules came from (``combine`` redoes them
    for the combined user's identity)."""

    @property
    def publish_allow(self) -> list[str]:
        return [r.subject for r in self.publish]

    @property
    def subscribe_allow(self) -> list[str]:
        return [r.subject for r in self.subscribe]

    @property
    def environment(self) -> dict[str, str]:
        """The ``DASYNC_NATS_*`` variables the user's process connects with (no password)."""
        return {
            "DASYNC_NATS_USER": self.user,
            "DASYNC_NATS_INBOX_PREFIX": self.inbox_prefix,
            "DASYNC_NATS_IDENTITY": self.identity,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "role": self.role,
            "services": list(self.services),
            "identity": self.identity,
            "inbox_prefix": self.inbox_prefix,
            "environment": self.environment,
            "permissions": {
                "publish": {"allow": self.publish_allow},
                "subscribe": {"allow": self.subscribe_allow},
            },
            "summary": list(self.summary),
            "notes": list(self.notes),
        }


@dataclass
class _Rules:
    rules: dict[str, str] = field(default_factory=dict)

    def add(self, why: str, *subjects: str) -> None:
        for subject in subjects:
            self.rules.setdefault(subject, why)

    def freeze(self) -> tuple[Rule, ...]:
        return tuple(Rule(s, w) for s, w in self.rules.items())


def inbox_prefix_for(user: str, namespace: str = "", *, shared: bool = False) -> str:
    """The inbox prefix of a user: ``_INBOX_<user>`` (``_INBOX-<ns>.<user>`` in a namespace).

    User tokens never start with ``_`` and a namespace has no ``_``, so the
    prefixes of different users (and of the default ``_INBOX``) never overlap.
    """
    if shared:
        return SHARED_INBOX
    if namespace:
        return f"_INBOX-{naming.check_namespace(namespace)}.{naming.token(user)}"
    return f"_INBOX_{naming.token(user)}"


def identity_for(user: str) -> str:
    """The client identity of a user: its name without the namespace, made valid
    (``[A-Za-z0-9][A-Za-z0-9_-]{0,63}``, ``check_name``). A namespace keeps the inbox
    streams of equal identities of different deployments apart already."""
    base = user.rpartition("/")[2]
    try:
        return check_name("client identity", base)
    except ValueError:
        pass
    safe = naming.token(base, 62)
    if not safe[:1].isalnum():
        safe = f"u{safe}"
    return check_name("client identity", safe[:64])


def password_variable(user: str) -> str:
    """The config variable (or environment variable of nats-server) holding a user's password."""
    return "DASYNC_" + re.sub(r"[^A-Za-z0-9]+", "_", user).strip("_").upper() + "_PASSWORD"


def check_distinct(users: Sequence[UserPermissions]) -> None:
    """``ValueError`` if two users share a name, an identity or an inbox prefix (a service
    named like a generated user, e.g. ``dasync-client``): they could read each other's
    replies."""
    for attribute in ("user", "identity", "inbox_prefix"):
        seen: dict[str, str] = {}
        for user in users:
            value = getattr(user, attribute)
            if attribute == "inbox_prefix" and value == SHARED_INBOX:
                continue
            if value in seen:
                raise ValueError(
                    f"users {seen[value]!r} and {user.user!r} would have the same {attribute} "
                    f"{value!r}; rename one (a service may not be named like a generated user)"
                )
            seen[value] = user.user


# --- subjects --------------------------------------------------------------------------------


def _api(*parts: str) -> str:
    return ".".join((JS_API, *parts))


def _root(namespace: str) -> str:
    return f"{naming.PREFIX}-{namespace}" if namespace else naming.PREFIX


def _user(name: str, namespace: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _own_stream(rules: _Rules, stream: str, why: str, provisioned: bool) -> None:
    """A stream the user declares at start. Provisioned: created beforehand by the
    provisioner, so the declaration (a create with the same settings) changes nothing and
    no update is allowed (a user that may set a stream's configuration can make the server
    republish or source anything, see docs/security.md)."""
    ops = ("CREATE", "INFO") if provisioned else ("CREATE", "UPDATE", "INFO")
    rules.add(why, *(_api("STREAM", op, stream) for op in ops))


def _direct_get(rules: _Rules, stream: str, why: str) -> None:
    rules.add(why, _api("DIRECT", "GET", stream), _api("DIRECT", "GET", stream, ">"))


def _subscribe_rules(prefix: str) -> tuple[Rule, ...]:
    why = "replies to its requests (publish acks, JetStream API, direct gets) and pulled messages"
    return (Rule(f"{prefix}.>", why),)


def _presence_rules(services: Iterable[str], namespace: str) -> tuple[Rule, ...]:
    why = "own presence: the other workers take over its lane once it is gone"
    return tuple(Rule(naming.alive_subjects(name, namespace), why) for name in services)


def _identity_rules(rules: _Rules, identity: str, namespace: str, provisioned: bool) -> None:
    """A ``Client`` (every ``Runtime`` opens one): the inbox stream of its own identity."""
    stream = naming.inbox_stream(identity, namespace)
    why = f"own client inbox (identity {identity}): its stream, a consumer per Client, acks"
    _own_stream(rules, stream, why, provisioned)
    rules.add(
        why,
        _api("CONSUMER", "CREATE", stream, "*"),
        _api("CONSUMER", "DELETE", stream, "*"),
        _api("CONSUMER", "MSG", "NEXT", stream, "*"),
        f"$JS.ACK.{stream}.>",
    )


def _pulling(stream: str, consumer: str) -> tuple[str, ...]:
    """What a worker of one durable consumer sends: create it, read its lag, pull, ack."""
    return (
        _api("CONSUMER", "CREATE", stream, consumer),
        _api("CONSUMER", "INFO", stream, consumer),
        _api("CONSUMER", "MSG", "NEXT", stream, consumer),
        f"$JS.ACK.{stream}.{consumer}.>",
    )


def _service_rules(
    rules: _Rules,
    use: ServiceUse,
    callers: Iterable[str],
    namespace: str,
    identity: str,
    provisioned: bool,
) -> None:
    """What the process hosting ``use`` (speaking as client ``identity``) publishes."""
    ns, name = namespace, use.name
    work = naming.work_stream(name, ns)
    base = f"{_root(ns)}.{naming.token(name)}"

    rules.add(
        "own lane: calls through self, retries, due timers, dead letters",
        naming.work_subject(name, ns),
        f"{base}.schedule.*",
        naming.dead_subject(name, ns),
    )
    _own_stream(rules, work, "own work stream: declared at start", provisioned)
    rules.add(
        "own work consumer: create, pull, acknowledge, read its lag",
        *_pulling(work, naming.WORK_CONSUMER),
    )
    rules.add(
        "own worker lanes: timers and self-calls of the routines a worker holds, a consumer "
        "per worker (its own, or a gone worker's it takes over), presence of the others",
        naming.lane_subject(naming.work_subject(name, ns), "*"),
        _api("CONSUMER", "CREATE", work, "*"),
        _api("CONSUMER", "INFO", work, "*"),
        _api("CONSUMER", "MSG", "NEXT", work, "*"),
        f"$JS.ACK.{work}.*.>",
        naming.alive_subjects(name, ns),
    )
    for kind, stream, subjects in (
        (
            "journals (and their failure notes and start claims)",
            naming.journal_stream(name, ns),
            naming.journal_subjects(name, ns),
        ),
        ("routine index", index_stream(name, ns), index_subjects(name, ns)),
        ("state (its message-id key, crash counts)", naming.state_stream(name, ns), None),
    ):
        why = f"own {kind}: write, read (direct get), declare the stream"
        rules.add(why, *(subjects or naming.state_subjects(name, ns)))
        _own_stream(rules, stream, why, provisioned)
        _direct_get(rules, stream, why)
    starts = naming.starts_stream(name, ns)
    why = "own starts stream (the starts of calls, one per routine): declared at start"
    _own_stream(rules, starts, why, provisioned)
    rules.add(
        "own starts consumer: create, pull, acknowledge, read its lag",
        *_pulling(starts, naming.WORK_CONSUMER),
    )
    rules.add(
        "own calls through self: their one start each, in its own starts stream",
        naming.start_subjects(name, name, ns),
    )
    rules.add(
        "own dead letters: retry those parked by other code (a deploy of the fix)",
        _api("STREAM", "MSG", "GET", work),
        _api("STREAM", "MSG", "DELETE", work),
    )
    rules.add(
        "own journals: remove those of routines finished longer ago than the retention",
        _api("STREAM", "PURGE", naming.journal_stream(name, ns)),
    )
    rules.add(
        "own routine index: remove the entries of journals the retention removed",
        _api("STREAM", "PURGE", index_stream(name, ns)),
    )
    rules.add(
        "own starts: remove the start of each routine the retention removes (and old starts "
        "that never got a journal), reading the stream from its first message",
        _api("STREAM", "PURGE", starts),
        _api("DIRECT", "GET", starts),
    )
    if use.events:
        why = "own events: publish, declare the stream"
        rules.add(why, *(naming.event_subject(topic, ns) for topic in use.events))
        _own_stream(rules, naming.event_stream(name, ns), why, provisioned)
    for topic, group in use.subscriptions:
        publisher, _ = naming.split_topic(topic)
        stream = naming.event_stream(publisher, ns)
        consumer = naming.group_consumer(topic, group)
        why = (
            f"handle event {topic} ({group}): its stream (create if missing), own consumer "
            "(and its lag)"
        )
        if publisher != name:
            rules.add(why, _api("STREAM", "CREATE", stream), _api("STREAM", "INFO", stream))
        rules.add(why, *_pulling(stream, consumer))
    for callee in use.calls:
        if callee != name:
            rules.add(
                f"call {callee} on its lane (cancels; calls if {callee} has no starts stream "
                f"it may use; stream info: is {callee} deployed?)",
                naming.call_subject(callee, name, ns),
                _api("STREAM", "INFO", naming.work_stream(callee, ns)),
            )
            rules.add(
                f"start its calls to {callee}: one message per routine in {callee}'s starts "
                f"stream, on its own subjects there (stream info: does {callee} have one?)",
                naming.start_subjects(callee, name, ns),
                _api("STREAM", "INFO", naming.starts_stream(callee, ns)),
            )
            _await_queue(rules, callee, ns, provisioned)
    for caller in callers:
        if caller != name:
            rules.add(
                f"reply to its caller {caller} (on the lane of the caller's worker, or shared)",
                naming.call_subject(caller, name, ns),
                naming.lane_subject(naming.call_subject(caller, name, ns), "*"),
                _api("STREAM", "INFO", naming.work_stream(caller, ns)),
            )
    rules.add(
        "reply to clients: any client's inbox, as itself (the last token)",
        f"{_root(ns)}.{naming.INBOX_TOKEN}.*.*.{naming.token(name)}",
    )
    if use.role == ROLE_MAIN:
        rules.add(
            f"start main() as client {identity} ('dasync run' does)",
            naming.client_subject(name, identity, ns),
        )


def _await_queue(rules: _Rules, callee: str, namespace: str, provisioned: bool) -> None:
    """Self-provisioned: a caller may create the work and starts streams of a callee whose
    workers never started, so that its calls wait there (services start in any order; a
    declaration that finds the stream made already reads it). Provisioned deployments have
    every stream already, and nobody but the provisioner creates one."""
    if not provisioned:
        starts = naming.starts_stream(callee, namespace)
        rules.add(
            f"declare {callee}'s work and starts streams if its workers have not started yet "
            "(calls wait there)",
            _api("STREAM", "CREATE", naming.work_stream(callee, namespace)),
            _api("STREAM", "CREATE", starts),
            _api("STREAM", "INFO", starts),
        )


def _summary(use: ServiceUse, callers: Sequence[str]) -> list[str]:
    where = f" (from {use.source})" if use.source else ""
    main = use.role == ROLE_MAIN
    called_by = [c for c in callers if c != use.name]
    called_by.append("its own process, as a client ('dasync run')" if main else "clients")
    lines = [
        f"main(){where}, hosted as service {use.name}" if main else f"service {use.name}{where}",
        "calls: " + (", ".join(use.calls) or "-"),
        "called by: " + ", ".join(called_by),
    ]
    if use.events:
        lines.append("publishes: " + ", ".join(use.events))
    if use.subscriptions:
        lines.append("handles: " + ", ".join(f"{t} ({g})" for t, g in use.subscriptions))
    return lines


# --- roles -----------------------------------------------------------------------------------


def service_permissions(
    use: ServiceUse,
    *,
    callers: Iterable[str] = (),
    namespace: str = "",
    shared_inbox: bool = False,
    user: str | None = None,
    provisioned: bool = True,
) -> UserPermissions:
    """The user of the process hosting ``use``; ``callers`` are the services that call it
    (it replies on their ``svc.<name>`` lane)."""
    callers = tuple(c for c in callers if c != use.name)
    user = user or _user(use.name, namespace)
    identity = identity_for(user)
    rules = _Rules()
    _service_rules(rules, use, callers, namespace, identity, provisioned)
    _identity_rules(rules, identity, namespace, provisioned)
    prefix = inbox_prefix_for(user, namespace, shared=shared_inbox)
    return UserPermissions(
        user=user,
        role=use.role,
        services=(use.name,),
        identity=identity,
        inbox_prefix=prefix,
        publish=rules.freeze(),
        subscribe=(*_subscribe_rules(prefix), *_presence_rules([use.name], namespace)),
        summary=tuple(_summary(use, callers)),
        notes=use.notes,
        sources=((use, callers),),
    )


def client_permissions(
    services: Iterable[str],
    *,
    namespace: str = "",
    shared_inbox: bool = False,
    user: str = CLIENT_USER,
    provisioned: bool = True,
) -> UserPermissions:
    """A client (``dasync.connect``, ``dasync call``) that may start and cancel routines of
    ``services`` and read their results. It may not fire services' events (an event is its
    service's statement), nor touch any stream but its own inbox stream."""
    ns = namespace
    rules = _Rules()
    names = list(dict.fromkeys(services))
    full = _user(user, ns)
    identity = identity_for(full)
    for name in names:
        journal = naming.journal_stream(name, ns)
        why = f"start and cancel routines of {name}; read their results from its journals"
        rules.add(
            why,
            naming.client_subject(name, identity, ns),
            _api("STREAM", "INFO", naming.work_stream(name, ns)),
            _api("STREAM", "INFO", journal),
        )
        _direct_get(rules, journal, why)
        why = f"list and look up routines of {name} in its index (dasync ls, show)"
        rules.add(why, _api("STREAM", "INFO", index_stream(name, ns)))
        _direct_get(rules, index_stream(name, ns), why)
        _await_queue(rules, name, ns, provisioned)
    return _with_identity(
        rules, full, ROLE_CLIENT, identity, ns, provisioned, shared_inbox,
        (f"clients (identity {identity}) of: " + (", ".join(names) or "-"),),
    )  # fmt: skip


def operator_permissions(
    services: Iterable[str],
    *,
    namespace: str = "",
    shared_inbox: bool = False,
    user: str = OPERATOR_USER,
    provisioned: bool = True,
) -> UserPermissions:
    """An operator of ``services``: cancels (``in.operator``), dead letters (``dasync
    dead-letters``: list, retry, delete), journals (read, ``dasync purge``). A retried
    dead letter is republished on the lane it arrived on, so this user may publish on
    **every** lane of those services: it can speak for any service or client there, and
    must be trusted as such."""
    ns = namespace
    rules = _Rules()
    names = list(dict.fromkeys(services))
    full = _user(user, ns)
    identity = identity_for(full)
    for name in names:
        work, journal = naming.work_stream(name, ns), naming.journal_stream(name, ns)
        rules.add(
            f"{name}: cancel (operator lane) and retry dead letters on their own lane: "
            "may speak as any sender",
            naming.inputs_filter(name, ns),
        )
        rules.add(
            f"{name}: list, retry and delete dead letters (kept in its work stream)",
            _api("STREAM", "INFO", work),
            _api("STREAM", "MSG", "GET", work),
            _api("STREAM", "MSG", "DELETE", work),
        )
        why = f"{name}: read journals"
        rules.add(why, _api("STREAM", "INFO", journal))
        _direct_get(rules, journal, why)
        why = f"{name}: list and look up routines in its index (dasync ls, show)"
        rules.add(why, _api("STREAM", "INFO", index_stream(name, ns)))
        _direct_get(rules, index_stream(name, ns), why)
        rules.add(
            f"{name}: purge old journals (dasync purge) and their index entries, drop the "
            "failure note of a retried dead letter",
            _api("STREAM", "PURGE", journal),
            _api("STREAM", "PURGE", index_stream(name, ns)),
        )
        starts = naming.starts_stream(name, ns)
        rules.add(
            f"{name}: purge the starts of the routines dasync purge removes, and old starts "
            "that never got a journal once its workers settled them (read from the first)",
            _api("STREAM", "INFO", starts),
            _api("CONSUMER", "INFO", starts, naming.WORK_CONSUMER),
            _api("DIRECT", "GET", starts),
            _api("STREAM", "PURGE", starts),
        )
    summary = (
        "operator of: " + (", ".join(names) or "-"),
        "may publish on every lane of these services (retried dead letters keep their "
        "sender): trust it as you trust them all",
    )
    return _with_identity(
        rules, full, ROLE_OPERATOR, identity, ns, provisioned, shared_inbox, summary
    )


def _with_identity(
    rules: _Rules,
    user: str,
    role: str,
    identity: str,
    namespace: str,
    provisioned: bool,
    shared_inbox: bool,
    summary: tuple[str, ...],
) -> UserPermissions:
    """A user that hosts no service: ``rules`` plus its own client identity's inbox."""
    _identity_rules(rules, identity, namespace, provisioned)
    prefix = inbox_prefix_for(user, namespace, shared=shared_inbox)
    return UserPermissions(
        user=user,
        role=role,
        services=(),
        identity=identity,
        inbox_prefix=prefix,
        publish=rules.freeze(),
        subscribe=_subscribe_rules(prefix),
        summary=summary,
    )


def deployment_streams(
    uses: Sequence[ServiceUse], identities: Iterable[str], namespace: str = ""
) -> list[tuple[str, str, str]]:
    """``(kind, owner, stream)`` of every stream a deployment uses: per service (owner) its
    ``work``, ``journal``, ``index``, ``state`` and ``starts`` streams, the ``events`` stream
    of every publisher (declared or handled), and the ``inbox`` stream of each client
    identity."""
    ns = namespace
    found: dict[str, tuple[str, str]] = {}
    for use in uses:
        for kind, stream_of in (
            ("work", naming.work_stream),
            ("journal", naming.journal_stream),
            ("index", index_stream),
            ("state", naming.state_stream),
            ("starts", naming.starts_stream),
        ):
            found.setdefault(stream_of(use.name, ns), (kind, use.name))
        publishers = [use.name] if use.events else []
        publishers += [naming.split_topic(topic)[0] for topic, _ in use.subscriptions]
        for publisher in publishers:
            found.setdefault(naming.event_stream(publisher, ns), ("events", publisher))
    for identity in identities:
        found.setdefault(naming.inbox_stream(identity, ns), ("inbox", identity))
    return [(kind, owner, stream) for stream, (kind, owner) in found.items()]


def provisioner_permissions(
    uses: Sequence[ServiceUse],
    identities: Iterable[str],
    *,
    namespace: str = "",
    shared_inbox: bool = False,
    user: str = PROVISIONER_USER,
) -> UserPermissions:
    """The one user that may create and change the deployment's streams (``provision``),
    for deployments whose other users may not (``provisioned=True``)."""
    full = _user(user, namespace)
    rules = _Rules()
    streams = deployment_streams(uses, identities, namespace)
    for _, _, stream in streams:
        rules.add(
            "create and configure every stream of the deployment (run once, before the rest)",
            *(_api("STREAM", op, stream) for op in ("CREATE", "UPDATE", "INFO")),
        )
    prefix = inbox_prefix_for(full, namespace, shared=shared_inbox)
    return UserPermissions(
        user=full,
        role=ROLE_PROVISIONER,
        services=(),
        identity=identity_for(full),
        inbox_prefix=prefix,
        publish=rules.freeze(),
        subscribe=_subscribe_rules(prefix),
        summary=(
            f"provisioner of {len(streams)} streams (opens no client; see provision() in "
            "docs/security.md)",
        ),
    )


def service_users(
    uses: Sequence[ServiceUse],
    *,
    namespace: str = "",
    shared_inbox: bool = False,
    provisioned: bool = True,
) -> list[UserPermissions]:
    """One user per service (and per ``main``) of ``uses``.

    A service's callers are found among ``uses``: analyse every file of a
    deployment together, so that each callee may reply to all its callers.
    """
    known = {u.name for u in uses}
    callers = callers_of(uses)
    result = []
    for use in uses:
        missing = [c for c in use.calls if c not in known]
        notes = list(use.notes)
        if missing:
            notes.append(
                f"calls {', '.join(missing)}, not defined in the files given: generate their "
                f"users from their files together with this one, so that they may reply to "
                f"{use.name}"
            )
        result.append(
            service_permissions(
                replace(use, notes=tuple(dict.fromkeys(notes))),
                callers=callers[use.name],
                namespace=namespace,
                shared_inbox=shared_inbox,
                provisioned=provisioned,
            )
        )
    return result


def permissions(
    uses: Sequence[ServiceUse],
    *,
    namespace: str = "",
    shared_inbox: bool = False,
    clients: bool = True,
    operator: bool = False,
    provisioned: bool = True,
) -> list[UserPermissions]:
    """``service_users``, plus a client user if ``clients``, an operator if ``operator``,
    and the provisioner if ``provisioned`` (``extra_users``)."""
    settings: dict[str, Any] = dict(
        namespace=namespace, shared_inbox=shared_inbox, provisioned=provisioned
    )
    return extra_users(
        service_users(uses, **settings), uses, clients=clients, operator=operator, **settings
    )


def extra_users(
    users: Sequence[UserPermissions],
    uses: Sequence[ServiceUse],
    *,
    namespace: str = "",
    shared_inbox: bool = False,
    clients: bool = True,
    operator: bool = False,
    provisioned: bool = True,
) -> list[UserPermissions]:
    """``users`` (the processes hosting ``uses``) followed by the client, operator and
    provisioner users asked for; ``ValueError`` if two of them would collide."""
    result = list(users)
    settings: dict[str, Any] = dict(
        namespace=namespace, shared_inbox=shared_inbox, provisioned=provisioned
    )
    if clients:
        served = [u.name for u in uses if u.role == ROLE_SERVICE]
        result.append(client_permissions(served, **settings))
    if operator:
        result.append(operator_permissions([u.name for u in uses], **settings))
    if provisioned:
        identities = [u.identity for u in result if u.role != ROLE_PROVISIONER]
        result.append(
            provisioner_permissions(
                uses, identities, namespace=namespace, shared_inbox=shared_inbox
            )
        )
    check_distinct(result)
    return result


def combine(
    parts: Sequence[UserPermissions],
    user: str,
    *,
    namespace: str = "",
    shared_inbox: bool = False,
    provisioned: bool = True,
) -> UserPermissions:
    """One user for a process hosting several services (``dasync run FILE`` hosts them all),
    speaking as one client identity."""
    full = _user(user, namespace)
    identity = identity_for(full)
    prefix = inbox_prefix_for(full, namespace, shared=shared_inbox)
    rules = _Rules()
    sources: list[tuple[ServiceUse, tuple[str, ...]]] = []
    for part in parts:
        if part.sources:
            for use, callers in part.sources:
                _service_rules(rules, use, callers, namespace, identity, provisioned)
                sources.append((use, callers))
        else:
            for rule in part.publish:
                rules.add(rule.why, rule.subject)
    _identity_rules(rules, identity, namespace, provisioned)
    summary = [f"process hosting {', '.join(s for p in parts for s in p.services)}"]
    for part in parts:
        summary.extend(f"  {line}" for line in part.summary)
    return UserPermissions(
        user=full,
        role=ROLE_PROCESS,
        services=tuple(s for p in parts for s in p.services),
        identity=identity,
        inbox_prefix=prefix,
        publish=rules.freeze(),
        subscribe=(
            *_subscribe_rules(prefix),
            *_presence_rules([s for p in parts for s in p.services], namespace),
        ),
        summary=tuple(summary),
        notes=tuple(dict.fromkeys(n for p in parts for n in p.notes)),
        sources=tuple(sources),
    )


# --- provisioning ----------------------------------------------------------------------------


async def provision(
    options: NatsOptions, uses: Sequence[ServiceUse], identities: Iterable[str]
) -> list[str]:
    """Create (or bring to ``options``' settings) every stream of a deployment, connected
    as the provisioner (``options.user``...); return their names.

    Use the provisioning settings the deployment's processes use (``ack_wait``,
    ``duplicate_window``...): a process that declares a stream with other settings
    would have to update it, which ``provisioned`` users may not.
    """
    from ._connection import Connection
    from ._provision import Provisioner

    conn = await Connection.open(options)
    try:
        prov = Provisioner(conn, update=True)
        create: dict[str, Callable[[str], Awaitable[None]]] = {
            "work": prov._work_stream,
            "journal": prov._journal_stream,
            "index": prov._index_stream,
            "state": prov._state_stream,
            "starts": prov._starts_stream,
            "events": prov._event_stream,
            "inbox": prov._inbox_stream,
        }
        done = []
        for kind, owner, stream in deployment_streams(uses, identities, options.namespace):
            await create[kind](owner)
            done.append(stream)
        return done
    finally:
        await conn.close()


# --- rendering -------------------------------------------------------------------------------


def render_conf(users: Sequence[UserPermissions], *, command: str = "") -> str:
    """A nats-server ``authorization`` block with one user per entry, commented.

    Passwords are config variables (``$DASYNC_<USER>_PASSWORD``): define them
    at the top of the server config, or in nats-server's environment.
    """
    lines = [
        "# NATS permissions for dasync" + (f", generated by: {command}" if command else ""),
        "# One user per process role; its password comes from the variable named in it",
        '# (define it in this file, `DASYNC_X_PASSWORD: "..."`, or in nats-server\'s',
        '# environment), or replace user/password by `nkey: "U..."`. Each process must',
        "# connect with the inbox prefix and the client identity given for its user",
        "# (NatsOptions(inbox_prefix=..., identity=...), or $DASYNC_NATS_INBOX_PREFIX and",
        "# $DASYNC_NATS_IDENTITY). A service may reply only to the callers found in the",
        "# files given: list every file of the deployment. See docs/security.md.",
        "authorization {",
        "  users = [",
    ]
    for i, user in enumerate(users):
        env = " ".join(f"{k}={v}" for k, v in user.environment.items())
        lines.append("")
        lines.extend(f"    # {line}" for line in user.summary)
        lines.append(f"    # inbox prefix: {user.inbox_prefix}")
        lines.append(f"    # client identity: {user.identity}")
        lines.append(
            f"    # connect with: NatsOptions(inbox_prefix={user.inbox_prefix!r}, "
            f"identity={user.identity!r}), or {env}"
        )
        lines.extend(f"    # NOTE: {note}" for note in user.notes)
        lines.append("    {")
        lines.append(f"      user: {_quote(user.user)}")
        lines.append(f"      password: ${password_variable(user.user)}")
        lines.append("      permissions: {")
        for kind, rules in (("publish", user.publish), ("subscribe", user.subscribe)):
            lines.append(f"        {kind}: {{")
            lines.append("          allow: [")
            last_why = None
            for j, rule in enumerate(rules):
                if rule.why != last_why:
                    lines.append(f"            # {rule.why}")
                    last_why = rule.why
                comma = "," if j < len(rules) - 1 else ""
                lines.append(f"            {_quote(rule.subject)}{comma}")
            lines.append("          ]")
            lines.append("        }")
        lines.append("      }")
        lines.append("    }" + ("," if i < len(users) - 1 else ""))
    lines.extend(["  ]", "}", ""])
    return "\n".join(lines)


def render_json(users: Sequence[UserPermissions]) -> str:
    """The users as JSON: ``[{"user", "role", "identity", "inbox_prefix", "environment",
    "permissions": {...}}, ...]``."""
    return json.dumps([u.to_json() for u in users], indent=2) + "\n"


def _quote(text: str) -> str:
    return json.dumps(text)
