"""The NATS permissions a dasync process needs, computed from its service classes.

``dasync nats-permissions FILE`` prints them as nats-server ``authorization``
users (or JSON, e.g. for ``nsc``), so that an operator can lock each service
to its own subjects. Everything here is pure: names come from
``dasync.transports.nats.naming`` (no connection is made), and what a service
does on NATS is read from its classes:

* **calls**: the contracts its constructor takes (the services it calls), and
  itself (calls through ``self``, timers);
* **events**: the ``dasync.Event`` attributes of its contract (it publishes them);
* **subscriptions**: ``proxy.event += self.handler`` made in its constructor,
  known only by constructing it: the services are constructed in memory (an
  unstarted ``Runtime`` on the memory transport) as ``dasync run`` would;
* **callers**: the services (among those analysed together) that call it,
  because a reply goes to the caller's work subject.

See ``docs/security.md`` for every rule and its reason, and for the trade-offs
(replies, shared inbox stream).
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from unittest import mock

from ._contract import is_contract, spec_of
from ._service import validate_service
from .transports.nats import naming

__all__ = [
    "ROLE_CLIENT",
    "ROLE_MAIN",
    "ROLE_PROCESS",
    "ROLE_SERVICE",
    "Rule",
    "ServiceUse",
    "UserPermissions",
    "analyze",
    "analyze_files",
    "client_permissions",
    "combine",
    "inbox_prefix_for",
    "permissions",
    "render_conf",
    "render_json",
    "service_permissions",
]

ROLE_SERVICE = "service"
ROLE_MAIN = "main"
ROLE_CLIENT = "client"
ROLE_PROCESS = "process"
CLIENT_USER = "dasync-client"
SHARED_INBOX = "_INBOX"
JS_API = "$JS.API"


# --- what a service does ---------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceUse:
    """What one hosted service does on NATS, as far as permissions are concerned."""

    name: str
    calls: tuple[str, ...] = ()
    """Other services it calls (its constructor's contract parameters)."""
    events: tuple[str, ...] = ()
    """Topics (``Service.event``) it publishes: the events of its contract."""
    subscriptions: tuple[tuple[str, str], ...] = ()
    """``(topic, group)`` pairs: events it handles, group = ``Service.handler``."""
    role: str = ROLE_SERVICE
    source: str = ""
    """The file that defines it, if known."""
    notes: tuple[str, ...] = ()
    """What could not be determined (shown to the operator)."""


def analyze(
    services: Sequence[type],
    *,
    container: Any = None,
    main: Callable[..., Any] | None = None,
    main_name: str = "main",
    source: str = "",
) -> list[ServiceUse]:
    """What each service class (and ``main``, hosted as ``main_name``) does on NATS.

    The classes are constructed (in memory, never started) to learn their
    event subscriptions; a class that cannot be constructed with ``container``
    is tried with placeholders for its non-contract parameters, else its
    subscriptions are reported as unknown in its notes.
    """
    uses: list[ServiceUse] = []
    for cls in services:
        spec = validate_service(cls)
        subscriptions, notes = _subscriptions(cls, container)
        init = cls.__init__  # type: ignore[misc]
        calls = [c for c in _contract_calls(init, skip_first=True) if c != spec.name]
        uses.append(
            ServiceUse(
                name=spec.name,
                calls=tuple(dict.fromkeys(calls)),
                events=tuple(e.topic for e in spec.events.values()),
                subscriptions=tuple(dict.fromkeys(subscriptions)),
                source=source,
                notes=tuple(notes),
            )
        )
    if main is not None:
        main_notes: tuple[str, ...] = ()
        if main_name != "main":
            main_notes = (
                f"main() is hosted as {main_name}, a name 'dasync run' derives from the file's "
                "absolute path: generate these permissions from the path it runs at",
            )
        uses.append(
            ServiceUse(
                name=main_name,
                calls=tuple(dict.fromkeys(_contract_calls(main))),
                role=ROLE_MAIN,
                source=source,
                notes=main_notes,
            )
        )
    return uses


def analyze_files(
    paths: Iterable[str | Path],
    *,
    container: Any = None,
    main_name: Callable[[Any], str] | None = None,
) -> list[ServiceUse]:
    """``analyze`` the services (and ``main``) defined in each service file, as ``dasync run``
    finds them. ``main_name(module)`` names the service ``main`` is hosted as."""
    from ._runtime._module import discover, load_module

    uses: list[ServiceUse] = []
    for path in paths:
        module = load_module(path)
        services, main = discover(module)
        name = main_name(module) if main_name is not None and main is not None else "main"
        uses.extend(
            analyze(services, container=container, main=main, main_name=name, source=str(path))
        )
    return uses


def _contract_calls(fn: Any, *, skip_first: bool = False) -> list[str]:
    """Names of the services whose contracts annotate ``fn``'s parameters."""
    if fn is object.__init__ or not callable(fn):
        return []
    try:
        hints = typing.get_type_hints(fn)
        params = list(inspect.signature(fn).parameters.values())
    except Exception:  # unresolvable annotations: the injector reports them when run
        return []
    if skip_first:
        params = params[1:]
    found = []
    for p in params:
        annotation = hints.get(p.name)
        if annotation is not None and is_contract(annotation):
            found.append(spec_of(annotation).name)
    return found


def _subscriptions(cls: type, container: Any) -> tuple[list[tuple[str, str]], list[str]]:
    """The ``(topic, group)`` subscriptions ``cls`` makes when constructed, and notes."""
    from ._runtime import Runtime

    errors: list[str] = []
    attempts: list[Any] = [container]
    if container is None:
        contract_params = set(_contract_param_names(cls))
        attempts.append(_Placeholders(contract_params))
    for attempt in attempts:
        try:
            rt = Runtime([cls], container=attempt)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        spec = rt.hosted[0].spec
        return [(s.event.topic, f"{spec.name}.{s.handler}") for s in rt.events.subscriptions], []
    return [], [
        f"could not construct {cls.__qualname__} ({errors[0]}); event subscriptions made "
        "in its constructor are not included (give --container)"
    ]


def _contract_param_names(cls: type) -> list[str]:
    init = cls.__init__  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(init)
    except Exception:
        return []
    return [name for name, ann in hints.items() if name != "return" and is_contract(ann)]


class _Placeholders(Mapping[str, Any]):
    """A container that offers a do-anything placeholder for every non-contract parameter."""

    def __init__(self, excluded: set[str]) -> None:
        self._excluded = excluded

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name not in self._excluded

    def __getitem__(self, name: str) -> Any:
        if name in self._excluded:
            raise KeyError(name)
        return mock.MagicMock(name=name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


# --- permissions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One allowed subject and why it is needed."""

    subject: str
    why: str


@dataclass(frozen=True)
class UserPermissions:
    """The permissions of one NATS user: a service, a ``main``, clients, or a whole process."""

    user: str
    role: str
    services: tuple[str, ...]
    """The services the user's process hosts (empty for clients)."""
    inbox_prefix: str
    """The ``NatsOptions.inbox_prefix`` the process must connect with."""
    publish: tuple[Rule, ...]
    subscribe: tuple[Rule, ...]
    summary: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def publish_allow(self) -> list[str]:
        return [r.subject for r in self.publish]

    @property
    def subscribe_allow(self) -> list[str]:
        return [r.subject for r in self.subscribe]

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "role": self.role,
            "services": list(self.services),
            "inbox_prefix": self.inbox_prefix,
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


def _api(*parts: str) -> str:
    return ".".join((JS_API, *parts))


def _event_stream(service: str, namespace: str) -> str:
    return str(_call_ns(naming.event_stream, service, namespace=namespace))


def _event_subject(topic: str, namespace: str) -> str:
    return str(_call_ns(naming.event_subject, topic, namespace=namespace))


def _call_ns(fn: Callable[..., Any], *args: str, namespace: str) -> Any:
    """Call a naming function with the namespace if it takes one (events may not yet)."""
    if namespace and "namespace" in inspect.signature(fn).parameters:
        return fn(*args, namespace=namespace)
    return fn(*args)


def _root(namespace: str) -> str:
    return f"{naming.PREFIX}-{namespace}" if namespace else naming.PREFIX


def _stream_admin(rules: _Rules, stream: str, why: str) -> None:
    rules.add(why, *(_api("STREAM", op, stream) for op in ("CREATE", "UPDATE", "INFO")))


def _inbox_rules(rules: _Rules, namespace: str) -> None:
    """A ``Client`` (every ``Runtime`` opens one): its inbox consumer on the shared stream."""
    stream = naming.inbox_stream(namespace)
    why = "own client inbox: the shared reply stream and one consumer per client"
    _stream_admin(rules, stream, why)
    rules.add(
        why,
        _api("CONSUMER", "CREATE", stream, "*"),
        _api("CONSUMER", "DELETE", stream, "*"),
        _api("CONSUMER", "MSG", "NEXT", stream, "*"),
        f"$JS.ACK.{stream}.>",
    )


def _subscribe_rules(prefix: str) -> tuple[Rule, ...]:
    why = "replies to requests (publish acks, JetStream API) and pulled messages"
    return (Rule(f"{prefix}.>", why),)


def service_permissions(
    use: ServiceUse,
    *,
    callers: Iterable[str] = (),
    namespace: str = "",
    shared_inbox: bool = False,
    user: str | None = None,
) -> UserPermissions:
    """What the process hosting ``use`` may publish and subscribe to.

    ``callers`` are the services that call it: its replies go to their work
    subjects. Replies to clients go to the shared inbox stream.
    """
    ns = namespace
    name = use.name
    rules = _Rules()
    work = naming.work_stream(name, ns)
    journal = naming.journal_stream(name, ns)
    root = f"{_root(ns)}.{naming.token(name)}"

    why = "own work queue: calls through self, due timers, dead letters"
    rules.add(
        why, naming.work_subject(name, ns), f"{root}.schedule.*", naming.dead_subject(name, ns)
    )
    _stream_admin(rules, work, "own work stream: create at start")
    rules.add(
        "own work consumer: create, pull, acknowledge",
        _api("CONSUMER", "CREATE", work, naming.WORK_CONSUMER),
        _api("CONSUMER", "MSG", "NEXT", work, naming.WORK_CONSUMER),
        f"$JS.ACK.{work}.{naming.WORK_CONSUMER}.>",
    )
    rules.add("own journal: append entries", *naming.journal_subjects(name, ns))
    _stream_admin(rules, journal, "own journal stream: create at start")
    rules.add(
        "own journal: read (direct get)",
        _api("DIRECT", "GET", journal),
        _api("DIRECT", "GET", journal, ">"),
    )
    claims = naming.claim_stream(name, ns)
    rules.add("own claims: lease the first step of a routine", *naming.claim_subjects(name, ns))
    _stream_admin(rules, claims, "own claims stream: create at start")
    rules.add(
        "own claims: read who holds a lease (direct get)",
        _api("DIRECT", "GET", claims),
        _api("DIRECT", "GET", claims, ">"),
    )
    for topic in use.events:
        rules.add(f"publish its event {topic}", _event_subject(topic, ns))
        service, _ = naming.split_topic(topic)
        _stream_admin(rules, _event_stream(service, ns), "own event stream: create at start")
    for topic, group in use.subscriptions:
        publisher, _ = naming.split_topic(topic)
        stream = _event_stream(publisher, ns)
        consumer = naming.group_consumer(topic, group)
        why = f"handle event {topic} ({group}): its stream, its durable consumer"
        _stream_admin(rules, stream, why)
        rules.add(
            why,
            _api("CONSUMER", "CREATE", stream, consumer),
            _api("CONSUMER", "MSG", "NEXT", stream, consumer),
            f"$JS.ACK.{stream}.{consumer}.>",
        )
    for callee in use.calls:
        rules.add(
            f"call {callee}",
            naming.work_subject(callee, ns),
            _api("STREAM", "INFO", naming.work_stream(callee, ns)),
        )
    for caller in callers:
        if caller == name:
            continue
        rules.add(
            f"reply to its caller {caller}",
            naming.work_subject(caller, ns),
            _api("STREAM", "INFO", naming.work_stream(caller, ns)),
        )
    rules.add(
        "reply to clients (their inboxes)",
        *naming.inbox_subjects(ns),
        _api("STREAM", "INFO", naming.inbox_stream(ns)),
    )
    _inbox_rules(rules, ns)

    user = user or _user(name, ns)
    prefix = inbox_prefix_for(user, ns, shared=shared_inbox)
    where = f" (from {use.source})" if use.source else ""
    summary = [
        (
            f"main(){where}, hosted as service {name}"
            if use.role == ROLE_MAIN
            else f"service {name}{where}"
        ),
        "calls: " + (", ".join(use.calls) or "-"),
        "called by: " + ", ".join([*[c for c in callers if c != name], "clients"]),
    ]
    if use.events:
        summary.append("publishes: " + ", ".join(use.events))
    if use.subscriptions:
        summary.append("handles: " + ", ".join(f"{t} ({g})" for t, g in use.subscriptions))
    return UserPermissions(
        user=user,
        role=use.role,
        services=(name,),
        inbox_prefix=prefix,
        publish=rules.freeze(),
        subscribe=_subscribe_rules(prefix),
        summary=tuple(summary),
        notes=use.notes,
    )


def client_permissions(
    services: Iterable[str],
    *,
    namespace: str = "",
    shared_inbox: bool = False,
    user: str = CLIENT_USER,
) -> UserPermissions:
    """A client (``dasync.connect``, ``dasync call``) that may start routines of ``services``.

    It does not get the right to fire services' events: an event is a statement
    of the service that declares it.
    """
    ns = namespace
    rules = _Rules()
    names = list(dict.fromkeys(services))
    for name in names:
        journal = naming.journal_stream(name, ns)
        rules.add(
            f"start and cancel routines of {name}, read their results from its journal",
            naming.work_subject(name, ns),
            _api("STREAM", "INFO", naming.work_stream(name, ns)),
            _api("DIRECT", "GET", journal),
            _api("DIRECT", "GET", journal, ">"),
            _api("STREAM", "INFO", journal),
        )
    _inbox_rules(rules, ns)
    user = f"{ns}/{user}" if ns else user
    prefix = inbox_prefix_for(user, ns, shared=shared_inbox)
    return UserPermissions(
        user=user,
        role=ROLE_CLIENT,
        services=(),
        inbox_prefix=prefix,
        publish=rules.freeze(),
        subscribe=_subscribe_rules(prefix),
        summary=("clients: " + (", ".join(names) or "-"),),
    )


def permissions(
    uses: Sequence[ServiceUse],
    *,
    namespace: str = "",
    shared_inbox: bool = False,
    clients: bool = True,
) -> list[UserPermissions]:
    """One user per service (and per ``main``), plus one for clients if ``clients``.

    A service's callers are found among ``uses``: analyse every file of a
    deployment together, so that each callee may reply to all its callers.
    """
    known = {u.name for u in uses}
    callers: dict[str, list[str]] = {u.name: [] for u in uses}
    for use in uses:
        for callee in use.calls:
            if callee in callers and use.name not in callers[callee]:
                callers[callee].append(use.name)
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
            )
        )
    if clients:
        served = [u.name for u in uses if u.role == ROLE_SERVICE]
        result.append(client_permissions(served, namespace=namespace, shared_inbox=shared_inbox))
    return result


def combine(
    parts: Sequence[UserPermissions],
    user: str,
    *,
    namespace: str = "",
    shared_inbox: bool = False,
) -> UserPermissions:
    """One user for a process hosting several services (``dasync run FILE`` hosts them all)."""
    full = f"{namespace}/{user}" if namespace else user
    prefix = inbox_prefix_for(full, namespace, shared=shared_inbox)
    rules = _Rules()
    for part in parts:
        for rule in part.publish:
            rules.add(rule.why, rule.subject)
    summary = [f"process hosting {', '.join(s for p in parts for s in p.services)}"]
    for part in parts:
        summary.extend(f"  {line}" for line in part.summary)
    return UserPermissions(
        user=full,
        role=ROLE_PROCESS,
        services=tuple(s for p in parts for s in p.services),
        inbox_prefix=prefix,
        publish=rules.freeze(),
        subscribe=_subscribe_rules(prefix),
        summary=tuple(summary),
        notes=tuple(dict.fromkeys(n for p in parts for n in p.notes)),
    )


def _user(name: str, namespace: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def password_variable(user: str) -> str:
    """The config variable (or environment variable of nats-server) holding a user's password."""
    return "DASYNC_" + re.sub(r"[^A-Za-z0-9]+", "_", user).strip("_").upper() + "_PASSWORD"


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
        "# connect with the inbox prefix given (NatsOptions(inbox_prefix=...) or",
        "# $DASYNC_NATS_INBOX_PREFIX). A service may reply only to the callers found in",
        "# the files given: list every file of the deployment. See docs/security.md.",
        "authorization {",
        "  users = [",
    ]
    for i, user in enumerate(users):
        lines.append("")
        lines.extend(f"    # {line}" for line in user.summary)
        lines.append(f"    # inbox prefix: {user.inbox_prefix}")
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
    """The users as JSON: ``[{"user", "role", "inbox_prefix", "permissions": {...}}, ...]``."""
    return json.dumps([u.to_json() for u in users], indent=2) + "\n"


def _quote(text: str) -> str:
    return json.dumps(text)
